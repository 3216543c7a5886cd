"""Which action schemas a chat model is given (agent.bind_action_tools): the exact ones where
decoding follows them, a portable form everywhere else (Anthropic refuses a top-level anyOf)."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.utils.function_calling import convert_to_openai_tool

from internvl_agent.actions import BROWSER_ACTIONS, action_tools
from internvl_agent.agent.agent import GUIAgent, bind_action_tools, tool_schemas_for
from internvl_agent.errors import ConfigurationError
from tests.support.fakes import FakeComputer, ToolCallingFake, tool_calling_fake

COMBINATORS = ("anyOf", "oneOf", "allOf")


def _exact() -> dict[str, dict[str, Any]]:
    return {
        t.name: convert_to_openai_tool(t)["function"]["parameters"]
        for t in action_tools(BROWSER_ACTIONS)
    }


def _bound_parameters(bound: Any) -> dict[str, dict[str, Any]]:
    return {t["function"]["name"]: t["function"]["parameters"] for t in bound.kwargs["tools"]}


def test_an_unknown_model_gets_the_fields_without_top_level_alternatives() -> None:
    bound = bind_action_tools(tool_calling_fake(), action_tools(BROWSER_ACTIONS))
    portable, exact = _bound_parameters(bound), _exact()
    assert set(portable) == set(exact)
    assert any("anyOf" in p for p in exact.values())  # what the portable form leaves out
    for name, parameters in portable.items():
        assert not any(k in parameters for k in COMBINATORS), name
        assert list(parameters["properties"]) == list(exact[name]["properties"]), name
        for field, prop in parameters["properties"].items():
            assert prop.get("description") == exact[name]["properties"][field].get("description")
    assert bound.kwargs["tool_choice"] == "any"


def test_openai_clients_get_exact_schemas_only_when_pointed_at_an_internvl_server() -> None:
    from langchain_openai import AzureChatOpenAI, ChatOpenAI

    served = ChatOpenAI(model="internvl3-2b", api_key="sk-test", base_url="http://127.0.0.1:9/v1")
    assert tool_schemas_for(served) == "exact"  # vLLM, lmdeploy, internvl-agent serve
    exact = bind_action_tools(served, action_tools(BROWSER_ACTIONS))
    assert _bound_parameters(exact) == _exact()
    portable = bind_action_tools(served, action_tools(BROWSER_ACTIONS), schemas="portable")
    assert not any("anyOf" in p for p in _bound_parameters(portable).values())
    # OpenAI's and Azure's APIs answer 400 "schema must have type 'object' and not have
    # 'oneOf'/'anyOf'/'allOf'/'enum'/'not' at the top level"
    openai = ChatOpenAI(model="gpt-4o", api_key="sk-test")
    azure = AzureChatOpenAI(
        azure_endpoint="https://example.openai.azure.com",
        azure_deployment="gpt-4o",
        api_version="2024-10-21",
        api_key="test",  # type: ignore[arg-type]
    )
    assert tool_schemas_for(openai) == tool_schemas_for(azure) == "portable"


def test_anthropic_gets_every_tool_in_a_form_its_api_accepts() -> None:
    import warnings

    from langchain_anthropic import ChatAnthropic

    model = ChatAnthropic(model="claude-sonnet-4-5", api_key="sk-ant-test")  # type: ignore[call-arg]
    tools = action_tools(BROWSER_ACTIONS)
    # The API answers "input_schema does not support oneOf, allOf, or anyOf at the top level"
    # (HTTP 400); langchain-anthropic drops such tools with a warning: click, type_text...
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exact = bind_action_tools(model, tools, schemas="exact")
    offered = {t["name"] for t in exact.kwargs["tools"]}
    assert "click" not in offered and any("top-level anyOf" in str(w.message) for w in caught)

    bound = bind_action_tools(model, tools)
    assert [t["name"] for t in bound.kwargs["tools"]] == [t.name for t in tools]
    for tool in bound.kwargs["tools"]:
        assert not any(k in tool["input_schema"] for k in COMBINATORS), tool["name"]
    assert bound.kwargs["tool_choice"] == {"type": "any"}


def test_the_agent_passes_its_choice_on_and_checks_it() -> None:
    fake = tool_calling_fake()
    agent = GUIAgent(fake, FakeComputer(), tool_schemas="exact")
    assert _bound_parameters(agent.bound_model)["click"] == _exact()["click"]
    with pytest.raises(ConfigurationError, match="tool_schemas must be auto, exact or portable"):
        GUIAgent(fake, FakeComputer(), tool_schemas="strict")  # type: ignore[arg-type]


def test_a_model_with_fallbacks_gets_exact_schemas_only_if_every_model_takes_them() -> None:
    from langchain_anthropic import ChatAnthropic
    from langchain_openai import ChatOpenAI

    def openai() -> ChatOpenAI:
        return ChatOpenAI(model="m", api_key="sk-test", base_url="http://127.0.0.1:9/v1")

    claude = ChatAnthropic(model="claude-sonnet-4-5", api_key="sk-ant-test")  # type: ignore[call-arg]
    assert tool_schemas_for(openai().with_fallbacks([openai()])) == "exact"
    assert tool_schemas_for(openai().with_fallbacks([claude])) == "portable"


def test_a_typed_done_keeps_its_output_field_in_the_portable_form() -> None:
    from pydantic import BaseModel

    class Total(BaseModel):
        amount: float

    agent = GUIAgent(tool_calling_fake(), FakeComputer(), output_schema=Total)
    done = _bound_parameters(agent.bound_model)["done"]
    assert "anyOf" not in done
    assert done["properties"]["output"]["properties"]["amount"]["type"] == "number"


def test_an_api_that_refuses_the_exact_schemas_ends_the_run_with_the_fix(tmp_path: Any) -> None:
    def refusing() -> Any:
        raise RuntimeError(
            "Error code: 400 - Invalid schema for function 'click': schema must have type "
            "'object' and not have 'oneOf'/'anyOf'/'allOf'/'enum'/'not' at the top level."
        )
        yield  # a generator: the fake model's first reply raises

    agent = GUIAgent(
        ToolCallingFake(messages=refusing()), FakeComputer(), record_dir=tmp_path, max_steps=2
    )
    result = agent.run("anything")
    assert result.status == "error"
    assert result.error is not None and "tool_schemas='portable'" in result.error

"""Tests for internvl_agent.actions: validation, model-readable errors, LangChain tools."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool, StructuredTool
from langchain_core.utils.function_calling import convert_to_openai_tool

from internvl_agent.actions import (
    ACTION_MODELS,
    BROWSER_ACTIONS,
    DESKTOP_ACTIONS,
    Action,
    ActionValidationError,
    AskUser,
    Click,
    Done,
    Drag,
    GoBack,
    Hover,
    Navigate,
    PressKey,
    Scroll,
    SelectOption,
    TargetedAction,
    TypeText,
    UploadFile,
    Wait,
    action_tools,
    parse_action,
)
from internvl_agent.errors import ConfigurationError, InternVLAgentError
from tests.support.fakes import ToolCallingFake

# The protocol: tool name -> argument names, in schema order. Changing it breaks prompts.
PROTOCOL = {
    "click": ["x", "y", "element", "button", "clicks", "modifiers"],
    "type_text": ["text", "x", "y", "element", "submit"],
    "press_key": ["keys"],
    "scroll": ["direction", "amount", "x", "y", "element"],
    "drag": ["from_x", "from_y", "to_x", "to_y", "from_element", "to_element"],
    "navigate": ["url"],
    "go_back": [],
    "wait": ["seconds"],
    "done": ["answer", "success"],
    "ask_user": ["question"],
    "hover": ["x", "y", "element"],
    "select_option": ["option", "x", "y", "element"],
    "upload_file": ["path", "x", "y", "element"],
}
REQUIRED = {"type_text": ["text"], "press_key": ["keys"], "scroll": ["direction"]} | {
    "navigate": ["url"],
    "done": ["answer"],
    "ask_user": ["question"],
    "select_option": ["option"],
    "upload_file": ["path"],
}


def test_protocol_names() -> None:
    assert {name: list(model.model_fields) for name, model in ACTION_MODELS.items()} == PROTOCOL
    assert tuple(PROTOCOL) == BROWSER_ACTIONS
    browser_only = ("navigate", "go_back", "select_option", "upload_file")
    assert tuple(n for n in PROTOCOL if n not in browser_only) == DESKTOP_ACTIONS
    classes = [Click, TypeText, PressKey, Scroll, Drag, Navigate, GoBack, Wait, Done, AskUser]
    classes += [Hover, SelectOption, UploadFile]
    assert [ACTION_MODELS[name] for name in PROTOCOL] == classes
    assert all(issubclass(c, Action) and c.tool_name for c in classes)


def test_error_class() -> None:
    assert issubclass(ActionValidationError, InternVLAgentError)
    assert issubclass(ActionValidationError, ValueError)


# --- valid calls -------------------------------------------------------------------------

GOOD = [
    ("click", {"x": 500, "y": 300}, {"x": 500, "y": 300, "button": "left", "clicks": 1}),
    ("click", {"element": " the OK button "}, {"element": "the OK button", "x": None}),
    ("click", {"x": 0, "y": 1000, "button": "right", "clicks": 2}, {"button": "right"}),
    ("click", {"x": 1, "y": 2, "button": "Middle", "clicks": 3}, {"button": "middle"}),
    ("click", {"x": 512.4, "y": "300.5"}, {"x": 512, "y": 301}),  # floats rounded half up
    ("click", {"x": 5, "y": 6, "element": "both"}, {"x": 5, "element": "both"}),
    ("type_text", {"text": "hello"}, {"text": "hello", "submit": False, "x": None}),
    ("type_text", {"text": " spaced ", "x": 1, "y": 2, "submit": True}, {"text": " spaced "}),
    ("type_text", {"text": "q", "element": "search box", "submit": "true"}, {"submit": True}),
    ("press_key", {"keys": "Enter"}, {"keys": "Enter"}),
    ("press_key", {"keys": "ctrl+a"}, {"keys": "ctrl+a"}),
    ("press_key", {"keys": ["shift", "Tab"]}, {"keys": "shift+Tab"}),
    ("scroll", {"direction": "down"}, {"direction": "down", "amount": 3, "x": None}),
    ("scroll", {"direction": "UP", "amount": 50, "x": 10, "y": 20}, {"direction": "up"}),
    ("scroll", {"direction": "left", "amount": 1, "element": "the list"}, {"amount": 1}),
    ("drag", {"from_x": 1, "from_y": 2, "to_x": 3, "to_y": 4}, {"to_y": 4}),
    ("drag", {"from_element": "file", "to_element": "trash"}, {"from_x": None}),
    ("drag", {"from_x": 1, "from_y": 2, "to_element": "trash"}, {"to_element": "trash"}),
    ("navigate", {"url": "https://example.com/a?b=c"}, {"url": "https://example.com/a?b=c"}),
    ("navigate", {"url": "example.com"}, {"url": "https://example.com"}),
    ("navigate", {"url": "about:blank"}, {"url": "about:blank"}),
    ("go_back", {}, {}),
    ("go_back", None, {}),
    ("wait", {"seconds": 2.5}, {"seconds": 2.5}),
    ("wait", {}, {"seconds": 1.0}),
    ("wait", {"seconds": 10}, {"seconds": 10}),
    ("done", {"answer": "42"}, {"answer": "42", "success": True}),
    ("done", {"answer": "", "success": False}, {"success": False}),
    ("ask_user", {"question": "Which account?"}, {"question": "Which account?"}),
    ("Click", {"x": 1, "y": 1}, {"x": 1}),  # names are case-insensitive
    ("type-text", {"text": "a"}, {"text": "a"}),
    ("click", '{"x": 7, "y": 8}', {"x": 7, "y": 8}),  # JSON-string arguments
]


@pytest.mark.parametrize(("name", "args", "expected"), GOOD)
def test_parse_good(name: str, args: Any, expected: dict[str, Any]) -> None:
    action = parse_action(name, args)
    assert action.tool_name == name.lower().replace("-", "_")
    for field, value in expected.items():
        assert getattr(action, field) == value, field


def test_points() -> None:
    click = parse_action("click", {"x": 5, "y": 6, "element": "x"})
    assert isinstance(click, TargetedAction)
    assert click.point == (5, 6)  # the point wins when both are given
    assert parse_action("click", {"element": "OK"}).point is None
    drag = parse_action("drag", {"from_x": 1, "from_y": 2, "to_element": "bin"})
    assert isinstance(drag, Drag)
    assert drag.from_point == (1, 2) and drag.to_point is None


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("click", {"x": 500, "y": 300}, "click at (500, 300)"),
        ("click", {"element": "OK", "button": "right", "clicks": 2}, "right double-click on 'OK'"),
        (
            "type_text",
            {"text": "hi", "element": "box", "submit": True},
            "type 'hi' on 'box' and press Enter",
        ),
        ("type_text", {"text": "hi"}, "type 'hi'"),
        ("press_key", {"keys": "ctrl+a"}, "press ctrl+a"),
        ("scroll", {"direction": "down", "x": 1, "y": 2}, "scroll down 3 at (1, 2)"),
        ("drag", {"from_x": 1, "from_y": 2, "to_element": "bin"}, "drag from (1, 2) to 'bin'"),
        ("navigate", {"url": "example.com"}, "open https://example.com"),
        ("go_back", {}, "go back"),
        ("wait", {"seconds": 2}, "wait 2s"),
        ("done", {"answer": "no", "success": False}, "done (failure): no"),
        ("ask_user", {"question": "Which?"}, "ask the user: Which?"),
    ],
)
def test_describe(name: str, args: dict[str, Any], expected: str) -> None:
    assert parse_action(name, args).describe() == expected


# --- invalid calls -----------------------------------------------------------------------

BAD = [
    # (name, args, fragments every one of which must be in the message)
    ("click", {}, ["`click`", "needs a target", "x and y", "element", "0..1000"]),
    ("click", {"x": 500}, ["x and y go together"]),
    ("click", {"y": 500, "element": "OK"}, ["x and y go together"]),
    ("click", {"x": 1200, "y": 3}, ["`x`", "less than or equal to 1000", "1200", "0..1000"]),
    ("click", {"x": -1, "y": 3}, ["`x`", "greater than or equal to 0", "-1"]),
    ("click", {"x": "left", "y": 3}, ["`x`", "valid integer", "'left'"]),
    ("click", {"x": 1, "y": 2, "clicks": 4}, ["`clicks`", "less than or equal to 3"]),
    ("click", {"x": 1, "y": 2, "clicks": 0}, ["`clicks`", "greater than or equal to 1"]),
    ("click", {"x": 1, "y": 2, "button": "back"}, ["`button`", "'left', 'right' or 'middle'"]),
    ("click", {"element": "   "}, ["`element`", "not whitespace"]),
    ("click", {"x": 1, "y": 2, "elemnt": "OK"}, ["`elemnt` is not an argument of click"]),
    ("type_text", {}, ["`text` is required but missing", "exact text to type"]),
    ("type_text", {"text": ""}, ["`text`", "at least 1 character"]),
    ("type_text", {"text": "a", "x": 5}, ["x and y go together"]),
    ("press_key", {}, ["`keys` is required", "ctrl+a"]),
    ("press_key", {"keys": ""}, ["`keys`"]),
    ("scroll", {}, ["`direction` is required"]),
    ("scroll", {"direction": "sideways"}, ["`direction`", "'up', 'down', 'left' or 'right'"]),
    ("scroll", {"direction": "up", "amount": 51}, ["`amount`", "less than or equal to 50"]),
    ("scroll", {"direction": "up", "amount": 0}, ["`amount`", "greater than or equal to 1"]),
    ("drag", {}, ["drag needs its start", "from_x and from_y", "from_element"]),
    ("drag", {"from_x": 1, "from_y": 2}, ["drag needs its end", "to_x and to_y", "to_element"]),
    ("drag", {"from_x": 1, "to_element": "bin"}, ["from_x and from_y go together"]),
    ("drag", {"from_x": 1, "from_y": 2, "to_x": 3, "to_y": 1001}, ["`to_y`", "1000"]),
    ("navigate", {}, ["`url` is required"]),
    ("navigate", {"url": "my search terms"}, ["`url`", "cannot contain spaces"]),
    ("go_back", {"steps": 2}, ["`steps` is not an argument of go_back"]),
    ("wait", {"seconds": 11}, ["`seconds`", "less than or equal to 10"]),
    ("wait", {"seconds": -1}, ["`seconds`", "greater than or equal to 0"]),
    ("wait", {"seconds": "soon"}, ["`seconds`", "'soon'"]),
    ("done", {}, ["`answer` is required"]),
    ("done", {"answer": "x", "success": "maybe"}, ["`success`", "valid boolean"]),
    ("ask_user", {"question": ""}, ["`question`"]),
    ("click", "{not json", ["not valid JSON"]),
    ("click", [1, 2], ["must be a JSON object"]),
]


@pytest.mark.parametrize(("name", "args", "fragments"), BAD)
def test_parse_bad(name: str, args: Any, fragments: list[str]) -> None:
    with pytest.raises(ActionValidationError) as info:
        parse_action(name, args)
    message = str(info.value)
    assert message.startswith(f"Invalid call to tool `{name}`:")
    assert info.value.tool == name
    assert info.value.problems
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_bad_message_lists_the_arguments() -> None:
    with pytest.raises(ActionValidationError) as info:
        parse_action("click", {"x": 1, "y": 2, "foo": 3})
    assert "Arguments of click: x, y, element, button, clicks, modifiers." in str(info.value)
    assert "0..1000 of the latest screenshot" in str(info.value)


def test_bad_optional_field_gives_one_problem() -> None:
    with pytest.raises(ActionValidationError) as info:
        parse_action("click", {"x": "abc", "y": 1})
    assert info.value.problems and len(info.value.problems) == 1
    assert "None" not in str(info.value)


def test_several_problems_are_all_reported() -> None:
    with pytest.raises(ActionValidationError) as info:
        parse_action("scroll", {"direction": "diagonal", "amount": 99})
    assert len(info.value.problems) == 2


def test_unknown_tool_lists_valid_names() -> None:
    with pytest.raises(ActionValidationError) as info:
        parse_action("tap", {"x": 1, "y": 2})
    message = str(info.value)
    assert "`tap` does not exist" in message
    assert "Valid tools: " + ", ".join(BROWSER_ACTIONS) + "." in message


def test_allowed_limits_the_tools() -> None:
    with pytest.raises(ActionValidationError) as info:
        parse_action("navigate", {"url": "https://a.b"}, allowed=DESKTOP_ACTIONS)
    message = str(info.value)
    assert "`navigate` is not available here" in message
    assert "Valid tools: " + ", ".join(DESKTOP_ACTIONS) + "." in message
    assert parse_action("click", {"x": 1, "y": 1}, allowed=DESKTOP_ACTIONS).point == (1, 1)


# --- LangChain tools and OpenAI schemas --------------------------------------------------


def test_action_tools() -> None:
    tools = action_tools()
    assert [t.name for t in tools] == list(BROWSER_ACTIONS)
    assert all(isinstance(t, StructuredTool) for t in tools)
    assert [t.args_schema for t in tools] == [ACTION_MODELS[n] for n in BROWSER_ACTIONS]
    assert all(t.description for t in tools)
    assert [t.name for t in action_tools(DESKTOP_ACTIONS)] == list(DESKTOP_ACTIONS)


def test_action_tools_rejects_unknown_names() -> None:
    with pytest.raises(ConfigurationError, match="unknown action names \\['tap'\\]"):
        action_tools(["click", "tap"])


def test_tool_call_outside_agent_returns_a_description() -> None:
    click = action_tools(["click"])[0]
    assert click.invoke({"x": 5, "y": 6}) == "requested: click at (5, 6)"


def test_tool_call_with_bad_args_returns_the_model_readable_error() -> None:
    click = action_tools(["click"])[0]
    result = click.invoke({"x": 5000, "y": 6})
    assert result.startswith("Invalid call to tool `click`:")
    assert "`x`" in result and "1000" in result


def _openai_schemas(names: Sequence[str] = BROWSER_ACTIONS) -> list[dict[str, Any]]:
    return [convert_to_openai_tool(tool) for tool in action_tools(names)]


@pytest.mark.parametrize("name", BROWSER_ACTIONS)
def test_openai_schema(name: str) -> None:
    [schema] = _openai_schemas([name])
    assert schema["type"] == "function"
    function = schema["function"]
    assert function["name"] == name
    assert function["description"]
    parameters = function["parameters"]
    assert parameters["type"] == "object"
    assert list(parameters["properties"]) == PROTOCOL[name]
    assert sorted(parameters.get("required", [])) == sorted(REQUIRED.get(name, []))
    for prop in parameters["properties"].values():
        assert prop.get("description"), prop


def test_openai_schema_coordinates() -> None:
    [click] = _openai_schemas(["click"])
    x = click["function"]["parameters"]["properties"]["x"]
    [integer] = [s for s in x["anyOf"] if s["type"] == "integer"]
    assert (integer["minimum"], integer["maximum"]) == (0, 1000)
    assert "0..1000" in x["description"] and "latest screenshot" in x["description"]
    clicks = click["function"]["parameters"]["properties"]["clicks"]
    assert (clicks["minimum"], clicks["maximum"]) == (1, 3)


def test_bind_tools_with_a_fake_model() -> None:
    call = {"name": "click", "args": {"x": 5, "y": 6}, "id": "c1", "type": "tool_call"}
    model = ToolCallingFake(messages=iter([AIMessage(content="", tool_calls=[call])]))
    bound = model.bind_tools(action_tools(), tool_choice="any")
    reply = bound.invoke("click the OK button")
    assert [f["function"]["name"] for f in bound.kwargs["tools"]] == list(BROWSER_ACTIONS)
    assert bound.kwargs["tools"] == _openai_schemas()
    assert bound.kwargs["tool_choice"] == "any"
    [tool_call] = reply.tool_calls
    action = parse_action(tool_call["name"], tool_call["args"])
    assert isinstance(action, Click) and action.point == (5, 6)


def test_bind_tools_with_chat_openai() -> None:
    openai = pytest.importorskip("langchain_openai")
    model = openai.ChatOpenAI(model="internvl3", api_key="unused", base_url="http://127.0.0.1:9")
    bound = model.bind_tools(action_tools())
    names = [t["function"]["name"] for t in bound.kwargs["tools"]]
    assert names == list(BROWSER_ACTIONS)


def test_tools_work_in_create_agent() -> None:
    agents = pytest.importorskip("langchain.agents")
    good = {"name": "click", "args": {"element": "OK"}, "id": "c1", "type": "tool_call"}
    bad = {"name": "scroll", "args": {"direction": "sideways"}, "id": "c2", "type": "tool_call"}
    replies = iter([AIMessage(content="", tool_calls=[good, bad]), AIMessage(content="finished")])
    tools: list[BaseTool] = action_tools()
    agent = agents.create_agent(ToolCallingFake(messages=replies), tools)
    state = agent.invoke({"messages": [("user", "press OK")]})
    results = {m.tool_call_id: m.content for m in state["messages"] if isinstance(m, ToolMessage)}
    assert results["c1"] == "requested: click on 'OK'"
    assert results["c2"].startswith("Invalid call to tool `scroll`:")
    assert state["messages"][-1].content == "finished"


def test_navigate_adds_http_for_local_hosts_and_https_elsewhere() -> None:
    assert parse_action("navigate", {"url": "127.0.0.1:8000/x"}).url == "http://127.0.0.1:8000/x"
    assert parse_action("navigate", {"url": "localhost:3000"}).url == "http://localhost:3000"
    assert parse_action("navigate", {"url": "example.com"}).url == "https://example.com"


# --- the schema says what validation checks (issue 10, part 5) ----------------------------


def test_blank_class_is_exactly_what_strip_removes() -> None:
    import re

    from internvl_agent.json_schema import BLANK_CLASS, NON_BLANK_PATTERN

    blank = re.compile(f"[{BLANK_CLASS}]")
    every = map(chr, range(0x110000))
    assert [c for c in every if bool(blank.fullmatch(c)) != c.isspace()] == []
    pattern = re.compile(NON_BLANK_PATTERN)
    for value in [
        " ",
        "\u3000\n",
        "\x1c",
        "",
        " a",
        "a\nb",
        "\x85é",
        "a ",
        " \n\t",
        "\n \u2028x\n",
    ]:
        assert bool(pattern.search(value)) == bool(value.strip()), repr(value)
    for c in map(chr, range(0x110000)):  # every one-character string, and it padded
        for value in (c, f" {c}\n"):
            assert bool(pattern.search(value)) == bool(value.strip()), repr(value)


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("click", {}),
        ("click", {"x": 5}),
        ("click", {"x": 5, "element": "the OK button"}),
        ("hover", {"y": 5}),
        ("type_text", {"text": "a", "y": 3}),
        ("drag", {"from_x": 1, "from_y": 2}),
        ("drag", {"to_element": "b", "from_x": 1}),
        ("select_option", {"option": "Red"}),
        ("upload_file", {"path": "a.txt"}),
    ],
)
def test_schema_rejects_what_validation_rejects(name: str, args: dict[str, Any]) -> None:
    """Calls validation refuses are outside the JSON schema too (checked with jsonschema)."""
    import jsonschema

    schema = ACTION_MODELS[name].model_json_schema()
    with pytest.raises(ActionValidationError):
        parse_action(name, args)
    assert not jsonschema.Draft202012Validator(schema).is_valid(args)


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("click", {"x": 5, "y": 6, "modifiers": ["ctrl", "shift"]}),
        ("click", {"element": "the OK button"}),
        ("type_text", {"text": "a"}),
        ("drag", {"from_element": "a", "to_x": 1, "to_y": 2}),
        ("navigate", {"url": "http://127.0.0.1:99999/"}),  # the browser reports the port
        ("select_option", {"option": "Red", "element": "the colour list"}),
    ],
)
def test_schema_accepts_what_validation_accepts(name: str, args: dict[str, Any]) -> None:
    import jsonschema

    schema = ACTION_MODELS[name].model_json_schema()
    assert jsonschema.Draft202012Validator(schema).is_valid(args)
    parse_action(name, args)


def test_action_tools_keep_the_model_level_schema() -> None:
    params = convert_to_openai_tool(action_tools(["click"])[0])["function"]["parameters"]
    assert params["additionalProperties"] is False
    assert [b["required"] for b in params["anyOf"]] == [["x", "y"], ["element"]]


def test_modifiers_aliases_and_description() -> None:
    click = parse_action("click", {"x": 1, "y": 2, "modifiers": ["Control", "shift", "cmd"]})
    assert isinstance(click, Click) and click.modifiers == ["ctrl", "shift", "meta"]
    assert click.describe() == "ctrl+shift+meta+click at (1, 2)"
    with pytest.raises(ActionValidationError, match="modifiers"):
        parse_action("click", {"x": 1, "y": 2, "modifiers": ["hyper"]})


def test_execute_without_a_located_point_fails_cleanly() -> None:
    from internvl_agent.actions import execute
    from tests.unit.test_agent import FakeComputer

    computer = FakeComputer()
    for action in (
        Click(element="the OK button"),
        Hover(element="the menu"),
        SelectOption(option="Red", element="the list"),
        UploadFile(path="a.txt", element="the upload button"),
        Drag(from_element="a", to_element="b"),
    ):
        outcome = execute(computer, action)
        assert not outcome.ok and "needs a target point" in outcome.message
    assert computer.done == []
    hovered = execute(computer, Hover(x=1, y=2), point=(1, 2))
    assert not hovered.ok and "hover is not available on a computer" in hovered.message


def test_cli_output_schema_file(tmp_path: Any) -> None:
    from internvl_agent.cli import load_output_schema

    good = tmp_path / "s.json"
    good.write_text('{"type": "object", "properties": {"n": {"type": "integer"}}}')
    assert load_output_schema(good) == {"type": "object", "properties": {"n": {"type": "integer"}}}
    assert load_output_schema(None) is None
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ConfigurationError, match="is not JSON"):
        load_output_schema(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(ConfigurationError, match="must hold a JSON object"):
        load_output_schema(tmp_path / "list.json")
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_output_schema(tmp_path / "missing.json")

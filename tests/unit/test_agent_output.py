"""GUIAgent(output_schema=...): `done` carries a typed result (issue 10, part 4)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from internvl_agent.agent import GUIAgent
from internvl_agent.errors import ConfigurationError
from tests.support.agent_runs import check_record
from tests.support.scripted_model import ScriptedModel, call, message_text
from tests.unit.test_agent import FakeComputer


class Flight(BaseModel):
    number: str = Field(pattern=r"^[A-Z]{2}\d{2,4}$")
    seats: int = Field(ge=0)


def test_done_output_is_the_validated_model(tmp_path: Path) -> None:
    model = ScriptedModel(
        script=[
            call("done", output={"number": "lh123", "seats": 2}),  # pattern fails
            call("done", answer="found it"),  # success without output
            call("done", output={"number": "LH123", "seats": 2}, answer="found it"),
        ]
    )
    agent = GUIAgent(
        model, FakeComputer(), record_dir=tmp_path, output_schema=Flight, tool_schemas="exact"
    )
    result = agent.run("Find the flight")

    assert result.status == "done" and result.steps == 3
    assert result.output == Flight(number="LH123", seats=2)
    second, third = message_text(model.step_calls[1]), message_text(model.step_calls[2])
    assert "Invalid call to tool `done`" in second and "`output`" in second
    assert "needs `output`" in third
    tools = {t["function"]["name"]: t for t in agent.bound_model.kwargs["tools"]}  # type: ignore[attr-defined]
    done_tool = tools["done"]["function"]["parameters"]
    assert "output" in done_tool["properties"] and done_tool["anyOf"]
    check_record(result)


def test_failed_done_has_no_output(tmp_path: Path) -> None:
    model = ScriptedModel(script=[call("done", success=False, answer="no flights today")])
    agent = GUIAgent(model, FakeComputer(), record_dir=tmp_path, output_schema=Flight)
    result = agent.run("Find the flight")
    assert result.status == "failed" and result.output is None
    assert result.answer == "no flights today"


def test_json_schema_output(tmp_path: Path) -> None:
    schema = {
        "type": "object",
        "properties": {"total": {"type": "number"}},
        "required": ["total"],
        "additionalProperties": False,
    }
    model = ScriptedModel(
        script=[call("done", output={"total": "12"}), call("done", output={"total": 12.5})]
    )
    agent = GUIAgent(model, FakeComputer(), record_dir=tmp_path, output_schema=schema)
    result = agent.run("Sum the cart")
    assert result.status == "done" and result.output == {"total": 12.5}
    assert "'12' is not of type 'number'" in message_text(model.step_calls[1])


def test_bad_output_schema_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not a valid JSON schema"):
        GUIAgent(ScriptedModel(script=[]), FakeComputer(), output_schema={"type": 5})
    with pytest.raises(ConfigurationError, match="pydantic model class or a JSON schema"):
        GUIAgent(ScriptedModel(script=[]), FakeComputer(), output_schema=str)  # type: ignore[arg-type]

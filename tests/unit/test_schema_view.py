"""What the model reads of a tool's schema (chat/schema_view.py): a shorter summary."""

from __future__ import annotations

import json
from typing import Any

from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, Field

from internvl_agent.actions import ACTION_MODELS, action_tools, done_with_output
from internvl_agent.chat.schema_view import model_view, tool_view
from internvl_agent.chat.tools import render_tools_system_prompt
from internvl_agent.json_schema import NON_BLANK_PATTERN


def _parameters(name: str, models: Any = None) -> dict[str, Any]:
    (tool,) = action_tools([name], models=models)
    return convert_to_openai_tool(tool)["function"]["parameters"]


def _strip_view_only(schema: dict[str, Any]) -> dict[str, Any]:
    """A full property schema as the view should show it: null branch and non-blank pattern
    gone, a null default gone, everything else kept."""
    options = schema.get("anyOf")
    if options and {"type": "null"} in options:
        (kept,) = [o for o in options if o != {"type": "null"}]
        schema = {**kept, **{k: v for k, v in schema.items() if k != "anyOf"}}
    return {
        k: v
        for k, v in schema.items()
        if not (k == "pattern" and v == NON_BLANK_PATTERN) and not (k == "default" and v is None)
    }


def test_click_reads_as_its_properties_and_the_point_or_element_rule() -> None:
    full = _parameters("click")
    view = model_view(full)
    assert view["anyOf"] == [{"required": ["x", "y"]}, {"required": ["element"]}]
    assert list(view["properties"]) == list(full["properties"])
    for name, prop in full["properties"].items():
        assert view["properties"][name] == _strip_view_only(prop), name
    assert view["additionalProperties"] is False
    text = json.dumps(view)
    assert '"null"' not in text and "\\\\u3000" not in text
    assert json.dumps(full).count("\\\\u3000") >= 2  # the full schema keeps them


def test_an_optional_target_adds_no_alternatives() -> None:
    view = model_view(_parameters("scroll"))
    assert "anyOf" not in view  # scrolling at the centre needs no field
    assert {"x", "y", "element", "direction"} <= set(view["properties"])


def test_drag_lists_the_four_ways_to_give_both_ends() -> None:
    view = model_view(_parameters("drag"))
    assert view["anyOf"] == [
        {"required": ["from_x", "from_y", "to_x", "to_y"]},
        {"required": ["from_x", "from_y", "to_element"]},
        {"required": ["from_element", "to_x", "to_y"]},
        {"required": ["from_element", "to_element"]},
    ]


def test_alternatives_that_narrow_a_property_keep_the_narrowing() -> None:
    class Result(BaseModel):
        total: int = Field(description="The sum.")

    done = done_with_output(Result)
    view = model_view(_parameters("done", models={**ACTION_MODELS, "done": done}))
    assert view["anyOf"] == [
        {"properties": {"success": {"type": "boolean", "enum": [True]}}, "required": ["output"]},
        {"properties": {"success": {"type": "boolean", "enum": [False]}}, "required": ["success"]},
    ]
    assert view["properties"]["output"]["properties"]["total"]["type"] == "integer"


def test_other_schemas_are_shown_as_they_are() -> None:
    user_tool = {
        "type": "object",
        "properties": {
            "code": {"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO currency"},
            "when": {"anyOf": [{"type": "string"}, {"type": "integer"}], "default": None},
        },
        # alternatives that are not restatements of the properties: kept whole
        "anyOf": [{"properties": {"extra": {"type": "string"}}, "required": ["extra"]}],
        "required": ["code"],
    }
    assert model_view(user_tool) == user_tool
    # alternatives restating the properties but saying more than fields: kept whole
    counted = {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
        "anyOf": [{"type": "object", "properties": {"a": {"type": "string"}}, "minProperties": 2}],
    }
    assert model_view(counted) == counted
    # values of keywords are never rewritten, only schemas
    constant = {"enum": [{"anyOf": [{"type": "integer"}, {"type": "null"}]}]}
    assert model_view(constant) == constant
    assert tool_view("not a tool dict") == "not a tool dict"


def test_the_tools_block_shows_the_view_and_is_much_shorter() -> None:
    tools = [convert_to_openai_tool(t) for t in action_tools()]
    block = render_tools_system_prompt(tools)
    full = sum(len(json.dumps(t, ensure_ascii=False)) for t in tools)
    shown = sum(len(json.dumps(tool_view(t), ensure_ascii=False)) for t in tools)
    assert NON_BLANK_PATTERN.replace("\\", "\\\\") not in block
    for tool in tools:
        assert json.dumps(tool_view(tool), ensure_ascii=False) in block
    assert shown < 0.6 * full  # 21,746 -> 10,764 characters when this was written


def test_a_required_property_keeps_its_null_branch() -> None:
    class Form(BaseModel):
        gate: str | None = Field(description="null when no gate is shown")
        seat: str | None = Field(None, description="a seat, if chosen")

    view = model_view(convert_to_openai_tool(Form)["function"]["parameters"])
    assert view["required"] == ["gate"]
    assert {"type": "null"} in view["properties"]["gate"]["anyOf"]  # null is how to leave it
    assert view["properties"]["seat"] == {"type": "string", "description": "a seat, if chosen"}

"""What the model reads of a tool's JSON schema, beside the exact schema the decoder enforces.

A schema that makes constrained decoding produce only calls that validate says a lot that a
reader does not need: every "point or element" alternative spelled out as a whole object
(xgrammar reads only the branches of an ``anyOf``), the null branch of every optional, and a
pattern naming each whitespace code point. For InternVL's 13 browser actions that was 7,702
prompt tokens at every step. The tools block shows the model `model_view(schema)` instead:
the same properties, types, bounds, enums, descriptions and required fields, each alternative
reduced to what it adds (its required fields, its narrowed properties), optionals without
their null branch, and no non-blank pattern (``minLength: 1`` says it). Decoding and
validation keep the exact schema; only the prompt is shorter.

`portable_view` is the same without combinators at the top: what the agent gives chat models
whose APIs refuse them (Anthropic's), as they would refuse the exact schema.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

BLANK_CLASS = (
    "\\u0009-\\u000d\\u001c-\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a"
    "\\u2028\\u2029\\u202f\\u205f\\u3000"
)
"""A regex class of exactly the characters for which str.isspace() is true."""
NON_BLANK_PATTERN = f"^[\\s\\S]*[^{BLANK_CLASS}][\\s\\S]*$"
"""A string with at least one character that str.strip() keeps (anchored at both ends:
xgrammar matches a pattern against the whole string, llguidance and JSON Schema search it)."""

_DOCUMENTATION = ("title", "description", "default")
_BRANCH_KEYS = {"type", "properties", "required", "additionalProperties", "title", "description"}
_NULL = {"type": "null"}
_COMBINATORS = ("anyOf", "oneOf", "allOf")
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMAS = ("items", "additionalProperties", "not", "contains", "if", "then", "else")


def model_view(schema: Any) -> Any:
    """`schema` as the model reads it in the tools block (see the module docstring)."""
    if not isinstance(schema, dict):
        return schema
    optional = _without_null(schema)
    if optional is not None:
        return optional
    view: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "pattern" and value == NON_BLANK_PATTERN:
            continue
        if key == "anyOf" and isinstance(schema.get("properties"), dict):
            alternatives = _alternatives(schema, value)
            if alternatives is not None:
                if alternatives:
                    view["anyOf"] = alternatives
                continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            view[key] = {name: model_view(sub) for name, sub in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            view[key] = [model_view(sub) for sub in value]
        elif key in _SCHEMAS:
            view[key] = model_view(value)
        else:  # a keyword's value (enum, default, const, description...): shown as it is
            view[key] = value
    return view


def portable_view(schema: Any) -> Any:
    """`model_view` without anyOf / oneOf / allOf at the top: a schema that every
    tool-calling API takes (Anthropic's refuses combinators at the top of a tool's input
    schema). The tool's description states the rule they spelled out, and the caller
    validates each call against the exact schema."""
    view = model_view(schema)
    if not isinstance(view, dict):
        return view
    return {k: v for k, v in view.items() if k not in _COMBINATORS}


def tool_view(tool: Any, view: Callable[[Any], Any] = model_view) -> Any:
    """An OpenAI tool dict with its parameters' `view` (anything else as it is)."""
    function = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("parameters"), dict):
        return tool
    return {**tool, "function": {**function, "parameters": view(function["parameters"])}}


def _without_null(schema: dict[str, Any]) -> dict[str, Any] | None:
    """An optional written as ``anyOf: [X, null]`` shown as X (with its documentation)."""
    options = schema.get("anyOf")
    if not isinstance(options, list) or len(options) != 2 or options.count(_NULL) != 1:
        return None
    (kept,) = [o for o in options if o != _NULL]
    if not isinstance(kept, dict) or not set(schema) - {"anyOf"} <= set(_DOCUMENTATION):
        return None
    view = model_view(kept)
    for key, value in schema.items():
        if key != "anyOf" and not (key == "default" and value is None):
            view[key] = value
    return view


def undocumented(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` without its title, description and default."""
    return {k: v for k, v in schema.items() if k not in _DOCUMENTATION}


def non_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A property's schema without its null branch and without documentation (what a
    branch of alternatives that requires the property shows of it)."""
    options = [o for o in schema.get("anyOf", [schema]) if o != _NULL]
    return undocumented(options[0] if len(options) == 1 else {"anyOf": options})


def _alternatives(schema: dict[str, Any], branches: Any) -> list[dict[str, Any]] | None:
    """An object's ``anyOf`` of whole objects restating its properties, reduced to what each
    branch adds; [] when one branch adds nothing (the object alone satisfies it); None when
    the branches are not of that kind (they are then shown as they are)."""
    props: dict[str, Any] = schema["properties"]
    required = set(schema.get("required", []))
    reduced: list[dict[str, Any]] = []
    for branch in branches if isinstance(branches, list) else []:
        if not isinstance(branch, dict) or not set(branch) <= _BRANCH_KEYS:
            return None
        branch_props, branch_required = branch.get("properties"), branch.get("required", [])
        if not isinstance(branch_props, dict) or not set(branch_props) <= set(props):
            return None
        if not isinstance(branch_required, list):
            return None
        if not all(isinstance(p, dict) for p in (*branch_props.values(), *props.values())):
            return None
        if branch.get("type", "object") != "object":
            return None
        narrowed = {
            name: model_view(sub)
            for name, sub in branch_props.items()
            if non_null(sub) != non_null(props[name])
        }
        needs = [r for r in branch_required if r not in required]
        if not narrowed and not needs:
            return []
        alternative: dict[str, Any] = {"properties": narrowed} if narrowed else {}
        reduced.append({**alternative, "required": needs} if needs else alternative)
    return reduced or None

"""Shorter views of a tool's JSON schema, for the model to read; the exact schema is enforced.

A schema that makes constrained decoding produce only calls that validate says a lot that a
reader does not need: every "point or element" alternative spelled out as a whole object
(xgrammar reads only the branches of an ``anyOf``), the null branch of every optional, and a
pattern naming each whitespace code point. For InternVL's 13 browser actions that was 7,702
prompt tokens at every step. ChatInternVL's tools block shows `model_view(schema)` instead, a
summary: the same properties, types, bounds, enums, descriptions and required fields; each
alternative reduced to what it adds (its required fields, its narrowed properties); optional
properties without their null branch (a required one keeps it); no non-blank pattern.

A summary is wider than the schema: it lets through, for example, ``x`` without ``y`` next to
``element``, or a blank string. What enforces the exact schema is unchanged: a forced call
(``tool_choice`` "any" or a name) is decoded under it, and the agent validates every call
(an invalid one is fed back to the model); an unforced call is only parsed.

`portable_view` is the summary without a combinator at the top: the OpenAI, Azure OpenAI and
Anthropic APIs refuse anyOf / oneOf / allOf there; the agent gives such views to every model
that does not decode a forced call under the exact schema (agent.tool_schemas_for).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from internvl_agent.json_schema import DOCUMENTATION_KEYS, NON_BLANK_PATTERN, NULL, non_null

_BRANCH_KEYS = {"type", "properties", "required", "additionalProperties", "title", "description"}
_COMBINATORS = ("anyOf", "oneOf", "allOf")
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMAS = ("items", "additionalProperties", "not", "contains", "if", "then", "else")


def model_view(schema: Any, *, required: bool = False) -> Any:
    """`schema` as the model reads it (see the module docstring); `required`: it is a
    required property, whose null branch is kept (null is then the way to leave it empty)."""
    if not isinstance(schema, dict):
        return schema
    optional = None if required else _without_null(schema)
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
        if key == "properties" and isinstance(value, dict):
            needed = _required(schema)
            view[key] = {
                name: model_view(sub, required=name in needed) for name, sub in value.items()
            }
        elif key in _SCHEMA_MAPS and isinstance(value, dict):
            view[key] = {name: model_view(sub) for name, sub in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            view[key] = [model_view(sub) for sub in value]
        elif key in _SCHEMAS:
            view[key] = model_view(value)
        else:  # a keyword's value (enum, default, const, description...): shown as it is
            view[key] = value
    return view


def portable_view(schema: Any) -> Any:
    """`model_view` without anyOf / oneOf / allOf at the top, which the OpenAI, Azure OpenAI
    and Anthropic APIs refuse in a tool's parameters (nested ones stay). The rules the
    alternatives stated are in the action tools' descriptions, and the agent validates each
    call against the exact schema."""
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
    if not isinstance(options, list) or len(options) != 2 or options.count(NULL) != 1:
        return None
    (kept,) = [o for o in options if o != NULL]
    if not isinstance(kept, dict) or not set(schema) - {"anyOf"} <= set(DOCUMENTATION_KEYS):
        return None
    view = model_view(kept)
    for key, value in schema.items():
        if key != "anyOf" and not (key == "default" and value is None):
            view[key] = value
    return view


def _required(schema: dict[str, Any]) -> set[str]:
    required = schema.get("required", [])
    return {r for r in required if isinstance(r, str)} if isinstance(required, list) else set()


def _alternatives(schema: dict[str, Any], branches: Any) -> list[dict[str, Any]] | None:
    """An object's ``anyOf`` of whole objects restating its properties, reduced to what each
    branch adds; [] when one branch adds nothing (the object alone satisfies it); None when
    the branches are not of that kind (they are then shown as they are)."""
    props: dict[str, Any] = schema["properties"]
    required = _required(schema)
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

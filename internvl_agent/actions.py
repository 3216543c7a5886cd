"""The agent's actions: the tool-call protocol between the model and the GUIAgent.

Every action is a pydantic model whose schema is what the model sees. Coordinates `x`, `y` are
integers 0..1000 normalized to the width and height of the most recent screenshot. An action that
takes a point also accepts `element`, a text description the agent grounds on that screenshot;
when both are given the point is used (`point` below) and `element` is kept for the record.

`parse_action` validates a tool call and, when it is wrong, raises `ActionValidationError` with a
message written to be fed back to the model; `read_reply` does the same for a whole model reply
and never raises. `action_tools` gives the same schemas as LangChain tools, so LangGraph or
`create_agent` users can reuse them. `execute` runs a validated action on a Computer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from annotated_types import Interval
from langchain_core.messages import AIMessage
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    create_model,
    field_validator,
    model_validator,
)

from internvl_agent.computers.base import ActionOutcome, Computer
from internvl_agent.coordinates import Point
from internvl_agent.errors import ConfigurationError, InternVLAgentError
from internvl_agent.grounding import reply_text
from internvl_agent.json_schema import NON_BLANK_PATTERN, non_null, undocumented
from internvl_agent.records import dumps, safe_str, truncate
from internvl_agent.urls import normalize_url

__all__ = [
    "ACTION_MODELS",
    "BROWSER_ACTIONS",
    "DESKTOP_ACTIONS",
    "POINTER_ACTIONS",
    "Action",
    "ActionValidationError",
    "AskUser",
    "Click",
    "Done",
    "Drag",
    "GoBack",
    "Hover",
    "ModelReply",
    "Navigate",
    "PressKey",
    "Scroll",
    "SelectOption",
    "TargetedAction",
    "TypeText",
    "UploadFile",
    "Wait",
    "action_tools",
    "execute",
    "parse_action",
    "read_reply",
]


class ActionValidationError(InternVLAgentError, ValueError):
    """A tool call names no known action or has arguments that do not validate.

    `str(error)` is written for the model: which tool, which field, what was wrong, what is
    expected. `tool` is the tool name as called and `problems` the individual complaints.
    """

    def __init__(self, tool: str, problems: list[str], footer: str = "") -> None:
        self.tool = tool
        self.problems = problems
        lines = [f"Invalid call to tool `{tool}`:", *(f"- {p}" for p in problems)]
        if footer:
            lines.append(footer)
        super().__init__("\n".join(lines))


# --- field types -------------------------------------------------------------------------


def _round_number(value: Any) -> Any:
    """Accept 512.6 or "512" for an integer field: round floats and numeric strings half up."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return value
    if isinstance(value, float) and math.isfinite(value):
        return math.floor(value + 0.5)
    return value


def _lower(value: Any) -> Any:
    """Case- and space-insensitive choices ("Left " -> "left")."""
    return value.strip().lower() if isinstance(value, str) else value


MODIFIERS = ("ctrl", "shift", "alt", "meta")
_MODIFIER_ALIASES = {"control": "ctrl", "cmd": "meta", "command": "meta", "win": "meta"}


def _modifier(value: Any) -> Any:
    """ "Ctrl " -> "ctrl", "control" -> "ctrl", "cmd" -> "meta"."""
    value = _lower(value)
    return _MODIFIER_ALIASES.get(value, value) if isinstance(value, str) else value


Modifier = Annotated[Literal["ctrl", "shift", "alt", "meta"], BeforeValidator(_modifier)]


def _join_keys(value: Any) -> Any:
    """Accept ["ctrl", "a"] for "ctrl+a"."""
    if isinstance(value, (list, tuple)) and all(isinstance(k, str) for k in value):
        return "+".join(k.strip() for k in value)
    return value


# Constraints before the BeforeValidator: it runs first, and the JSON schema keeps
# minimum/maximum (pydantic writes raw "ge"/"le" when a validator precedes them).
Coord = Annotated[int, Interval(ge=0, le=1000), BeforeValidator(_round_number)]

# What a grammar lets a model write must validate, so every check is also in the JSON schema,
# written with features every constrained decoder has (pattern, minLength, enum, minimum,
# maximum, anyOf, required). Patterns are anchored at both ends (xgrammar matches a pattern
# against the whole string, llguidance and JSON Schema search it); NON_BLANK_PATTERN
# (json_schema.py) names the characters Python's str.strip() removes, so the schema and the
# Python check agree to the character.
URL_PATTERN = "^[!-Z\\\\^-~]+$"
"""Printable ASCII without spaces or square brackets: what urlsplit always parses (a URL with
other characters is percent-encoded; IPv6 hosts are not written in brackets by the model)."""


def _strip_non_blank(value: str) -> str:
    """Strip surrounding whitespace; the rest must not be empty (NON_BLANK_PATTERN)."""
    stripped = value.strip()
    if not stripped:
        raise ValueError("must contain a character that is not whitespace")
    return stripped


NonEmpty = Annotated[
    str,
    AfterValidator(_strip_non_blank),
    WithJsonSchema({"type": "string", "minLength": 1, "pattern": NON_BLANK_PATTERN}),
]
"""A string with a non-whitespace character, stripped: the schema says exactly that."""

_COORDS = "integer 0..1000 of the latest screenshot's"
_ELEMENT_HINT = (
    "a short description of the element as it looks on the latest screenshot "
    "(e.g. 'the blue Search button')"
)


def _x(purpose: str) -> Any:
    return Field(
        None, description=f"Horizontal position of {purpose}: {_COORDS} width (0 = left edge)."
    )


def _y(purpose: str) -> Any:
    return Field(
        None, description=f"Vertical position of {purpose}: {_COORDS} height (0 = top edge)."
    )


def _element(purpose: str, instead: str = "x and y") -> Any:
    return Field(None, description=f"{purpose}: {_ELEMENT_HINT}; use instead of {instead}.")


def _check_point(model: BaseModel, x_name: str, y_name: str) -> tuple[int, int] | None:
    """The point made of two fields, or None; raises when only one of them is given."""
    x, y = getattr(model, x_name), getattr(model, y_name)
    if (x is None) != (y is None):
        raise ValueError(
            f"{x_name} and {y_name} go together: give both, or neither and use the element "
            "description instead"
        )
    return None if x is None else (x, y)


def _target(point: tuple[int, int] | None, element: str | None) -> str:
    """'(500, 300)' or "'the OK button'" or ''."""
    if point is not None:
        return f"({point[0]}, {point[1]})"
    return repr(element) if element else ""


def _where(point: tuple[int, int] | None, element: str | None) -> str:
    """'at (500, 300)' or "on 'the OK button'" or ''."""
    target = _target(point, element)
    if not target:
        return ""
    return f"at {target}" if point is not None else f"on {target}"


def target_alternatives(
    schema: dict[str, Any], targets: Iterable[tuple[str, str, str, bool]]
) -> None:
    """Add to an object `schema` the "point or element" rule as an ``anyOf`` of whole objects.

    `targets` are (x field, y field, element field, required). Each target is either a point
    (both coordinates, as integers; the element may be given too) or no point (the element
    required when the target is). A decoder that reads only the branches (xgrammar) and one
    that intersects them with the properties beside them (llguidance) accept the same
    objects: the ones the model validators accept.
    """
    props: dict[str, Any] = schema.get("properties", {})
    required = list(schema.get("required", []))
    branches: list[tuple[dict[str, Any], list[str]]] = [
        ({name: undocumented(p) for name, p in props.items()}, list(required))
    ]
    for x, y, element, needed in targets:
        grown = []
        for branch_props, branch_required in branches:
            point = dict(branch_props)
            point[x], point[y] = non_null(props[x]), non_null(props[y])
            grown.append((point, [*branch_required, x, y]))
            other = {k: v for k, v in branch_props.items() if k not in (x, y)}
            if needed:
                other[element] = non_null(props[element])
            grown.append((other, [*branch_required, element] if needed else branch_required))
        branches = grown
    schema["anyOf"] = [
        {
            "type": "object",
            "properties": branch_props,
            **({"required": branch_required} if branch_required else {}),
            "additionalProperties": False,
        }
        for branch_props, branch_required in branches
    ]


def _targeted_schema(schema: dict[str, Any], cls: type) -> None:
    required = bool(getattr(cls, "target_required", False))
    if "x" in schema.get("properties", {}):
        target_alternatives(schema, [("x", "y", "element", required)])


# --- actions -----------------------------------------------------------------------------


class Action(BaseModel):
    """Base of every action model; `tool_name` is the tool the model calls."""

    model_config = ConfigDict(extra="forbid")
    tool_name: ClassVar[str] = ""

    def describe(self) -> str:
        """A short, human-readable line for logs and tool results."""
        return self.tool_name


class TargetedAction(Action):
    """An action aimed at a point (x, y) or at an element description."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_targeted_schema)
    target_required: ClassVar[bool] = False
    if TYPE_CHECKING:  # declared by each subclass, in the order its schema shows them
        x: int | None
        y: int | None
        element: str | None

    @model_validator(mode="after")
    def _check_target(self) -> TargetedAction:
        point = _check_point(self, "x", "y")
        if self.target_required and point is None and self.element is None:
            raise ValueError(
                f"{self.tool_name} needs a target: give x and y ({_COORDS} width and height) "
                "or element (a short description of the target)"
            )
        return self

    @property
    def point(self) -> tuple[int, int] | None:
        """(x, y) in 0..1000 when given; the agent grounds `element` otherwise."""
        return None if self.x is None or self.y is None else (self.x, self.y)


class Click(TargetedAction):
    """Click a point or an element on the screen. Give x and y, or element."""

    tool_name: ClassVar[str] = "click"
    target_required: ClassVar[bool] = True
    x: Coord | None = _x("the point to click")
    y: Coord | None = _y("the point to click")
    element: NonEmpty | None = _element("What to click")
    button: Annotated[Literal["left", "right", "middle"], BeforeValidator(_lower)] = Field(
        "left", description="Mouse button: left, right or middle."
    )
    clicks: Annotated[int, BeforeValidator(_round_number)] = Field(
        1, ge=1, le=3, description="1 for a click, 2 for a double-click, 3 for a triple-click."
    )
    modifiers: list[Modifier] = Field(
        default_factory=list,
        max_length=len(MODIFIERS),
        description="Keys held during the click, e.g. ['ctrl'] to add an item to a selection "
        "or open a link in a new tab, ['shift'] to select a range.",
    )

    def describe(self) -> str:
        kind = {1: "click", 2: "double-click", 3: "triple-click"}[self.clicks]
        button = "" if self.button == "left" else f"{self.button} "
        held = "+".join(dict.fromkeys(self.modifiers))
        return f"{held + '+' if held else ''}{button}{kind} {_where(self.point, self.element)}"


class Hover(TargetedAction):
    """Move the mouse over a point or an element without clicking: opens hover menus and
    shows tooltips. Give x and y, or element."""

    tool_name: ClassVar[str] = "hover"
    target_required: ClassVar[bool] = True
    x: Coord | None = _x("the point to move the mouse to")
    y: Coord | None = _y("the point to move the mouse to")
    element: NonEmpty | None = _element("What to hover")

    def describe(self) -> str:
        return f"hover {_where(self.point, self.element)}"


class SelectOption(TargetedAction):
    """Choose an option of a drop-down list (a <select>) by its visible text, without opening
    it. Target the drop-down with x and y, or element."""

    tool_name: ClassVar[str] = "select_option"
    target_required: ClassVar[bool] = True
    option: NonEmpty = Field(description="The option's text exactly as the list shows it.")
    x: Coord | None = _x("the drop-down list")
    y: Coord | None = _y("the drop-down list")
    element: NonEmpty | None = _element("The drop-down list")

    def describe(self) -> str:
        return f"select {self.option!r} {_where(self.point, self.element)}"


class UploadFile(TargetedAction):
    """Give a file to a file-upload field or button. Only files in the folders the user
    allowed can be uploaded. Target the upload button or field with x and y, or element."""

    tool_name: ClassVar[str] = "upload_file"
    target_required: ClassVar[bool] = True
    path: NonEmpty = Field(
        description="The file: its name inside an allowed folder, or its full path there."
    )
    x: Coord | None = _x("the upload button or field")
    y: Coord | None = _y("the upload button or field")
    element: NonEmpty | None = _element("The upload button or field")

    def describe(self) -> str:
        return f"upload {self.path!r} {_where(self.point, self.element)}"


class TypeText(TargetedAction):
    """Type text. Without a target it goes to the focused field; with x and y, or element,
    that spot is clicked first."""

    tool_name: ClassVar[str] = "type_text"
    text: str = Field(min_length=1, description="The exact text to type.")
    x: Coord | None = _x("the field to click before typing (optional)")
    y: Coord | None = _y("the field to click before typing (optional)")
    element: NonEmpty | None = _element("The field to click before typing (optional)")
    submit: bool = Field(False, description="Press Enter after typing, e.g. to run a search.")

    def describe(self) -> str:
        where = _where(self.point, self.element)
        enter = " and press Enter" if self.submit else ""
        return f"type {self.text!r}{' ' + where if where else ''}{enter}"


class PressKey(Action):
    """Press a key or a key combination."""

    tool_name: ClassVar[str] = "press_key"
    keys: Annotated[NonEmpty, BeforeValidator(_join_keys)] = Field(
        description="Key or combination joined with '+', e.g. 'Enter', 'Tab', 'Escape', "
        "'ctrl+a', 'shift+Tab'."
    )

    def describe(self) -> str:
        return f"press {self.keys}"


class Scroll(TargetedAction):
    """Scroll the page or the element under a point (the screen centre when no target)."""

    tool_name: ClassVar[str] = "scroll"
    direction: Annotated[Literal["up", "down", "left", "right"], BeforeValidator(_lower)] = Field(
        description="up, down, left or right: 'down' shows what is further down."
    )
    amount: Annotated[int, BeforeValidator(_round_number)] = Field(
        3,
        ge=1,
        le=50,
        description="How far, in mouse-wheel notches (1..50); 3 is about a third of a page.",
    )
    x: Coord | None = _x("the point to scroll at (optional)")
    y: Coord | None = _y("the point to scroll at (optional)")
    element: NonEmpty | None = _element("The element to scroll (optional)")

    def describe(self) -> str:
        where = _where(self.point, self.element)
        return f"scroll {self.direction} {self.amount}{' ' + where if where else ''}"


class Drag(Action):
    """Press at a start point, move to an end point and release. Give each end as a point
    (x and y) or as an element description."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=lambda schema, cls: target_alternatives(
            schema,
            [("from_x", "from_y", "from_element", True), ("to_x", "to_y", "to_element", True)],
        ),
    )
    tool_name: ClassVar[str] = "drag"
    from_x: Coord | None = _x("the start point")
    from_y: Coord | None = _y("the start point")
    to_x: Coord | None = _x("the end point")
    to_y: Coord | None = _y("the end point")
    from_element: NonEmpty | None = _element("What to drag", "from_x and from_y")
    to_element: NonEmpty | None = _element("Where to drop it", "to_x and to_y")

    @model_validator(mode="after")
    def _check_ends(self) -> Drag:
        for end, element in (("from", self.from_element), ("to", self.to_element)):
            if _check_point(self, f"{end}_x", f"{end}_y") is None and element is None:
                label = "start" if end == "from" else "end"
                raise ValueError(
                    f"drag needs its {label}: give {end}_x and {end}_y ({_COORDS} width and "
                    f"height) or {end}_element (a short description)"
                )
        return self

    @property
    def from_point(self) -> tuple[int, int] | None:
        """Start point in 0..1000 when given."""
        return None if self.from_x is None or self.from_y is None else (self.from_x, self.from_y)

    @property
    def to_point(self) -> tuple[int, int] | None:
        """End point in 0..1000 when given."""
        return None if self.to_x is None or self.to_y is None else (self.to_x, self.to_y)

    def describe(self) -> str:
        start = _target(self.from_point, self.from_element)
        return f"drag from {start} to {_target(self.to_point, self.to_element)}"


class Navigate(Action):
    """Open a URL in the browser."""

    tool_name: ClassVar[str] = "navigate"
    url: Annotated[
        str,
        AfterValidator(_strip_non_blank),
        WithJsonSchema({"type": "string", "minLength": 1, "pattern": URL_PATTERN}),
    ] = Field(
        description="Full URL to open, e.g. 'https://example.com/search?q=x' (percent-encode "
        "spaces and other non-ASCII characters)."
    )

    @field_validator("url")
    @classmethod
    def _add_scheme(cls, url: str) -> str:
        """'example.com' -> 'https://example.com', 'localhost:3000' -> 'http://...'.

        Whatever URL_PATTERN admits validates (a bad port is the browser's to report); only
        URLs a constrained model cannot write are refused here (spaces, unbalanced brackets).
        """
        if any(c.isspace() for c in url):
            raise ValueError("a URL cannot contain spaces; percent-encode them as %20")
        try:
            url = normalize_url(url)
            urlsplit(url)
        except ValueError as exc:
            example = "'https://example.com/x'"
            raise ValueError(f"not a valid URL ({exc}); write e.g. {example}") from None
        return url

    def describe(self) -> str:
        return f"open {self.url}"


class GoBack(Action):
    """Go back to the previous page in the browser history."""

    tool_name: ClassVar[str] = "go_back"

    def describe(self) -> str:
        return "go back"


class Wait(Action):
    """Wait for the screen to change, e.g. while a page loads."""

    tool_name: ClassVar[str] = "wait"
    seconds: float = Field(1.0, ge=0, le=10, description="How long to wait, 0..10 seconds.")

    def describe(self) -> str:
        return f"wait {self.seconds:g}s"


class Done(Action):
    """Finish the task and report the result. Call this once the task is complete, or when it
    cannot be completed."""

    tool_name: ClassVar[str] = "done"
    answer: str = Field(
        description="The answer or result for the user, or why the task could not be done."
    )
    success: bool = Field(True, description="false if the task could not be completed.")

    def describe(self) -> str:
        status = "success" if self.success else "failure"
        return f"done ({status}): {self.answer}"


def _json_schema_checker(schema: Mapping[str, Any]) -> Any:
    """A validator function for values of a JSON schema (jsonschema); checks the schema."""
    try:
        import jsonschema
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ConfigurationError(
            "a JSON-schema output needs jsonschema: pip install jsonschema"
        ) from exc
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ConfigurationError(
            f"the output schema is not a valid JSON schema: {exc.message}"
        ) from exc
    checker = cls(schema)

    def check(value: Any) -> Any:
        errors = sorted(checker.iter_errors(value), key=lambda e: list(e.absolute_path))
        if errors:
            where = lambda e: "/".join(map(str, e.absolute_path)) or "the output"  # noqa: E731
            raise ValueError("; ".join(f"{where(e)}: {e.message}" for e in errors[:5]))
        return value

    return check


def done_with_output(output_schema: type[BaseModel] | Mapping[str, Any]) -> type[Done]:
    """A `done` whose call carries the run's typed result in `output`.

    `output_schema` is a pydantic model (the output is an instance of it) or a JSON schema
    (the output is the JSON value, checked with jsonschema). With success=true the output is
    required; with success=false it is left out. The JSON schema says the same (an anyOf of
    the two cases), so a constrained decoder produces only calls that validate.
    """
    defs: dict[str, Any] = {}
    output_type: Any
    if isinstance(output_schema, type) and issubclass(output_schema, BaseModel):
        output_type = output_schema
    elif isinstance(output_schema, Mapping):
        raw = dict(output_schema)
        for key in ("$defs", "definitions"):
            if isinstance(raw.get(key), Mapping):
                defs[key] = dict(raw[key])
        body = {k: v for k, v in raw.items() if k not in ("$defs", "definitions", "$schema")}
        output_type = Annotated[
            Any, AfterValidator(_json_schema_checker(raw)), WithJsonSchema(body)
        ]
    else:
        raise ConfigurationError(
            "output_schema must be a pydantic model class or a JSON schema (a dict), got "
            f"{output_schema!r}"
        )

    def schema_extra(schema: dict[str, Any], cls: type) -> None:
        for key, value in defs.items():
            schema.setdefault(key, {}).update(value)
        props = schema["properties"]
        base = {k: undocumented(v) for k, v in props.items() if k not in ("output", "success")}
        schema["anyOf"] = [
            {
                "type": "object",
                "properties": {
                    **base,
                    "success": {"type": "boolean", "enum": [True]},
                    "output": non_null(props["output"]),
                },
                "required": ["output"],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "properties": {**base, "success": {"type": "boolean", "enum": [False]}},
                "required": ["success"],
                "additionalProperties": False,
            },
        ]

    def check_output(self: Done) -> Done:
        output = getattr(self, "output", None)
        if self.success and output is None:
            raise ValueError("done with success=true needs `output` (the result, as its schema)")
        if not self.success and output is not None:
            raise ValueError("done with success=false takes no `output`; say why in `answer`")
        return self

    model = create_model(
        "DoneWithOutput",
        __base__=Done,
        __doc__=(
            "Finish the task. On success give the result in `output`, in the schema given; "
            "when the task cannot be completed set success to false and say why in `answer`."
        ),
        __validators__={"_check_output": model_validator(mode="after")(check_output)},  # type: ignore[dict-item]
        answer=(
            str,
            Field("", description="A short note for the user, or why the task could not be done."),
        ),
        output=(output_type | None, Field(None, description="The task's result, in its schema.")),
    )
    model.model_config["json_schema_extra"] = schema_extra
    model.model_rebuild(force=True)
    return model


class AskUser(Action):
    """Ask the user a question and wait for the reply (missing information, a confirmation)."""

    tool_name: ClassVar[str] = "ask_user"
    question: NonEmpty = Field(description="The question for the user, in one or two sentences.")

    def describe(self) -> str:
        return f"ask the user: {self.question}"


ACTION_MODELS: dict[str, type[Action]] = {
    model.tool_name: model
    for model in (
        Click,
        TypeText,
        PressKey,
        Scroll,
        Drag,
        Navigate,
        GoBack,
        Wait,
        Done,
        AskUser,
        Hover,
        SelectOption,
        UploadFile,
    )
}
"""Tool name -> action model."""

BROWSER_ACTIONS: tuple[str, ...] = tuple(ACTION_MODELS)
DESKTOP_ACTIONS: tuple[str, ...] = tuple(
    name
    for name in ACTION_MODELS
    if name not in ("navigate", "go_back", "select_option", "upload_file")
)


# --- validation --------------------------------------------------------------------------


def _normalize_name(name: str) -> str:
    """'Type-Text' -> 'type_text'."""
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def _short_repr(value: Any, limit: int = 60) -> str:
    try:
        text = repr(value) if not isinstance(value, int) else safe_str(value)
    except Exception:  # a huge int inside a list, a broken __repr__
        text = safe_str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe_problem(model: type[Action], error: Mapping[str, Any]) -> str:
    """One pydantic error as a line for the model."""
    field = str(error["loc"][0]) if error["loc"] else ""
    message = str(error["msg"]).removeprefix("Value error, ")
    if not field:
        return message
    if error["type"] == "extra_forbidden":
        return f"`{field}` is not an argument of {model.tool_name}"
    info = model.model_fields.get(field)
    expected = f" Expected: {info.description}" if info and info.description else ""
    if error["type"] == "missing":
        return f"`{field}` is required but missing.{expected}"
    return f"`{field}`: {message} (got {_short_repr(error['input'])}).{expected}"


def _arguments_footer(model: type[Action]) -> str:
    names = ", ".join(model.model_fields) or "none"
    coords = any(name.endswith(("x", "y")) for name in model.model_fields)
    note = " Coordinates are 0..1000 of the latest screenshot." if coords else ""
    return f"Arguments of {model.tool_name}: {names}.{note}"


def _validation_error(model: type[Action], exc: ValidationError) -> ActionValidationError:
    """A pydantic error turned into the message the model reads."""
    problems = [_describe_problem(model, e) for e in exc.errors()]
    return ActionValidationError(model.tool_name, problems, _arguments_footer(model))


def _coerce_args(name: str, args: Any) -> dict[str, Any]:
    """Tool-call arguments as a dict: None -> {}, a JSON string is decoded."""
    if args is None:
        return {}
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError as exc:
            raise ActionValidationError(
                name, [f"the arguments are not valid JSON ({exc.msg}): {_short_repr(args)}"]
            ) from None
    if not isinstance(args, Mapping):
        raise ActionValidationError(
            name, [f"the arguments must be a JSON object, got {_short_repr(args)}"]
        )
    return dict(args)


def _resolve_model(
    name: str, allowed: Iterable[str] | None, models: Mapping[str, type[Action]]
) -> type[Action]:
    valid = list(models) if allowed is None else [_normalize_name(n) for n in allowed]
    key = _normalize_name(name) if isinstance(name, str) else ""
    if key not in valid or key not in models:
        reason = "is not available here" if key in models else "does not exist"
        raise ActionValidationError(
            str(name), [f"tool `{name}` {reason}"], f"Valid tools: {', '.join(valid)}."
        )
    return models[key]


def parse_action(
    name: str,
    args: Any,
    *,
    allowed: Iterable[str] | None = None,
    models: Mapping[str, type[Action]] | None = None,
) -> Action:
    """Validate one tool call into its action model.

    `allowed` limits the valid tool names (e.g. DESKTOP_ACTIONS); `models` replaces
    ACTION_MODELS (e.g. `done` with an output schema). Raises ActionValidationError with a
    message meant to be shown to the model.
    """
    model = _resolve_model(name, allowed, ACTION_MODELS if models is None else models)
    arguments = _coerce_args(model.tool_name, args)
    try:
        return model.model_validate(arguments)
    except ValidationError as exc:
        raise _validation_error(model, exc) from None


# --- LangChain tools ---------------------------------------------------------------------


def _check_names(names: Iterable[str], models: Mapping[str, type[Action]]) -> list[str]:
    names = list(names)
    unknown = [n for n in names if n not in models]
    if unknown:
        raise ConfigurationError(
            f"unknown action names {unknown}; valid names: {', '.join(models)}"
        )
    return names


class ActionTool(StructuredTool):
    """A StructuredTool whose tool-call schema is the action model itself.

    StructuredTool would describe a copy of the model's fields, losing the model-level schema
    (the "point or element" alternatives, additionalProperties: false) that constrained
    decoding needs to produce only calls that validate.
    """

    @property
    def tool_call_schema(self) -> Any:
        return self.args_schema


def _make_tool(name: str, models: Mapping[str, type[Action]]) -> StructuredTool:
    model = models[name]

    def request(**kwargs: Any) -> str:
        return f"requested: {parse_action(name, kwargs, models=models).describe()}"

    def on_invalid(error: ValidationError) -> str:
        return str(_validation_error(model, error))

    return ActionTool.from_function(
        func=request,
        name=name,
        description=" ".join((model.__doc__ or name).split()),
        args_schema=model,
        handle_validation_error=on_invalid,
    )


def action_tools(
    names: Iterable[str] = BROWSER_ACTIONS, *, models: Mapping[str, type[Action]] | None = None
) -> list[BaseTool]:
    """The actions as LangChain StructuredTools (args_schema = the action model; `models`
    replaces ACTION_MODELS, e.g. with `done_with_output(...)` as "done").

    The GUIAgent executes actions itself and never calls these functions. Called outside it,
    a tool only returns a line describing the requested action ("requested: click at (500,
    300)"); wrap or replace the function to act on a real screen.
    """
    models = ACTION_MODELS if models is None else models
    return [_make_tool(name, models) for name in _check_names(names, models)]


# --- reading a model reply ---------------------------------------------------------------

_ONE_CALL = "Reply with exactly one tool call, e.g. click with x and y (0..1000) or element."


@dataclass
class ModelReply:
    """A model reply as the agent sees it; `error` (for the model) when it has no usable call."""

    raw: str  # text and tool calls as the model wrote them, for the record
    text: str = ""  # the reply's plain text (reasoning), if any
    tool_name: str | None = None
    tool_args: dict[str, Any] | None = None
    action: Action | None = None
    error: str | None = None
    extra_calls: int = 0  # tool calls beyond the first, which are ignored


def _dump(value: Any) -> str:
    return dumps(value)


def _raw(text: str, calls: list[dict], invalid: list[dict]) -> str:
    parts = [text] if text else []
    parts += [f"tool call: {c.get('name')} {_dump(c.get('args'))}" for c in calls]
    parts += [
        f"invalid tool call: {safe_str(c.get('name'))} {safe_str(c.get('args'))} "
        f"({safe_str(c.get('error'))})"
        for c in invalid
    ]
    return "\n".join(parts)


def read_reply(
    message: Any, allowed: Iterable[str], models: Mapping[str, type[Action]] | None = None
) -> ModelReply:
    """The first tool call of `message` validated into an Action, or the reason it can't be.

    Never raises on the model's output: every problem becomes `ModelReply.error`, a message
    written to be shown to the model on its next try.
    """
    try:
        return _read(message, list(allowed), models)
    except Exception as exc:  # a reply shape nobody foresaw must not end the run
        return ModelReply(
            raw=truncate(safe_str(message), 2000),
            error=f"Your reply could not be read ({type(exc).__name__}: {safe_str(exc)}). "
            f"{_ONE_CALL}",
        )


def _read(
    message: Any, allowed: list[str], models: Mapping[str, type[Action]] | None = None
) -> ModelReply:
    text = reply_text(message).strip()
    is_ai = isinstance(message, AIMessage)
    calls = list(getattr(message, "tool_calls", None) or []) if is_ai else []
    invalid = list(getattr(message, "invalid_tool_calls", None) or []) if is_ai else []
    reply = ModelReply(raw=_raw(text, calls, invalid), text=text)
    if calls:
        first = calls[0]
        reply.tool_name = str(first.get("name") or "")
        args = first.get("args")
        reply.tool_args = dict(args) if isinstance(args, dict) else {"_raw": args}
        reply.extra_calls = len(calls) - 1
        try:
            reply.action = parse_action(reply.tool_name, args, allowed=allowed, models=models)
        except ActionValidationError as exc:
            reply.error = str(exc)
        return reply
    if invalid:
        bad = invalid[0]
        reply.tool_name = str(bad.get("name") or "") or None
        reply.tool_args = {"_raw": bad.get("args")}
        why = f" ({bad['error']})" if bad.get("error") else ""
        reply.error = (
            f"Your tool call could not be parsed{why}: name={bad.get('name')!r}, "
            f"arguments={truncate(str(bad.get('args')), 300)!r}. The arguments must be one "
            f"JSON object. {_ONE_CALL}"
        )
        return reply
    if text:
        reply.error = (
            f"Your reply was text without a tool call: {truncate(text, 300)!r}. Do not "
            f"describe the action, call the tool. {_ONE_CALL}"
        )
    else:
        reply.error = f"Your reply was empty. {_ONE_CALL}"
    return reply


# --- execution ---------------------------------------------------------------------------

POINTER_ACTIONS = (Click, Scroll, Drag, Hover)
"""Actions whose successful outcome message only repeats the pixel point."""


def execute(
    computer: Computer,
    action: Action,
    *,
    point: Point | None = None,
    end: Point | None = None,
    text: str | None = None,
    check_focus: Callable[[str | None], str | None] | None = None,
    secret: bool = False,
) -> ActionOutcome:
    """Run `action` on `computer`: `point` is its target (drag: start) and `end` the drag end,
    in screenshot pixels; `text` is type_text's text with secrets substituted.

    `check_focus` (type_text): called with `computer.focused_url()` after the click on the
    field, right before typing; a reason it returns means nothing is typed (a click can take
    the page, and the keys, to another site). `secret`: `text` holds a secret value, so the
    computer's own message about the typing (which may echo a cut-off copy of the text) is
    never passed on.

    `done` and `ask_user` are not computer actions (the agent handles them). Exceptions from
    the computer propagate; the GUIAgent turns them into failed outcomes.
    """
    if isinstance(action, Click):
        if point is None:
            return _no_point(action)
        if action.modifiers:  # only then: a Computer written before modifiers still clicks
            held = tuple(dict.fromkeys(action.modifiers))
            return computer.click(
                *point, button=action.button, clicks=action.clicks, modifiers=held
            )
        return computer.click(*point, button=action.button, clicks=action.clicks)
    if isinstance(action, Hover):
        if point is None:
            return _no_point(action)
        return computer.hover(*point)
    if isinstance(action, SelectOption):
        if point is None:
            return _no_point(action)
        return computer.select_option(*point, action.option)
    if isinstance(action, UploadFile):
        if point is None:
            return _no_point(action)
        return computer.upload_file(*point, action.path)
    if isinstance(action, TypeText):
        return _type(
            computer, action, point, action.text if text is None else text, check_focus, secret
        )
    if isinstance(action, PressKey):
        return computer.press_key(action.keys)
    if isinstance(action, Scroll):
        x, y = point if point is not None else (None, None)
        return computer.scroll(action.direction, action.amount, x, y)
    if isinstance(action, Drag):
        if point is None or end is None:
            return _no_point(action)
        return computer.drag(*point, *end)
    if isinstance(action, Navigate):
        return computer.navigate(action.url)
    if isinstance(action, GoBack):
        return computer.go_back()
    if isinstance(action, Wait):
        return computer.wait(action.seconds)
    return ActionOutcome(False, f"{action.tool_name} cannot be executed on the computer")


def _no_point(action: Action) -> ActionOutcome:
    """The outcome of a targeted action run without its point (its element not located)."""
    return ActionOutcome(
        False,
        f"{action.tool_name} needs a target point: its element was not located; nothing was done",
    )


def _type(
    computer: Computer,
    action: TypeText,
    point: Point | None,
    text: str,
    check_focus: Callable[[str | None], str | None] | None,
    secret: bool = False,
) -> ActionOutcome:
    """Click the field (when targeted), check where the keys go, type, press Enter (when
    submit)."""
    messages: list[str] = []
    if point is not None:
        clicked = computer.click(*point)
        if not clicked.ok:
            message = f"clicking the field failed: {clicked.message}"
            return ActionOutcome(False, message, clicked.url, abort=clicked.abort)
        messages.append("clicked the field")
    if check_focus is not None:
        refusal = check_focus(computer.focused_url())
        if refusal is not None:
            messages.append(f"nothing was typed: {refusal}")
            return ActionOutcome(False, "; ".join(messages), computer.current_url())
    typed = computer.type_text(text)
    if secret:  # nothing derived from the value: not even the computer's error
        messages.append(
            "typed the text with the secrets filled in"
            if typed.ok
            else "typing failed (the computer's message is withheld: it could repeat the text)"
        )
    else:
        messages.append(typed.message)
    if not typed.ok:
        return ActionOutcome(False, "; ".join(messages), typed.url, abort=typed.abort)
    if action.submit:
        pressed = computer.press_key("Enter")
        messages.append(pressed.message)
        return ActionOutcome(pressed.ok, "; ".join(messages), pressed.url, abort=pressed.abort)
    return ActionOutcome(True, "; ".join(messages), typed.url)

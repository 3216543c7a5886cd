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

from annotated_types import Interval
from langchain_core.messages import AIMessage
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from internvl_agent.computers.base import ActionOutcome, Computer
from internvl_agent.coordinates import Point
from internvl_agent.errors import ConfigurationError, InternVLAgentError
from internvl_agent.grounding import reply_text
from internvl_agent.records import dumps, safe_str, truncate
from internvl_agent.urls import normalize_url, parse_web_url

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
    "ModelReply",
    "Navigate",
    "PressKey",
    "Scroll",
    "TargetedAction",
    "TypeText",
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


def _join_keys(value: Any) -> Any:
    """Accept ["ctrl", "a"] for "ctrl+a"."""
    if isinstance(value, (list, tuple)) and all(isinstance(k, str) for k in value):
        return "+".join(k.strip() for k in value)
    return value


# Constraints before the BeforeValidator: it runs first, and the JSON schema keeps
# minimum/maximum (pydantic writes raw "ge"/"le" when a validator precedes them).
Coord = Annotated[int, Interval(ge=0, le=1000), BeforeValidator(_round_number)]
NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]

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

    def describe(self) -> str:
        kind = {1: "click", 2: "double-click", 3: "triple-click"}[self.clicks]
        button = "" if self.button == "left" else f"{self.button} "
        return f"{button}{kind} {_where(self.point, self.element)}"


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
    url: NonEmpty = Field(description="Full URL to open, e.g. 'https://example.com/search?q=x'.")

    @field_validator("url")
    @classmethod
    def _add_scheme(cls, url: str) -> str:
        """'example.com' -> 'https://example.com', 'localhost:3000' -> 'http://...'."""
        if any(c.isspace() for c in url):
            raise ValueError("a URL cannot contain spaces; percent-encode them as %20")
        url = normalize_url(url)
        if parse_web_url(url) is None:  # as the browser reads it
            raise ValueError("not a valid URL; write e.g. 'https://example.com/x'")
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


class AskUser(Action):
    """Ask the user a question and wait for the reply (missing information, a confirmation)."""

    tool_name: ClassVar[str] = "ask_user"
    question: NonEmpty = Field(description="The question for the user, in one or two sentences.")

    def describe(self) -> str:
        return f"ask the user: {self.question}"


ACTION_MODELS: dict[str, type[Action]] = {
    model.tool_name: model
    for model in (Click, TypeText, PressKey, Scroll, Drag, Navigate, GoBack, Wait, Done, AskUser)
}
"""Tool name -> action model."""

BROWSER_ACTIONS: tuple[str, ...] = tuple(ACTION_MODELS)
DESKTOP_ACTIONS: tuple[str, ...] = tuple(
    name for name in ACTION_MODELS if name not in ("navigate", "go_back")
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


def _resolve_model(name: str, allowed: Iterable[str] | None) -> type[Action]:
    valid = list(ACTION_MODELS) if allowed is None else [_normalize_name(n) for n in allowed]
    key = _normalize_name(name) if isinstance(name, str) else ""
    if key not in valid or key not in ACTION_MODELS:
        reason = "is not available here" if key in ACTION_MODELS else "does not exist"
        raise ActionValidationError(
            str(name), [f"tool `{name}` {reason}"], f"Valid tools: {', '.join(valid)}."
        )
    return ACTION_MODELS[key]


def parse_action(name: str, args: Any, *, allowed: Iterable[str] | None = None) -> Action:
    """Validate one tool call into its action model.

    `allowed` limits the valid tool names (e.g. DESKTOP_ACTIONS). Raises ActionValidationError
    with a message meant to be shown to the model.
    """
    model = _resolve_model(name, allowed)
    arguments = _coerce_args(model.tool_name, args)
    try:
        return model.model_validate(arguments)
    except ValidationError as exc:
        raise _validation_error(model, exc) from None


# --- LangChain tools ---------------------------------------------------------------------


def _check_names(names: Iterable[str]) -> list[str]:
    names = list(names)
    unknown = [n for n in names if n not in ACTION_MODELS]
    if unknown:
        raise ConfigurationError(
            f"unknown action names {unknown}; valid names: {', '.join(ACTION_MODELS)}"
        )
    return names


def _make_tool(name: str) -> StructuredTool:
    model = ACTION_MODELS[name]

    def request(**kwargs: Any) -> str:
        return f"requested: {parse_action(name, kwargs).describe()}"

    def on_invalid(error: ValidationError) -> str:
        return str(_validation_error(model, error))

    return StructuredTool.from_function(
        func=request,
        name=name,
        description=" ".join((model.__doc__ or name).split()),
        args_schema=model,
        handle_validation_error=on_invalid,
    )


def action_tools(names: Iterable[str] = BROWSER_ACTIONS) -> list[BaseTool]:
    """The actions as LangChain StructuredTools (args_schema = the action model).

    The GUIAgent executes actions itself and never calls these functions. Called outside it,
    a tool only returns a line describing the requested action ("requested: click at (500,
    300)"); wrap or replace the function to act on a real screen.
    """
    return [_make_tool(name) for name in _check_names(names)]


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


def read_reply(message: Any, allowed: Iterable[str]) -> ModelReply:
    """The first tool call of `message` validated into an Action, or the reason it can't be.

    Never raises on the model's output: every problem becomes `ModelReply.error`, a message
    written to be shown to the model on its next try.
    """
    try:
        return _read(message, list(allowed))
    except Exception as exc:  # a reply shape nobody foresaw must not end the run
        return ModelReply(
            raw=truncate(safe_str(message), 2000),
            error=f"Your reply could not be read ({type(exc).__name__}: {safe_str(exc)}). "
            f"{_ONE_CALL}",
        )


def _read(message: Any, allowed: list[str]) -> ModelReply:
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
            reply.action = parse_action(reply.tool_name, args, allowed=allowed)
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

POINTER_ACTIONS = (Click, Scroll, Drag)
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
        assert point is not None
        return computer.click(*point, button=action.button, clicks=action.clicks)
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
        assert point is not None and end is not None
        return computer.drag(*point, *end)
    if isinstance(action, Navigate):
        return computer.navigate(action.url)
    if isinstance(action, GoBack):
        return computer.go_back()
    if isinstance(action, Wait):
        return computer.wait(action.seconds)
    return ActionOutcome(False, f"{action.tool_name} cannot be executed on the computer")


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

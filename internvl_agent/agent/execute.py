"""Running one validated action on a Computer, with its targets already in screenshot pixels.

`done` and `ask_user` are handled by the agent loop, not here. Exceptions from the computer
become failed outcomes so a broken page never ends the run by itself.
"""

from __future__ import annotations

import logging

from internvl_agent.actions import (
    Action,
    Click,
    Drag,
    GoBack,
    Navigate,
    PressKey,
    Scroll,
    TypeText,
    Wait,
)
from internvl_agent.computers.base import ActionOutcome, Computer

__all__ = ["POINTER_ACTIONS", "execute"]

logger = logging.getLogger("internvl_agent.agent")

Point = tuple[int, int]

POINTER_ACTIONS = (Click, Scroll, Drag)
"""Actions whose successful outcome message only repeats the pixel point."""


def execute(
    computer: Computer,
    action: Action,
    *,
    point: Point | None = None,
    end: Point | None = None,
    text: str | None = None,
) -> ActionOutcome:
    """Run `action`: `point` is its target (drag: start) and `end` the drag end, in pixels;
    `text` is type_text's text with secrets substituted."""
    try:
        return _run(computer, action, point, end, text)
    except Exception as exc:
        logger.warning("%s raised %s", action.tool_name, type(exc).__name__)
        return ActionOutcome(False, f"{action.tool_name} raised {type(exc).__name__}: {exc}")


def _run(
    computer: Computer,
    action: Action,
    point: Point | None,
    end: Point | None,
    text: str | None,
) -> ActionOutcome:
    if isinstance(action, Click):
        assert point is not None
        return computer.click(*point, button=action.button, clicks=action.clicks)
    if isinstance(action, TypeText):
        return _type(computer, action, point, action.text if text is None else text)
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


def _type(computer: Computer, action: TypeText, point: Point | None, text: str) -> ActionOutcome:
    """Click the field (when targeted), type, press Enter (when submit)."""
    messages: list[str] = []
    if point is not None:
        clicked = computer.click(*point)
        if not clicked.ok:
            message = f"clicking the field failed: {clicked.message}"
            return ActionOutcome(False, message, clicked.url, abort=clicked.abort)
        messages.append("clicked the field")
    typed = computer.type_text(text)
    messages.append(typed.message)
    if not typed.ok:
        return ActionOutcome(False, "; ".join(messages), typed.url, abort=typed.abort)
    if action.submit:
        pressed = computer.press_key("Enter")
        messages.append(pressed.message)
        return ActionOutcome(pressed.ok, "; ".join(messages), pressed.url, abort=pressed.abort)
    return ActionOutcome(True, "; ".join(messages), typed.url)

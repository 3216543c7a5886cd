"""Where an action points, in screenshot pixels.

A 0..1000 point becomes a pixel of the screenshot the model saw (grounding.norm_to_pixels);
an `element` description is grounded by the grounder model on that same screenshot, in
InternVL's format, and its box centre is used.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from internvl_agent.actions import Action, Drag, TargetedAction
from internvl_agent.agent.effects import ModelCall
from internvl_agent.computers.base import ActionOutcome, Screenshot
from internvl_agent.grounding import NORM_MAX, grounding_message, norm_to_pixels, result_from_text
from internvl_agent.records import GroundingRecord, PhaseTimer

if TYPE_CHECKING:
    from internvl_agent.agent.loop import GUIAgent

__all__ = ["GroundingCallFailed", "Targets", "resolve_targets", "target_specs"]

Point = tuple[int, int]
Box = tuple[int, int, int, int]
Steps = Generator[Any, Any, Any]


class GroundingCallFailed(Exception):
    """The grounding model call raised (network, server): the run cannot go on."""


@dataclass
class Targets:
    """An action's targets in pixels, or `failure` telling the model why there are none."""

    point: Point | None = None  # click / type / scroll target, drag start
    end: Point | None = None  # drag end
    box: Box | None = None  # the first grounded box, for the marked screenshot
    grounding: GroundingRecord | None = None  # the first grounding, for the record
    notes: list[str] = field(default_factory=list)  # "found 'X' at (x, y)"
    failure: ActionOutcome | None = None


def target_specs(action: Action) -> list[tuple[str, Point | None, str | None]]:
    """(which: "point" or "end", 0..1000 point or None, element or None) per target."""
    if isinstance(action, Drag):
        return [
            ("point", action.from_point, action.from_element),
            ("end", action.to_point, action.to_element),
        ]
    if isinstance(action, TargetedAction) and (action.point or action.element):
        return [("point", action.point, action.element)]
    return []


def to_pixels(point: Point, size: tuple[int, int]) -> Point | ActionOutcome:
    """A 0..1000 point as a screenshot pixel, or a failed outcome when it is off the image."""
    x, y = point
    if not (0 <= x <= NORM_MAX and 0 <= y <= NORM_MAX):
        return ActionOutcome(
            False, f"({x}, {y}) is outside 0..1000; coordinates are 0..1000 of the screenshot"
        )
    px, py = norm_to_pixels(x, y, size)
    if not (0 <= px < size[0] and 0 <= py < size[1]):
        return ActionOutcome(False, f"({x}, {y}) falls outside the screenshot; nothing was done")
    return px, py


def _text_of(response: Any) -> str:
    try:
        text = getattr(response, "text", response)
        return text if isinstance(text, str) else str(text)
    except Exception:
        return str(response)


def resolve_targets(
    agent: GUIAgent, action: Action, shot: Screenshot, data_url: str, timer: PhaseTimer
) -> Steps:
    """Targets of `action` on `shot` (`data_url` is the same image, already encoded).

    Raises GroundingCallFailed when the grounding model call raises.
    """
    targets = Targets()
    for which, norm, element in target_specs(action):
        if norm is not None:
            resolved = to_pixels(norm, shot.size)
            if isinstance(resolved, ActionOutcome):
                targets.failure = resolved
                return targets
        else:
            assert element is not None
            with timer.phase("grounding"):
                message = grounding_message(data_url, element, agent.grounding_prompt)
            with timer.phase("grounding_model"):
                try:
                    response = yield ModelCall(agent.grounder, [message], agent.grounding_kwargs)
                except Exception as exc:
                    raise GroundingCallFailed(
                        f"the grounding model call failed: {type(exc).__name__}: {exc}"
                    ) from exc
            with timer.phase("grounding"):
                result = result_from_text(element, _text_of(response), shot.size)
            if targets.grounding is None:
                targets.grounding = GroundingRecord(
                    description=element,
                    raw=result.raw_text,
                    box_norm=result.box_norm,
                    point_px=result.point,
                )
                targets.box = result.box
            if result.point is None:
                targets.failure = ActionOutcome(
                    False,
                    f"could not locate {element!r} on the screenshot ({result.error}). "
                    "Describe it differently or give x and y.",
                )
                return targets
            resolved = result.point
            targets.notes.append(f"found {element!r} at {result.point_norm}")
        if which == "end":
            targets.end = resolved
        else:
            targets.point = resolved
    return targets

"""Human in the loop: confirming risky actions and answering the model's questions.

Both are generator steps (see effects.py) that yield one HumanCall; a missing callback, one
that raises or one that times out never ends the run: the model is told and carries on.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from internvl_agent.agent.effects import HumanCall, HumanReply
from internvl_agent.computers.base import ActionOutcome

__all__ = ["approved", "ask", "confirm"]

Steps = Generator[Any, Any, Any]
_YES = ("y", "yes", "true", "ok", "approve", "approved")


def approved(value: Any) -> bool:
    """True, or a yes-like string, approves; anything else refuses."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() in _YES
    return False


def confirm(
    callback: Callable[[str], Any] | None, description: str, timeout: float | None
) -> Steps:
    """None when the user approves `description`, else the reason it is refused."""
    if callback is None:
        return "nobody can confirm it in this run"
    reply: HumanReply = yield HumanCall(callback, description, timeout)
    if reply.error is not None:
        return f"the confirmation failed ({reply.error})"
    return None if approved(reply.value) else "the user declined"


def ask(callback: Callable[[str], Any] | None, question: str, timeout: float | None) -> Steps:
    """The outcome of the ask_user action: the user's answer, or why there is none."""
    if callback is None:
        return ActionOutcome(
            False,
            "nobody is available to answer questions in this run. Continue on your own, "
            "or call done with success=false if the task cannot be done without an answer.",
        )
    reply: HumanReply = yield HumanCall(callback, question, timeout)
    if reply.error:
        return ActionOutcome(
            False, f"the user could not be asked ({reply.error}). Continue on your own."
        )
    answer = "" if reply.value is None else str(reply.value).strip()
    if not answer:
        return ActionOutcome(False, "the user gave no answer. Continue on your own.")
    return ActionOutcome(True, f"the user answered: {answer}")

"""The agent graph's state and its human-in-the-loop protocol, as plain data.

Everything here is JSON data (the LangChain messages aside), so any LangGraph checkpointer
can store a run and another process can resume it: the history, the last K screenshots by
file path (in the run folder), the step in progress with its record, never a live object.
Text is redacted (secret values replaced by their placeholders) before it enters the state.

A risky action interrupts the graph with an `ApprovalRequest`; `ask_user` with a
`QuestionRequest` (see docs/langgraph.md). `read_approval` and `read_answer` read what the
caller resumed with (``Command(resume=...)``); a value they cannot read makes the node ask
again with an ``error`` in the payload, so a bad resume never crashes a run.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from typing_extensions import NotRequired, TypedDict

from internvl_agent.agent.effects import HumanReply

__all__ = [
    "DECISIONS",
    "AgentInput",
    "AgentState",
    "Approval",
    "ApprovalRequest",
    "QuestionRequest",
    "read_answer",
    "read_approval",
]

DECISIONS = ("approve", "reject", "edit")
Decision = Literal["approve", "reject", "edit"]


class AgentInput(TypedDict, total=False):
    """What a run starts from: the task (or the last human message), the start page."""

    task: str
    start_url: str | None
    messages: Annotated[list[AnyMessage], add_messages]


class AgentState(AgentInput, total=False):
    """The whole state of a run (see docs/langgraph.md for each key)."""

    # the run
    run_dir: str  # the run folder (records.py layout); screenshots are files in it
    history: Annotated[list[dict[str, Any]], operator.add]  # HistoryEntry fields, oldest first
    frames: list[dict[str, Any]]  # the last K screenshots: step, path, url, title
    visits: dict[str, Any]  # the guard's memory: seen_hosts, last_allowed_url
    steps: int  # steps finished
    reminder: str | None  # told to the model at the next step only
    invalid_streak: int
    fail_signature: str | None
    fail_count: int
    output: Any  # done's output with an output_schema (JSON, redacted)
    # the step in progress
    record: dict[str, Any] | None  # its StepRecord so far (the finished one after "record")
    action: dict[str, Any] | None  # the validated action to run: name, args
    extra_calls: int  # tool calls of the reply beyond the first (not run)
    targets: dict[str, Any] | None  # screenshot pixels: point, end, box; notes
    timings: dict[str, float]  # phase seconds of the step so far
    outcome: dict[str, Any] | None  # ok, message, url, abort: what the model is told
    approved: str | None  # the action a person approved (its signature)
    # the end
    ending: dict[str, Any] | None  # status, answer, error: decided, not yet finished
    result: dict[str, Any] | None  # status, answer, error, steps, record_path, output: finished


class ActionRequest(TypedDict):
    """langchain.agents' HumanInTheLoopMiddleware shape of one action to review."""

    name: str
    args: dict[str, Any]
    description: str


class ReviewConfig(TypedDict):
    """langchain.agents' HumanInTheLoopMiddleware shape of the allowed decisions."""

    action_name: str
    allowed_decisions: list[str]


class ApprovalRequest(TypedDict):
    """The interrupt payload of an action that needs a person's approval."""

    type: Literal["approve_action"]
    step: int
    action: dict[str, Any]  # name, args: as validated (0..1000 points, element descriptions)
    description: str  # "press ctrl+w": what GUIAgent's confirm callback is given
    reason: str  # why it needs approval
    url: str | None  # the page it would run on
    target: dict[str, Any]  # screenshot pixels: point, end, box (None when there is none)
    screenshot: str | None  # the screenshot with the target marked: a file path or data URL
    screenshot_size: list[int] | None
    decisions: list[str]
    args_schema: dict[str, Any]  # the tool's JSON schema, for an edit form
    error: str | None  # why the previous resume value was not used
    action_requests: list[ActionRequest]
    review_configs: list[ReviewConfig]


class QuestionRequest(TypedDict):
    """The interrupt payload of the ask_user action."""

    type: Literal["ask_user"]
    step: int
    question: str
    error: NotRequired[str | None]


@dataclass(frozen=True)
class Approval:
    """A person's answer to an ApprovalRequest."""

    decision: Decision
    args: dict[str, Any] | None = None  # edit: the new arguments
    name: str | None = None  # edit: another tool (langchain's edited_action.name)
    reason: str = "the user declined"  # reject: what the model is told after "and"


_FORMS = (
    "resume with {'decision': 'approve'}, {'decision': 'reject', 'message': '...'} or "
    "{'decision': 'edit', 'args': {...}} (or langchain's {'decisions': [{'type': ...}]})"
)


def read_approval(value: Any) -> Approval | str:
    """The Approval in a resume value, or an error saying which forms are understood.

    Forms: ``{"decision": "approve" | "reject" | "edit", "args": {...}, "message": "..."}``
    (``reason`` replaces the whole "the user declined" text, for runners reporting a failed
    callback), langchain.agents' ``{"decisions": [{"type": ..., "edited_action": {...},
    "message": ...}]}``, or True / False.
    """
    if isinstance(value, bool):
        return Approval("approve" if value else "reject")
    if isinstance(value, str) and value.strip().lower() in ("approve", "reject"):
        return Approval(value.strip().lower())  # type: ignore[arg-type]
    if not isinstance(value, Mapping):
        return f"cannot read the resume value {value!r}: {_FORMS}"
    if "decisions" in value:
        decisions = value["decisions"]
        if not isinstance(decisions, list) or len(decisions) != 1:
            return f"'decisions' must be a list of one decision (one action is reviewed); {_FORMS}"
        return _langchain_decision(decisions[0])
    decision = value.get("decision")
    if decision not in DECISIONS:
        return f"'decision' must be one of {', '.join(DECISIONS)}, got {decision!r}; {_FORMS}"
    if decision == "edit":
        args, name = value.get("args"), value.get("name")
        if not isinstance(args, Mapping):
            return "an 'edit' needs 'args': the tool's arguments as a dict"
        if name is not None and not isinstance(name, str):
            return f"'name' must be a tool name, got {name!r}"
        return Approval("edit", dict(args), name)
    if decision == "reject":
        return Approval("reject", reason=_reject_reason(value))
    return Approval("approve")


def _langchain_decision(item: Any) -> Approval | str:
    if not isinstance(item, Mapping) or item.get("type") not in DECISIONS:
        return f"each decision needs 'type': one of {', '.join(DECISIONS)}; {_FORMS}"
    kind = item["type"]
    if kind == "edit":
        edited = item.get("edited_action")
        if not isinstance(edited, Mapping) or not isinstance(edited.get("args"), Mapping):
            return "an 'edit' decision needs 'edited_action': {'name': ..., 'args': {...}}"
        name = edited.get("name")
        return Approval("edit", dict(edited["args"]), name if isinstance(name, str) else None)
    if kind == "reject":
        return Approval("reject", reason=_reject_reason(item))
    return Approval("approve")


def _reject_reason(value: Mapping[str, Any]) -> str:
    reason = value.get("reason")
    if isinstance(reason, str) and reason.strip():
        return reason.strip()
    message = value.get("message")
    if isinstance(message, str) and message.strip():
        return f"the user declined: {message.strip()}"
    return "the user declined"


def read_answer(value: Any) -> HumanReply | str:
    """The answer in an ask_user resume value: a string, ``{"answer": ...}``, None (no
    answer), ``{"error": "..."}`` (the person could not be asked), or an error message."""
    if value is None or isinstance(value, str):
        return HumanReply(value)
    if isinstance(value, Mapping):
        if isinstance(value.get("error"), str):
            return HumanReply(error=value["error"])
        if "answer" in value:
            answer = value["answer"]
            return HumanReply(None if answer is None else str(answer))
        if value.get("decision") == "reject":
            return HumanReply(None)
    return f"cannot read the answer {value!r}: resume with a string or {{'answer': '...'}}"

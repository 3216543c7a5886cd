"""Reading one model reply: the tool call in it, validated, or why there is none.

Nothing here raises on the model's output: every problem becomes `ModelReply.error`, a
message written to be shown to the model on its next try.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage

from internvl_agent.actions import Action, ActionValidationError, parse_action
from internvl_agent.records import truncate

__all__ = ["ModelReply", "read_reply"]

_ONE_CALL = "Reply with exactly one tool call, e.g. click with x and y (0..1000) or element."


@dataclass
class ModelReply:
    """A model reply as the agent sees it."""

    raw: str  # text and tool calls as the model wrote them, for the record
    text: str = ""  # the reply's plain text (reasoning), if any
    tool_name: str | None = None
    tool_args: dict[str, Any] | None = None
    action: Action | None = None
    error: str | None = None
    extra_calls: int = 0  # tool calls beyond the first, which are ignored


def _text_of(message: Any) -> str:
    if isinstance(message, BaseMessage):
        try:
            return str(message.text or "")
        except Exception:
            return str(message.content)
    return message if isinstance(message, str) else str(message)


def _dump(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


def _raw(text: str, calls: list[dict], invalid: list[dict]) -> str:
    parts = [text] if text else []
    parts += [f"tool call: {c.get('name')} {_dump(c.get('args'))}" for c in calls]
    parts += [
        f"invalid tool call: {c.get('name')} {c.get('args')!s} ({c.get('error')})" for c in invalid
    ]
    return "\n".join(parts)


def read_reply(message: Any, allowed: Iterable[str]) -> ModelReply:
    """The first tool call of `message` validated into an Action, or the reason it can't be."""
    try:
        return _read(message, list(allowed))
    except Exception as exc:  # a reply shape nobody foresaw must not end the run
        return ModelReply(
            raw=truncate(repr(message), 2000),
            error=f"Your reply could not be read ({type(exc).__name__}: {exc}). {_ONE_CALL}",
        )


def _read(message: Any, allowed: list[str]) -> ModelReply:
    text = _text_of(message).strip()
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

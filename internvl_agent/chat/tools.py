"""Qwen2.5's ("hermes") tool-calling text format: render tools and calls; parse calls.

InternVL's language model is Qwen2.5, which was trained to see the tools in the system prompt
inside ``<tools></tools>`` and to answer with::

    <tool_call>
    {"name": "click", "arguments": {"x": 10, "y": 20}}
    </tool_call>

Rendering follows the Qwen2.5 chat template byte for byte (``tojson`` there is
``json.dumps(..., ensure_ascii=False)``), given each tool's `tool_view`: the model reads a
summary of each schema (chat/schema_view.py); a forced call is decoded under the exact one.
Parsing is tolerant and never raises on model output:

- several ``<tool_call>`` blocks, with text before, between and after them (that text is the
  message content; stray ``</tool_call>`` tags are dropped from it);
- a block whose closing tag is missing (the output was cut off, or the model opened the next
  block first) is accepted only when its JSON is complete; a half-written call is reported as
  an invalid tool call, never executed with truncated arguments;
- ``"arguments"`` given as a JSON string, ``"parameters"`` instead of ``"arguments"``,
  missing arguments (``{}``), a ``{"function": {...}}`` wrapper, a ```` ```json ```` fence
  inside the block, several JSON objects in one block;
- when tools are bound (``tool_names`` given) and the WHOLE output is one bare JSON object
  ``{"name": ..., "arguments": ...}`` (optionally in a code fence) naming a bound tool, it is a
  tool call; with an unknown name it stays content (nothing marked it as a call);
- a tagged call naming an unknown tool, or that is not valid JSON, or lacks a name, or whose
  arguments are not an object, becomes an ``InvalidToolCall`` whose ``args`` is the raw block
  (tags included, so that LangChain's chunk merging keeps it invalid) and whose ``error`` says why.

Tool call ids are ``"call_"`` + 24 random hex digits.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import InvalidToolCall
from langchain_core.messages.tool import (
    ToolCall,
    ToolCallChunk,
    invalid_tool_call,
    tool_call,
    tool_call_chunk,
)

from internvl_agent.chat.schema_view import tool_view
from internvl_agent.errors import ConfigurationError

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
TOOL_RESPONSE_OPEN = "<tool_response>"
TOOL_RESPONSE_CLOSE = "</tool_response>"

# The Qwen2.5 chat template's tools block, split around the one-JSON-per-line tool list.
TOOLS_PROMPT_HEADER = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
TOOLS_PROMPT_FOOTER = (
    "\n</tools>\n\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
)

_FENCE = re.compile(r"^```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?\s*```$", re.DOTALL)


def _tojson(value: Any) -> str:
    """The Qwen2.5 template's ``tojson`` filter (transformers' override)."""
    return json.dumps(value, ensure_ascii=False)


def render_tools_system_prompt(tools: Sequence[dict]) -> str:
    """The Qwen2.5 tools block (from ``# Tools`` to the last ``</tool_call>``).

    `tools` are OpenAI tool dicts, each shown as its `tool_view`. Qwen2.5 appends this block
    to the system message after a blank line (`messages_to_turns` does).
    """
    lines = []
    for i, tool in enumerate(tools):
        try:
            lines.append("\n" + _tojson(tool_view(tool)))
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"tool #{i} is not JSON-serializable ({exc}); pass OpenAI tool dicts, e.g. from "
                "langchain_core.utils.function_calling.convert_to_openai_tool"
            ) from exc
    return TOOLS_PROMPT_HEADER + "".join(lines) + TOOLS_PROMPT_FOOTER


def format_tool_call(name: str, args: dict) -> str:
    """One assistant tool call as Qwen2.5 renders it."""
    return (
        f'{TOOL_CALL_OPEN}\n{{"name": {_tojson(name)}, "arguments": {_tojson(args)}}}'
        f"\n{TOOL_CALL_CLOSE}"
    )


def new_tool_call_id() -> str:
    """A fresh tool call id (``call_`` + 24 hex digits)."""
    return "call_" + uuid.uuid4().hex[:24]


@dataclass
class ParsedOutput:
    """A model output split into content and tool calls."""

    content: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    invalid_tool_calls: list[InvalidToolCall] = field(default_factory=list)


@dataclass(frozen=True)
class TextDelta:
    """Content text that is safe to show now."""

    text: str


@dataclass(frozen=True)
class ToolCallEvent:
    """A complete, valid tool call; `index` counts all calls (valid or not) of the output."""

    index: int
    tool_call: ToolCall


@dataclass(frozen=True)
class InvalidToolCallEvent:
    """A tool call block that could not be turned into a valid call."""

    index: int
    invalid_tool_call: InvalidToolCall


StreamEvent = TextDelta | ToolCallEvent | InvalidToolCallEvent


def to_tool_call_chunk(event: ToolCallEvent | InvalidToolCallEvent) -> ToolCallChunk:
    """The LangChain ``ToolCallChunk`` for a streamed call (args as a JSON string).

    Invalid calls keep their raw text as args; LangChain's chunk merging cannot parse it into
    a dict, so they stay invalid once the chunks are added up.
    """
    if isinstance(event, ToolCallEvent):
        tc = event.tool_call
        return tool_call_chunk(
            name=tc["name"], args=_tojson(tc["args"]), id=tc["id"], index=event.index
        )
    itc = event.invalid_tool_call
    return tool_call_chunk(name=itc["name"], args=itc["args"], id=itc["id"], index=event.index)


# --------------------------------------------------------------------------- parsing


def _strip_fence(text: str) -> str:
    match = _FENCE.match(text.strip())
    return match.group(1).strip() if match else text.strip()


def _json_values(body: str) -> list[Any] | None:
    """The JSON values in `body` (separated by whitespace, commas or stray closers), or None."""
    # strict=False: a raw tab or newline inside a string is what the model meant (JSON wants
    # it escaped, but grammars and models write it raw)
    decoder = json.JSONDecoder(strict=False)
    values: list[Any] = []
    pos = 0
    while pos < len(body):
        if body[pos] in " \t\r\n,}]":
            pos += 1
            continue
        try:
            value, pos = decoder.raw_decode(body, pos)
        except json.JSONDecodeError:
            return None
        values.append(value)
    return values or None


def _call_from_object(
    obj: Any, tool_names: Collection[str] | None
) -> tuple[str | None, dict | None, str | None]:
    """(name, args, error) for one decoded call object; error is None for a valid call."""
    if not isinstance(obj, dict):
        return None, None, "the tool call is not a JSON object"
    if isinstance(obj.get("function"), dict) and "name" not in obj:
        obj = obj["function"]
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        return None, None, 'the tool call has no "name" string'
    args: Any = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            return name, None, '"arguments" is a string that is not valid JSON'
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return name, None, '"arguments" must be a JSON object'
    if tool_names is not None and name not in tool_names:
        known = ", ".join(sorted(tool_names)) or "(none)"
        return name, args, f"unknown tool {name!r}; the known tools are: {known}"
    return name, args, None


class _Collector:
    """Turns raw blocks into numbered valid/invalid call events."""

    def __init__(self, tool_names: Collection[str] | None) -> None:
        self.tool_names = tool_names
        self.count = 0

    def block(self, raw: str, body: str, closed: bool) -> list[StreamEvent]:
        """Events for one ``<tool_call>`` block; `raw` is its full text, tags included."""
        values = _json_values(_strip_fence(body))
        if values is None:
            error = (
                "the tool call is not valid JSON"
                if closed
                else "the tool call was cut off before its JSON ended"
            )
            return [self._invalid(None, raw, error)]
        events: list[StreamEvent] = []
        for value in values:
            name, args, problem = _call_from_object(value, self.tool_names)
            if problem is None:
                assert name is not None and args is not None
                events.append(self._valid(name, args))
            else:
                events.append(self._invalid(name, raw, problem))
        return events

    def _valid(self, name: str, args: dict) -> ToolCallEvent:
        event = ToolCallEvent(self.count, tool_call(name=name, args=args, id=new_tool_call_id()))
        self.count += 1
        return event

    def _invalid(self, name: str | None, raw: str, error: str) -> InvalidToolCallEvent:
        itc = invalid_tool_call(name=name, args=raw, id=new_tool_call_id(), error=error)
        event = InvalidToolCallEvent(self.count, itc)
        self.count += 1
        return event

    def bare(self, text: str) -> ToolCallEvent | None:
        """A valid call when the whole `text` is one bare call object naming a bound tool."""
        if self.tool_names is None:
            return None
        values = _json_values(_strip_fence(text))
        if values is None or len(values) != 1 or not isinstance(values[0], dict):
            return None
        obj = values[0]
        if not ({"arguments", "parameters"} & obj.keys()):
            return None
        name, args, error = _call_from_object(obj, self.tool_names)
        if error is not None or name is None or args is None:
            return None
        return self._valid(name, args)


def _collect(events: list[StreamEvent], content: str) -> ParsedOutput:
    out = ParsedOutput(content=content)
    for event in events:
        if isinstance(event, ToolCallEvent):
            out.tool_calls.append(event.tool_call)
        elif isinstance(event, InvalidToolCallEvent):
            out.invalid_tool_calls.append(event.invalid_tool_call)
    return out


def parse_tool_calls(text: str, *, tool_names: Collection[str] | None = None) -> ParsedOutput:
    """Split a model output into content, tool calls and invalid tool calls. Never raises."""
    parser = ToolCallStreamParser(tool_names=tool_names)
    events = parser.feed(text) + parser.finish()
    content = "".join(e.text for e in events if isinstance(e, TextDelta))
    return _collect(events, content)


def _held_suffix(text: str, *tags: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of one of `tags`."""
    best = 0
    for tag in tags:
        for n in range(min(len(tag) - 1, len(text)), best, -1):
            if text.endswith(tag[:n]):
                best = n
                break
    return best


class ToolCallStreamParser:
    """Incremental `parse_tool_calls`: feed text deltas, get content deltas and finished calls.

    Text that could still be the start of ``<tool_call>`` (or of a stray ``</tool_call>``) is
    held back, and so is whitespace until non-blank text follows it, so the text deltas join to
    exactly the stripped content of `parse_tool_calls` on the whole output. A call is emitted
    when its block closes (a cut-off block at `finish`). With `tool_names` given, an output that
    starts like a bare JSON call is held until `finish` (or until a ``<tool_call>`` tag shows it
    is not one).
    """

    def __init__(self, *, tool_names: Collection[str] | None = None) -> None:
        self._calls = _Collector(tool_names)
        self._pending = ""  # text not yet classified
        self._block: str | None = None  # body of the open <tool_call> block, if any
        self._ws = ""  # whitespace waiting for non-blank content
        self._started = False  # some non-blank content was emitted
        self._bare = tool_names is not None  # still possibly one bare JSON call
        self._all = ""  # everything fed, for the bare-call check
        self._finished = False

    def feed(self, text_delta: str) -> list[StreamEvent]:
        """Consume a text delta; return the events it completes."""
        if self._finished or not text_delta:
            return []
        self._all += text_delta
        if self._bare:
            if TOOL_CALL_OPEN in self._all or TOOL_CALL_CLOSE in self._all:
                self._bare = False
                self._pending = self._all
            elif self._could_be_bare(self._all):
                return []
            else:
                self._bare = False
                self._pending = self._all
            return self._drain(final=False)
        if self._block is not None:
            self._block += text_delta
        else:
            self._pending += text_delta
        return self._drain(final=False)

    def finish(self) -> list[StreamEvent]:
        """End of output: flush held text and any cut-off block."""
        if self._finished:
            return []
        self._finished = True
        if self._bare:
            self._bare = False
            event = self._calls.bare(self._all)
            if event is not None:
                return [event]
            self._pending = self._all
        return self._drain(final=True)

    @staticmethod
    def _could_be_bare(text: str) -> bool:
        head = text.lstrip()
        return not head or head[0] == "{" or "```".startswith(head[:3])

    def _drain(self, *, final: bool) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        while True:
            if self._block is not None:
                if not self._drain_block(events, final=final):
                    return events
                continue
            start = self._pending.find(TOOL_CALL_OPEN)
            if start < 0:
                hold = 0 if final else _held_suffix(self._pending, TOOL_CALL_OPEN, TOOL_CALL_CLOSE)
                self._emit(events, self._pending[: len(self._pending) - hold])
                self._pending = self._pending[len(self._pending) - hold :]
                return events
            self._emit(events, self._pending[:start])
            self._block = self._pending[start + len(TOOL_CALL_OPEN) :]
            self._pending = ""

    def _drain_block(self, events: list[StreamEvent], *, final: bool) -> bool:
        """Close the open block if its end is known; True when it was closed."""
        assert self._block is not None
        body = self._block
        close, reopen = body.find(TOOL_CALL_CLOSE), body.find(TOOL_CALL_OPEN)
        if close >= 0 and (reopen < 0 or close < reopen):
            raw = TOOL_CALL_OPEN + body[: close + len(TOOL_CALL_CLOSE)]
            events += self._calls.block(raw, body[:close], closed=True)
            self._pending = body[close + len(TOOL_CALL_CLOSE) :]
        elif reopen >= 0:
            raw = TOOL_CALL_OPEN + body[:reopen]
            events += self._calls.block(raw.rstrip(), body[:reopen], closed=False)
            self._pending = body[reopen:]
        elif final:
            raw = (TOOL_CALL_OPEN + body).rstrip()
            events += self._calls.block(raw, body, closed=False)
            self._pending = ""
        else:
            return False
        self._block = None
        return True

    def _emit(self, events: list[StreamEvent], text: str) -> None:
        """Emit content `text` (stray close tags removed), holding surrounding whitespace."""
        text = text.replace(TOOL_CALL_CLOSE, "")
        if not text:
            return
        body = text.rstrip()
        if not body:
            self._ws += text
            return
        if not self._started:
            body = body.lstrip()
            self._started = True
        else:
            body = self._ws + body
        self._ws = text[len(text.rstrip()) :]
        events.append(TextDelta(body))

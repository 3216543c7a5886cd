"""LangChain messages → the engine's turns (Qwen2.5 conventions for tools).

- System messages merge into one leading system turn; tools are described there.
- Assistant tool calls are written back as `<tool_call>` blocks.
- Consecutive tool results share one user turn of `<tool_response>` blocks, as Qwen2.5 does.
- A video becomes its frames, `VideoFrame` parts numbered from 1 and tiled with
  `VideoOptions.max_tiles_per_frame` tiles each (`Frame1: <img>...</img>` in the prompt).
- Text that cannot be encoded (a lone surrogate such as "\\ud800") is refused with a
  MessageFormatError naming the message and the character position, never sent on to the
  tokenizer (which fails with a bare TypeError).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

from internvl_agent.chat.content import (
    ImageLoadOptions,
    ImagePart,
    TextPart,
    VideoPart,
    content_to_parts,
)
from internvl_agent.chat.tools import TOOL_RESPONSE_CLOSE, TOOL_RESPONSE_OPEN, format_tool_call
from internvl_agent.chat.video import VideoOptions
from internvl_agent.engine.images import TilingConfig
from internvl_agent.engine.prompt import (
    INTERNVL_SYSTEM_MESSAGE,
    Markup,
    Turn,
    TurnPart,
    VideoFrame,
)
from internvl_agent.errors import MessageFormatError

_CHAT_ROLES = {"user": "user", "human": "user", "assistant": "assistant", "ai": "assistant"}
_SURROGATE = re.compile("[\ud800-\udfff]")


def check_text(text: str, where: str) -> str:
    """`text`, or MessageFormatError when it holds a lone surrogate (not encodable)."""
    match = _SURROGATE.search(text)
    if match is None:
        return text
    raise MessageFormatError(
        f"{where}: the text has a lone surrogate {match.group(0)!r} at character "
        f"{match.start()}, which is not a character and cannot be encoded; fix the string "
        "(it usually comes from decoding bytes with errors='surrogateescape', or from half "
        "of a UTF-16 pair), e.g. text.encode('utf-16', 'surrogatepass').decode('utf-16', "
        "'replace')."
    )


def messages_to_turns(
    messages: Sequence[BaseMessage],
    *,
    system_message: str | None = None,
    tools_prompt: str | None = None,
    image_options: ImageLoadOptions | None = None,
    video_options: VideoOptions | None = None,
) -> list[Turn]:
    """Convert a LangChain conversation; the result always starts with a system turn."""
    options = _Options(image_options or ImageLoadOptions(), video_options or VideoOptions())
    system_texts: list[str] = []
    turns: list[Turn] = []
    tool_turn: Turn | None = None  # the user turn that collects consecutive tool results
    for index, message in enumerate(messages):
        where = f"message {index} ({message.type})"
        if isinstance(message, SystemMessage) or (
            isinstance(message, ChatMessage) and message.role == "system"
        ):
            system_texts.append(_text_only(message.content, where, options))
        elif isinstance(message, HumanMessage):
            turns.append(Turn("user", _parts(message.content, where, options)))
        elif isinstance(message, AIMessage):
            turns.append(Turn("assistant", _assistant_parts(message, where, options)))
        elif isinstance(message, (ToolMessage, FunctionMessage)):
            block = _tool_result_parts(message, where, options)
            if turns and turns[-1] is tool_turn:
                tool_turn.parts.extend([Markup("\n"), *block])
            else:
                tool_turn = Turn("user", block)
                turns.append(tool_turn)
        elif isinstance(message, ChatMessage) and message.role in _CHAT_ROLES:
            role = _CHAT_ROLES[message.role]
            turns.append(Turn(role, _parts(message.content, where, options)))  # type: ignore[arg-type]
        else:
            raise MessageFormatError(
                f"{where}: {type(message).__name__} cannot be sent to InternVL; use system, "
                "human, ai or tool messages (or ChatMessage with role user/assistant/system)."
            )
    system = "\n\n".join(t for t in system_texts if t) or system_message
    if system is None:
        system = INTERNVL_SYSTEM_MESSAGE
    check_text(system, "the system message")
    if tools_prompt:
        check_text(tools_prompt, "the tools' descriptions")
    parts: list[TurnPart] = [system] if system else []
    if tools_prompt:
        parts.append(Markup(f"\n\n{tools_prompt}" if system else tools_prompt))
    return [Turn("system", parts), *turns]


@dataclass(frozen=True)
class _Options:
    images: ImageLoadOptions
    video: VideoOptions


def _parts(content: Any, where: str, options: _Options) -> list[TurnPart]:
    out: list[TurnPart] = []
    tiling = TilingConfig(max_tiles=options.video.max_tiles_per_frame)
    parts = content_to_parts(content, where=where, options=options.images, video=options.video)
    for part in parts:
        if isinstance(part, ImagePart):
            out.append(part.image)
        elif isinstance(part, VideoPart):
            out.extend(VideoFrame(frame, n, tiling) for n, frame in enumerate(part.frames, 1))
        elif isinstance(part, TextPart):
            out.append(check_text(part.text, where))
    return out


def _text_only(content: Any, where: str, options: _Options) -> str:
    parts = _parts(content, where, options)
    if any(not isinstance(p, str) for p in parts):
        raise MessageFormatError(
            f"{where}: a system message cannot carry images or videos with InternVL; "
            "put them in a human message."
        )
    return "".join(p for p in parts if isinstance(p, str))


def _assistant_parts(message: AIMessage, where: str, options: _Options) -> list[TurnPart]:
    parts = _parts(message.content, where, options) if message.content else []
    for call in message.tool_calls:
        block = check_text(
            format_tool_call(call["name"], call.get("args") or {}), f"{where}, a tool call"
        )
        prefix = "\n" if parts else ""
        parts.append(Markup(prefix + block))
    return parts


def _tool_result_parts(message: BaseMessage, where: str, options: _Options) -> list[TurnPart]:
    content = message.content
    if isinstance(content, (dict, list)) and not _is_block_list(content):
        content = json.dumps(content, ensure_ascii=False)
    parts = _parts(content, where, options)
    if getattr(message, "status", "success") == "error":
        parts.insert(0, "Error: ")
    return [Markup(f"{TOOL_RESPONSE_OPEN}\n"), *parts, Markup(f"\n{TOOL_RESPONSE_CLOSE}")]


def _is_block_list(content: Any) -> bool:
    return isinstance(content, list) and all(
        isinstance(item, str) or (isinstance(item, dict) and "type" in item) for item in content
    )

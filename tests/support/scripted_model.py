"""A scripted LangChain chat model that answers the way InternVL would, from the live page.

Each agent call takes the next `Step` of the script. A step can aim at a CSS selector: the
model then reads the element's box from the page (CSS px), scales it by the device scale
factor and divides by the size of the LATEST screenshot in the messages it received, giving
0..1000 coordinates exactly as a real model would. A step can instead give an `element`
description; the agent then asks for grounding, and the model answers InternVL's
``<ref>..</ref><box>[[x1, y1, x2, y2]]</box>`` from the description -> selector map.

Failure modes: plain text, invalid tool calls (unparseable arguments), unknown tools, bad
arguments, several calls at once, and raising from the call itself.

Page access uses BrowserComputer.page (sync Playwright): calls must come from the thread that
launched the browser. For `ainvoke`, pass `executor` (the agent's computer executor).
"""

from __future__ import annotations

import asyncio
import base64
import io
import math
import re
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from PIL import Image
from pydantic import ConfigDict, Field, PrivateAttr

Kind = Literal["call", "text", "invalid", "raise", "multi"]


@dataclass
class Step:
    """One scripted reply of the model."""

    kind: Kind = "call"
    tool: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    selector: str | None = None  # x, y (drag: from_x, from_y) = centre of this element
    to_selector: str | None = None  # drag: to_x, to_y
    answer_from: str | None = None  # done: answer = inner text of this element
    text: str = ""  # kind "text": the reply; kind "invalid": the raw arguments
    error: BaseException | None = None  # kind "raise"
    before: Callable[[], None] | None = None  # run when this step is answered
    repeat: bool = False  # answer this step forever


# --------------------------------------------------------------------------- step helpers


def call(tool: str, **args: Any) -> Step:
    """A fixed tool call."""
    return Step(tool=tool, args=args)


def click(selector: str | None = None, *, element: str | None = None, **args: Any) -> Step:
    """Click the element matching `selector` (coordinates) or described by `element`."""
    if element is not None:
        args["element"] = element
    return Step(tool="click", args=args, selector=selector)


def type_into(selector: str | None, text: str, *, element: str | None = None, **args: Any) -> Step:
    """type_text into a field given by selector (coordinates) or element description."""
    if element is not None:
        args["element"] = element
    return Step(tool="type_text", args={"text": text, **args}, selector=selector)


def done(answer: str = "", *, answer_from: str | None = None, success: bool = True) -> Step:
    """done, with the answer read from the page when `answer_from` is a selector."""
    return Step(tool="done", args={"answer": answer, "success": success}, answer_from=answer_from)


def text_reply(text: str) -> Step:
    """Plain text, no tool call."""
    return Step(kind="text", text=text)


def invalid_call(tool: str, raw_args: str) -> Step:
    """A tool call whose arguments did not parse (AIMessage.invalid_tool_calls)."""
    return Step(kind="invalid", tool=tool, text=raw_args)


def raising(error: BaseException) -> Step:
    """The model call itself raises (network down, server error)."""
    return Step(kind="raise", error=error)


def forever(step: Step) -> Step:
    """The same reply for every call from now on."""
    return replace(step, repeat=True)


# --------------------------------------------------------------------------- message helpers


def message_text(messages: Sequence[BaseMessage]) -> str:
    """All text of the messages (system and user), images left out."""
    parts: list[str] = []
    for message in messages:
        content = message.content
        if isinstance(content, str):
            parts.append(content)
            continue
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict) and block.get("type") == "text":
                parts.append(str(block.get("text", "")))
    return "\n".join(parts)


def image_urls(messages: Sequence[BaseMessage]) -> list[str]:
    """The image_url data URLs in the messages, in order."""
    urls: list[str] = []
    for message in messages:
        if isinstance(message.content, list):
            for block in message.content:
                if isinstance(block, dict) and block.get("type") == "image_url":
                    urls.append(block["image_url"]["url"])
    return urls


def image_size(data_url: str) -> tuple[int, int]:
    """(width, height) of a base64 data-URL image."""
    data = base64.b64decode(data_url.split(",", 1)[1])
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def _round(value: float) -> int:
    return math.floor(value + 0.5)


_REF = re.compile(r"<ref>(.*?)</ref>", re.DOTALL)


# --------------------------------------------------------------------------- the model


class ScriptedModel(BaseChatModel):
    """Replies from a script; coordinates and grounding boxes computed from the live page."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    computer: Any = None  # a BrowserComputer (needed for selectors and grounding)
    script: list[Step] = Field(default_factory=list)
    # description -> CSS selector (an exception instance: the grounding call raises it)
    elements: dict[str, Any] = Field(default_factory=dict)
    executor: Any = None  # runs page access for ainvoke (sync Playwright's thread)
    reject_tool_choice_any: bool = False
    calls: list[list[BaseMessage]] = Field(default_factory=list)  # every call
    step_calls: list[list[BaseMessage]] = Field(default_factory=list)  # agent steps only
    grounding_calls: list[str] = Field(default_factory=list)  # descriptions asked for
    bind_log: list[dict[str, Any]] = Field(default_factory=list)
    _index: int = PrivateAttr(default=0)
    _ids: int = PrivateAttr(default=0)

    @property
    def _llm_type(self) -> str:
        return "scripted-internvl"

    # ---------------------------------------------------------------- tools

    def bind_tools(
        self,
        tools: Sequence[Any],
        *,
        tool_choice: Any = None,
        **kwargs: Any,
    ) -> Runnable:
        names = [convert_to_openai_tool(t)["function"]["name"] for t in tools]
        self.bind_log.append({"tools": names, "tool_choice": tool_choice, **kwargs})
        if self.reject_tool_choice_any and tool_choice == "any":
            raise ValueError("tool_choice='any' is not supported by this server")
        formatted = [convert_to_openai_tool(t) for t in tools]
        return self.bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    # ---------------------------------------------------------------- generation

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.calls.append(list(messages))
        last = messages[-1]
        prompt = message_text([last]) if isinstance(last, HumanMessage) else ""
        if "bounding box" in prompt and "<ref>" in prompt and "tools" not in kwargs:
            return self._result(AIMessage(content=self._ground(prompt, messages)))
        self.step_calls.append(list(messages))
        step = self._next_step()
        if step.before is not None:
            step.before()
        return self._result(self._reply(step, messages))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.executor is None:
            return self._generate(messages, stop, None, **kwargs)
        executor: Executor = self.executor
        future = executor.submit(self._generate, messages, stop, None, **kwargs)
        return await asyncio.wrap_future(future)

    def _result(self, message: AIMessage) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _next_step(self) -> Step:
        if self._index >= len(self.script):
            raise AssertionError(f"the script ran out after {len(self.script)} steps")
        step = self.script[self._index]
        if not step.repeat:
            self._index += 1
        return step

    def _new_id(self) -> str:
        self._ids += 1
        return f"call_{self._ids}"

    def _reply(self, step: Step, messages: list[BaseMessage]) -> AIMessage:
        if step.kind == "raise":
            assert step.error is not None
            raise step.error
        if step.kind == "text":
            return AIMessage(content=step.text)
        if step.kind == "invalid":
            bad = {
                "name": step.tool,
                "args": step.text,
                "id": self._new_id(),
                "error": "Function arguments are not valid JSON",
                "type": "invalid_tool_call",
            }
            return AIMessage(content="", invalid_tool_calls=[bad])
        args = dict(step.args)
        if step.selector is not None or step.to_selector is not None:
            size = image_size(image_urls(messages)[-1])
            if step.tool == "drag":
                args["from_x"], args["from_y"] = self._point(step.selector or "", size)
                args["to_x"], args["to_y"] = self._point(step.to_selector or "", size)
            else:
                args["x"], args["y"] = self._point(step.selector or "", size)
        if step.answer_from is not None:
            args["answer"] = self.computer.page.locator(step.answer_from).first.inner_text()
        calls = [{"name": step.tool, "args": args, "id": self._new_id(), "type": "tool_call"}]
        if step.kind == "multi":
            calls.append({**calls[0], "id": self._new_id()})
        return AIMessage(content="", tool_calls=calls)

    # ---------------------------------------------------------------- page geometry

    def _box_norm(self, selector: str, size: tuple[int, int]) -> tuple[int, int, int, int]:
        """The element's box as 0..1000 of a screenshot of `size` (may exceed 0..1000)."""
        box = self.computer.page.locator(selector).first.bounding_box()
        if box is None:
            raise AssertionError(f"{selector} is not visible")
        dsf = self.computer.device_scale_factor
        width, height = size
        x1, y1 = box["x"] * dsf, box["y"] * dsf
        x2, y2 = (box["x"] + box["width"]) * dsf, (box["y"] + box["height"]) * dsf
        return (
            _round(x1 / width * 1000),
            _round(y1 / height * 1000),
            _round(x2 / width * 1000),
            _round(y2 / height * 1000),
        )

    def _point(self, selector: str, size: tuple[int, int]) -> tuple[int, int]:
        """Centre of the element, 0..1000 of the screenshot, as InternVL would answer it."""
        box = self.computer.page.locator(selector).first.bounding_box()
        if box is None:
            raise AssertionError(f"{selector} is not visible")
        dsf = self.computer.device_scale_factor
        cx = (box["x"] + box["width"] / 2) * dsf
        cy = (box["y"] + box["height"] / 2) * dsf
        return _round(cx / size[0] * 1000), _round(cy / size[1] * 1000)

    def _ground(self, prompt: str, messages: list[BaseMessage]) -> str:
        match = _REF.search(prompt)
        description = match.group(1).strip() if match else ""
        self.grounding_calls.append(description)
        selector = self.elements.get(description)
        if isinstance(selector, BaseException):
            raise selector
        if selector is None:
            return f"Sorry, I cannot find <ref>{description}</ref> in the image."
        size = image_size(image_urls(messages)[-1])
        x1, y1, x2, y2 = self._box_norm(selector, size)
        return f"<ref>{description}</ref><box>[[{x1}, {y1}, {x2}, {y2}]]</box>"

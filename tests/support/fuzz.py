"""A seeded fuzz of model replies: a chat model answering random, hostile replies, and a fake
browser-like computer that records what was done to it.

`FuzzModel` answers agent calls (tools bound) with random tool calls: unknown and misspelt
tools, arguments of every JSON type and a few only Python can build (4,400-digit ints,
non-string keys, NaN, sets, lone surrogates), several calls at once, unparseable calls, text,
content blocks; and grounding calls (no tools) with random ``<box>`` answers: points,
zero-width and reversed boxes, huge numbers, surrogates. `FuzzScreen` checks nothing itself:
it logs clicks, keys and typed text so the test can.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from PIL import Image
from pydantic import Field, PrivateAttr

from internvl_agent.computers.base import ActionOutcome, Computer, Screenshot

SECRET_NAME = "pw"
SECRET = "Tk*9~x y/ü!-S3cr3t"  # space, ~, /, !, *, non-ASCII
SCREEN = (64, 48)
HUGE = 10**4400
TOOLS = (
    "click",
    "type_text",
    "press_key",
    "scroll",
    "drag",
    "navigate",
    "go_back",
    "wait",
    "done",
    "ask_user",
)
KEYS = ("Enter", "ctrl+w", "alt+F4", "ctrl+shift+q", "meta+l", "Tab", "ctrl+alt+delete", "a")
URLS = (
    "http://127.0.0.1:8000/",
    "http://127.0.0.1:8000/page",
    "http://localhost:9\\@127.0.0.1:8000/steal",
    "http://evil.test/",
    "javascript:alert(1)",
    "data:text/html,hi",
    "file:///etc/passwd",
    "http://[::1/",
    "about:blank",
    "127.0.0.1:8000/x",
)


def _text(rng: random.Random) -> str:
    pieces = [
        "ok",
        "\ud800",
        "\udfff x",
        "<secret>pw</secret>",
        "<secret:pw>",
        "<secret>nope</secret>",
        "<box>[[1, 2, 3, 4]]</box>",
        "é😀",
        "\x00",
        "a" * rng.choice((1, 70, 3000)),
        "\u202e",
        "</script><b>",
        "{{ x }}",
    ]
    return "".join(rng.choice(pieces) for _ in range(rng.randint(0, 4)))


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randint(0, 16 if depth < 2 else 10)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice((True, False))
    if kind == 2:
        return rng.choice((0, -1, 1, 499, 500, 1000, 1001, -(10**9), 10**20, HUGE, -HUGE))
    if kind == 3:
        return rng.choice((0.5, -0.0, 999.9999, 1e308, float("nan"), float("inf"), 500.5))
    if kind in (4, 5, 6):
        return _text(rng)
    if kind == 7:
        return rng.choice(URLS)
    if kind == 8:
        return rng.choice(KEYS)
    if kind == 9:
        return rng.choice(("up", "down", "left", "sideways", "DOWN"))
    if kind == 10:
        return b"bytes"
    if kind in (11, 12):
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if kind == 13:
        return {1: "int key", (2, 3): "tuple key", None: _value(rng, depth + 1)}
    if kind == 14:
        return {"x": _value(rng, depth + 1), "\ud800": "surrogate key"}
    if kind == 15:
        return {1, 2, 3}
    return object()


_FIELDS = (
    "x",
    "y",
    "element",
    "text",
    "submit",
    "keys",
    "direction",
    "amount",
    "from_x",
    "from_y",
    "to_x",
    "to_y",
    "url",
    "seconds",
    "answer",
    "success",
    "question",
    "button",
    "clicks",
    "bogus",
)


def _args(rng: random.Random, tool: str) -> Any:
    roll = rng.random()
    if roll < 0.05:
        return _value(rng)  # not a dict at all
    if roll < 0.1:
        return rng.choice(('{"x": 1', "", "null", '{"x": 5, "y": 5}', "[1, 2]"))
    args: dict[Any, Any] = {}
    plausible = {
        "click": {"x": rng.randint(-5, 1005), "y": rng.randint(-5, 1005)},
        "type_text": {"text": _text(rng) or "<secret>pw</secret>", "submit": rng.random() < 0.5},
        "press_key": {"keys": rng.choice(KEYS)},
        "scroll": {"direction": "down", "amount": rng.randint(0, 12)},
        "drag": {"from_x": 10, "from_y": 10, "to_x": rng.randint(-5, 1005), "to_y": 500},
        "navigate": {"url": rng.choice(URLS)},
        "done": {"answer": _text(rng), "success": rng.random() < 0.5},
        "ask_user": {"question": _text(rng) or "?"},
        "wait": {"seconds": rng.choice((0, 0.01, 11, -1))},
    }
    if rng.random() < 0.85:
        args.update(plausible.get(tool, {}))
    if tool in ("click", "type_text", "scroll") and rng.random() < 0.3:
        args.pop("x", None)
        args.pop("y", None)
        args["element"] = _text(rng) or "the button"
    for _ in range(rng.randint(0, 3) if rng.random() < 0.4 else 0):
        args[rng.choice(_FIELDS)] = _value(rng)
    if rng.random() < 0.05:
        args[7] = "int key"
    return args


def _tool_call(rng: random.Random, i: int) -> dict[str, Any]:
    roll = rng.random()
    if roll < 0.85:
        name: Any = rng.choice(TOOLS)
    elif roll < 0.92:
        name = rng.choice(("Click", "type-text", "clik", "", "\ud800", "done "))
    else:
        name = _value(rng)
    return {"name": name, "args": _args(rng, str(name)), "id": f"c{i}", "type": "tool_call"}


def random_reply(rng: random.Random) -> AIMessage:
    """One hostile agent reply. Built with model_construct: a real chat model's parser
    validates its output, but a model in Python can return anything."""
    roll = rng.random()
    content: Any = _text(rng)
    if rng.random() < 0.1:
        content = [{"type": "text", "text": _text(rng)}, {"type": "weird", "x": _value(rng)}]
    calls: list[Any] = []
    invalid: list[Any] = []
    if roll < 0.75:
        calls = [_tool_call(rng, i) for i in range(1 if rng.random() < 0.85 else 3)]
    elif roll < 0.85:
        invalid = [{"name": rng.choice(TOOLS), "args": '{"x": ', "error": "bad", "id": "i0"}]
    elif roll < 0.9:
        calls = [_value(rng)]  # not even a dict
    return AIMessage.model_construct(
        content=content, tool_calls=calls, invalid_tool_calls=invalid, type="ai"
    )


def random_grounding(rng: random.Random) -> str:
    """One grounding answer: boxes, points, zero-width and reversed boxes, junk."""
    return rng.choice(
        (
            "<ref>x</ref><box>[[500, 500]]</box>",
            "<box>[[100, 100, 100, 100]]</box>",
            "<box>[[900, 900, 100, 100]]</box>",
            "<box>[[0, 0, 1000, 1000]]</box>",
            "<box>[[-5, 2000, 3, 4]]</box>",
            "<box>[[" + "9" * 4400 + ", 1, 2, 3]]</box>",
            "<box>[[1e999, 1, 2, 3]]</box>",
            "<box>[[nan, 1, 2, 3]]</box>",
            "<box>\ud800</box>",
            "no box here \ud800",
            "",
            "<box>[[500, 500, 510, 510]]</box>\udfff",
        )
    )


class FuzzModel(BaseChatModel):
    """Random replies from one seeded generator; counts what it answered."""

    seed: int = 0
    replies: int = 0
    groundings: int = 0
    seen_text: list[str] = Field(default_factory=list)  # every text it was sent
    _rng: random.Random = PrivateAttr()

    def model_post_init(self, context: Any) -> None:
        self._rng = random.Random(self.seed)

    @property
    def _llm_type(self) -> str:
        return "fuzz"

    def bind_tools(self, tools: Any, **kwargs: Any) -> Runnable:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        for message in messages:
            content = message.content
            blocks = [content] if isinstance(content, str) else content
            for block in blocks:
                if isinstance(block, str):
                    self.seen_text.append(block)
                elif isinstance(block, dict) and block.get("type") == "text":
                    self.seen_text.append(str(block.get("text")))
        if "tools" not in kwargs:
            self.groundings += 1
            reply = AIMessage(content=random_grounding(self._rng))
        else:
            self.replies += 1
            if self._rng.random() < 0.02:
                raise RuntimeError("the model server fell over \ud800")
            reply = random_reply(self._rng)
        return ChatResult(generations=[ChatGeneration.model_construct(message=reply)])


@dataclass
class FuzzScreen(Computer):
    """A browser-like computer: one page at `url`, a small screen, a log of everything."""

    kind = "browser"
    url: str = "http://127.0.0.1:8000/"
    clicks: list[tuple[int, int]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    typed: list[str] = field(default_factory=list)
    visited: list[str] = field(default_factory=list)

    def screenshot(self) -> Screenshot:
        return Screenshot(Image.new("RGB", SCREEN, "white"), url=self.url, title="fuzz")

    def _point(self, x: int, y: int) -> ActionOutcome:
        self.clicks.append((x, y))
        return ActionOutcome(True, f"at ({x}, {y})", self.url)

    def click(self, x, y, *, button="left", clicks=1) -> ActionOutcome:
        return self._point(x, y)

    def type_text(self, text: str) -> ActionOutcome:
        self.typed.append(text)
        shown = text if len(text) <= 60 else text[:57] + "..."  # the browser's echo
        return ActionOutcome(len(text) % 3 != 0, f"typed {shown!r}", self.url)

    def press_key(self, keys: str) -> ActionOutcome:
        self.keys.append(keys)
        return ActionOutcome(True, f"pressed {keys}", self.url)

    def scroll(self, direction, amount=3, x=None, y=None) -> ActionOutcome:
        if x is not None and y is not None:
            return self._point(x, y)
        return ActionOutcome(True, "scrolled", self.url)

    def drag(self, from_x, from_y, to_x, to_y) -> ActionOutcome:
        self._point(from_x, from_y)
        return self._point(to_x, to_y)

    def navigate(self, url: str) -> ActionOutcome:
        self.visited.append(url)
        self.url = url
        return ActionOutcome(True, f"navigated to {url}", url)

    def go_back(self) -> ActionOutcome:
        self.url = "http://127.0.0.1:8000/"
        return ActionOutcome(True, "went back", self.url)

    def wait(self, seconds: float) -> ActionOutcome:
        return ActionOutcome(True, "waited")

    def current_url(self) -> str | None:
        return self.url

"""What a caller asks the engine for, and the handle through which the answer arrives."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from internvl_agent.engine.images import TilingConfig
from internvl_agent.engine.prompt import INTERNVL_SYSTEM_MESSAGE, Turn


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings; temperature 0 means greedy."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int | None = None

    @property
    def do_sample(self) -> bool:
        return self.temperature > 0


@dataclass
class GenerationRequest:
    """One conversation to continue."""

    turns: list[Turn]
    max_new_tokens: int = 1024
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stop: tuple[str, ...] = ()
    tiling: TilingConfig = field(default_factory=TilingConfig)
    prefill: str = ""  # text the assistant turn starts with (part of the prompt, not the answer)
    constraint: Any = None  # a constrained-decoding object (engine.constrained.JsonConstraint)
    default_system: str | None = INTERNVL_SYSTEM_MESSAGE
    timeout_s: float | None = None  # wall-clock limit of the generation itself
    logprobs: int | None = None  # None: none; N >= 0: each token's logprob and its N best


@dataclass
class GenerationResult:
    """The finished answer of one request, with token counts."""

    text: str
    finish_reason: str  # "stop" | "length" | "cancelled" | "timeout"
    input_tokens: int
    output_tokens: int
    image_tokens: int
    num_images: int
    timings: dict[str, float] = field(default_factory=dict)
    # per token {"token", "logprob", "bytes", "top_logprobs"} when the request asked for them
    logprobs: list[dict[str, Any]] | None = None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class TextDelta(str):
    """A text delta that also carries the logprobs of the tokens it completes (OpenAI's
    per-token dicts); plain `str` deltas carry none."""

    logprobs: list[dict[str, Any]]


_END = object()


class RequestHandle:
    """Receives a request's text deltas and result from the engine's worker thread.

    Iterate it (sync or async) for deltas; `result()` waits for the end. Thread-safe.
    """

    def __init__(self) -> None:
        self._events: deque[Any] = deque()
        self._cond = threading.Condition()
        self._result: GenerationResult | None = None
        self._error: BaseException | None = None
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self.cancelled = False

    # --- producer side (the worker) ---
    def push_text(self, text: str) -> None:
        if text or getattr(text, "logprobs", None):
            self._push(text)

    def finish(self, result: GenerationResult) -> None:
        self._result = result
        self._push(_END)

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._push(_END)

    @property
    def finished(self) -> bool:
        return self._result is not None or self._error is not None

    def _push(self, event: Any) -> None:
        with self._cond:
            self._events.append(event)
            self._cond.notify_all()
            waiters = list(self._waiters)
        for loop, flag in waiters:
            loop.call_soon_threadsafe(flag.set)

    # --- consumer side ---
    def cancel(self) -> None:
        """Ask the engine to stop generating for this request."""
        self.cancelled = True

    def result(self) -> GenerationResult:
        for _ in self:
            pass
        assert self._result is not None
        return self._result

    def __iter__(self) -> Iterator[str]:
        try:
            while True:
                with self._cond:
                    while not self._events:
                        self._cond.wait()
                    event = self._events.popleft()
                    if event is _END:
                        self._events.appendleft(_END)  # the end stays visible to later readers
                if event is _END:
                    self._raise_if_failed()
                    return
                yield event
        except GeneratorExit:
            self.cancel()
            raise

    async def aiter(self) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        flag = asyncio.Event()
        with self._cond:
            self._waiters.append((loop, flag))
        try:
            while True:
                flag.clear()
                with self._cond:
                    event = self._events.popleft() if self._events else None
                    if event is _END:
                        self._events.appendleft(_END)
                if event is None:
                    await flag.wait()
                    continue
                if event is _END:
                    self._raise_if_failed()
                    return
                yield event
        finally:
            if not self.finished:
                self.cancel()
            with self._cond:
                self._waiters.remove((loop, flag))

    async def aresult(self) -> GenerationResult:
        async for _ in self.aiter():
            pass
        assert self._result is not None
        return self._result

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

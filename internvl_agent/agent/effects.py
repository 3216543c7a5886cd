"""The agent's I/O as values, so each node of the agent graph serves both the sync graph
(`invoke`, `stream`, `GUIAgent.run`) and the async one (`ainvoke`, `astream`, `arun`).

A node's body is a generator that yields effects (call the model, do blocking work, ask a human)
and receives their results; `drive_sync` performs them in the calling thread, `drive_async`
awaits model calls and runs blocking work on one executor (sync Playwright must stay on the
thread that launched it). An exception raised by an effect is thrown back into the loop at
the `yield`, where the loop decides what it means; computer calls go through `computer_call`,
the one place where a computer's exception becomes a failed ActionOutcome.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Callable, Generator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable

from internvl_agent.computers.base import ActionOutcome

__all__ = [
    "Blocking",
    "HumanCall",
    "HumanReply",
    "ModelCall",
    "Steps",
    "computer_call",
    "drive_async",
    "drive_sync",
]

logger = logging.getLogger("internvl_agent.agent")


@dataclass
class ModelCall:
    """Invoke a LangChain runnable (a chat model, maybe with tools bound) on messages."""

    runnable: Runnable
    messages: list[BaseMessage]
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Blocking:
    """Blocking work: computer calls, screenshots, disk writes."""

    fn: Callable[[], Any]


@dataclass
class HumanReply:
    """What a human callback gave: `value`, or `error` ("timed out after 30s", "raised ...")."""

    value: Any = None
    error: str | None = None


@dataclass
class HumanCall:
    """Call a user callback (sync or async) with one argument; never raises, see HumanReply."""

    fn: Callable[[str], Any]
    arg: str
    timeout: float | None = None


Effect = ModelCall | Blocking | HumanCall
Steps = Generator[Effect, Any, Any]
"""A generator step of the agent: yields effects, gets their results, returns its value."""


def computer_call(what: str, fn: Callable[[], ActionOutcome]) -> Blocking:
    """Blocking work calling the computer, where an exception becomes a failed outcome
    ("click raised TimeoutError: ...") so that a broken page never ends the run by itself."""

    def call() -> ActionOutcome:
        try:
            return fn()
        except Exception as exc:
            logger.warning("%s raised %s", what, type(exc).__name__)
            return ActionOutcome(False, f"{what} raised {type(exc).__name__}: {exc}")

    return Blocking(call)


def _describe(exc: BaseException) -> str:
    return f"raised {type(exc).__name__}: {exc}"


def _call_human_sync(call: HumanCall) -> HumanReply:
    """Run the callback, in a daemon thread when there is a timeout."""
    if call.timeout is None:
        try:
            value = call.fn(call.arg)
            if inspect.isawaitable(value):
                value = asyncio.run(_awaitable(value))
            return HumanReply(value)
        except Exception as exc:
            return HumanReply(error=_describe(exc))
    box: list[HumanReply] = []

    def target() -> None:
        box.append(_call_human_sync(HumanCall(call.fn, call.arg, None)))

    worker = threading.Thread(target=target, name="agent-human-callback", daemon=True)
    worker.start()
    worker.join(call.timeout)
    if not box:
        return HumanReply(error=f"timed out after {call.timeout:g}s")
    return box[0]


async def _awaitable(value: Any) -> Any:
    return await value


async def _call_human_async(call: HumanCall) -> HumanReply:
    """Await an async callback, or run a sync one in a worker thread, within the timeout."""

    async def invoke() -> Any:
        value = (
            call.fn(call.arg)
            if inspect.iscoroutinefunction(call.fn)
            else await asyncio.to_thread(call.fn, call.arg)
        )
        return await value if inspect.isawaitable(value) else value

    try:
        return HumanReply(await asyncio.wait_for(invoke(), call.timeout))
    except asyncio.TimeoutError:
        return HumanReply(error=f"timed out after {call.timeout:g}s")
    except Exception as exc:
        return HumanReply(error=_describe(exc))


def _perform_sync(effect: Effect) -> Any:
    if isinstance(effect, ModelCall):
        return effect.runnable.invoke(effect.messages, **effect.kwargs)
    if isinstance(effect, Blocking):
        return effect.fn()
    if isinstance(effect, HumanCall):
        return _call_human_sync(effect)
    raise TypeError(f"unknown effect {effect!r}")


async def _perform_async(effect: Effect, executor: Executor) -> Any:
    if isinstance(effect, ModelCall):
        return await effect.runnable.ainvoke(effect.messages, **effect.kwargs)
    if isinstance(effect, Blocking):
        return await asyncio.get_running_loop().run_in_executor(executor, effect.fn)
    if isinstance(effect, HumanCall):
        return await _call_human_async(effect)
    raise TypeError(f"unknown effect {effect!r}")


def drive_sync(loop: Steps) -> Any:
    """Run the loop to its end in this thread; returns its return value."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = loop.throw(error) if error is not None else loop.send(value)
        except StopIteration as stop:
            return stop.value
        try:
            value, error = _perform_sync(effect), None
        except BaseException as exc:  # thrown back in: the loop records it and re-raises
            value, error = None, exc


async def drive_async(loop: Steps, executor: Executor) -> Any:
    """Run the loop to its end, awaiting model calls and running blocking work on `executor`."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = loop.throw(error) if error is not None else loop.send(value)
        except StopIteration as stop:
            return stop.value
        try:
            value, error = await _perform_async(effect, executor), None
        except BaseException as exc:  # CancelledError included: the loop records it
            value, error = None, exc

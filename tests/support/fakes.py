"""The fake chat models the tests share.

`ToolCallingFake` replays canned AIMessages and binds tools the way a real chat model does
(OpenAI tool schemas in the bound kwargs); `tool_calling_fake` builds one from (tool name,
args) calls, one call per reply. `RecordingChatModel` records the messages and kwargs of
every call and answers a fixed reply, or one computed from the messages by `reply_with` (or an
overriding `respond`); `fail` makes every call raise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from PIL import Image
from pydantic import Field

from internvl_agent.computers.base import ActionOutcome, Computer, Screenshot


class ToolCallingFake(GenericFakeChatModel):
    """GenericFakeChatModel plus bind_tools, the way a real chat model formats tools."""

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)


def tool_calling_fake(*calls: tuple[str, dict[str, Any]]) -> ToolCallingFake:
    """A ToolCallingFake answering each (tool name, args) call in turn, ids c0, c1, ..."""
    replies = [
        AIMessage("", tool_calls=[{"name": name, "args": args, "id": f"c{i}", "type": "tool_call"}])
        for i, (name, args) in enumerate(calls)
    ]
    return ToolCallingFake(messages=iter(replies))


class RecordingChatModel(BaseChatModel):
    """Records what every call was sent; answers `reply` (str or content blocks) or
    `reply_with(messages)`; raises `fail` (an exception) instead when it is set."""

    reply: Any = ""
    reply_with: Any = None  # Callable[[list[BaseMessage]], str | list]
    fail: Any = None  # BaseException
    received: list[list[BaseMessage]] = Field(default_factory=list)
    kwargs_seen: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "recording-fake"

    def respond(self, messages: list[BaseMessage]) -> Any:
        """The reply's content for these messages."""
        return self.reply if self.reply_with is None else self.reply_with(messages)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.fail is not None:
            raise self.fail
        self.received.append(list(messages))
        self.kwargs_seen.append({"stop": stop, **kwargs})
        message = AIMessage(content=self.respond(messages))
        return ChatResult(generations=[ChatGeneration(message=message)])


class FakeComputer(Computer):
    """A blank 200x100 screen that accepts every action and remembers it."""

    def __init__(self) -> None:
        self.done: list[str] = []

    def screenshot(self) -> Screenshot:
        return Screenshot(Image.new("RGB", (200, 100), "white"), url="http://fake.test/")

    def current_url(self) -> str | None:
        return "http://fake.test/"

    def _ok(self, what: str) -> ActionOutcome:
        self.done.append(what)
        return ActionOutcome(True, what, "http://fake.test/")

    def click(self, x: int, y: int, *, button: str = "left", clicks: int = 1) -> ActionOutcome:
        return self._ok(f"click {x} {y}")

    def type_text(self, text: str) -> ActionOutcome:
        return self._ok(f"type {text}")

    def press_key(self, keys: str) -> ActionOutcome:
        return self._ok(f"press {keys}")

    def scroll(self, direction: str, amount: int = 3, x=None, y=None) -> ActionOutcome:
        return self._ok(f"scroll {direction}")

    def drag(self, from_x: int, from_y: int, to_x: int, to_y: int) -> ActionOutcome:
        return self._ok(f"drag {from_x} {from_y} {to_x} {to_y}")

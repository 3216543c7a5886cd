"""ChatInternVL's token counting on the tiny checkpoint: the checkpoint's tokenizer and the
engine's own prompt (what `invoke` reports as input tokens), never LangChain's GPT-2 fallback."""

from __future__ import annotations

import shutil
import socket
import warnings
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    trim_messages,
)
from langchain_core.tools import tool
from PIL import Image

from internvl_agent.chat.chat_model import ChatInternVL


@pytest.fixture(scope="module")
def llm(tiny_checkpoint: Path) -> ChatInternVL:
    return ChatInternVL(model=str(tiny_checkpoint), device="cpu", max_tiles=2, max_tokens=4)


@tool
def get_weather(city: str) -> str:
    """Get the weather for a city."""
    return f"sunny in {city}"


def _input_tokens(model: Any, messages: list[BaseMessage]) -> int:
    usage = model.invoke(messages).usage_metadata
    assert usage is not None
    return int(usage["input_tokens"])


def test_token_ids_come_from_the_checkpoints_tokenizer(llm: ChatInternVL) -> None:
    tokenizer = llm._engine(llm.model).tokenizer
    text = "Hello, InternVL! 你好 <|im_end|> <img>"
    ids = llm.get_token_ids(text)
    expected = tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    assert ids == expected and len(ids) > 5
    assert tokenizer.decode(ids) == text
    # tags in text are plain characters, as in a message: never the special tokens' ids
    specials = {tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<img>")}
    assert not specials & set(ids)
    assert llm.get_num_tokens(text) == len(ids)
    assert llm.get_num_tokens("") == 0


def test_custom_get_token_ids_still_wins(tiny_checkpoint: Path) -> None:
    model = ChatInternVL(model=str(tiny_checkpoint), custom_get_token_ids=lambda t: [1] * len(t))
    assert model.get_num_tokens("abc") == 3


_WEATHER_CALL: Any = {"name": "get_weather", "args": {"city": "Paris"}, "id": "c1"}


def _conversations() -> dict[str, list[BaseMessage]]:
    image = Image.new("RGB", (900, 300), "navy")
    return {
        "text": [HumanMessage("What is the capital of France?")],
        "system and turns": [
            SystemMessage("You are terse."),
            HumanMessage("Hi"),
            AIMessage("Hello."),
            HumanMessage("Count to three."),
        ],
        "images": [
            HumanMessage(
                content=[
                    {"type": "image", "image": image},
                    {"type": "image", "image": Image.new("RGB", (64, 64), "red")},
                    "Compare them.",
                ]
            )
        ],
        "tool history": [
            HumanMessage("Weather in Paris?"),
            AIMessage("", tool_calls=[_WEATHER_CALL]),
            ToolMessage("sunny", tool_call_id="c1"),
        ],
    }


@pytest.mark.parametrize("name", list(_conversations()))
def test_message_count_is_the_input_tokens_of_invoke(llm: ChatInternVL, name: str) -> None:
    messages = _conversations()[name]
    assert llm.get_num_tokens_from_messages(messages) == _input_tokens(llm, messages)


def test_images_count_at_their_tiles(llm: ChatInternVL) -> None:
    text = [HumanMessage(content=["Compare them."])]
    one = [HumanMessage(content=[{"type": "image", "image": Image.new("RGB", (900, 300))},
                                 "Compare them."])]  # fmt: skip
    # 900x300 with max_tiles=2: a 2x1 grid plus a thumbnail = 3 tiles of 256 tokens, and
    # <img></img> and the newline after the image
    extra = llm.get_num_tokens_from_messages(one) - llm.get_num_tokens_from_messages(text)
    assert 3 * 256 < extra <= 3 * 256 + 4
    fewer = llm.model_copy(update={"max_tiles": 1})
    assert llm.get_num_tokens_from_messages(one) - fewer.get_num_tokens_from_messages(one) == 512


def test_video_counts_as_its_frames(llm: ChatInternVL, tmp_path: Path) -> None:
    pytest.importorskip("av", reason="needs PyAV (the video extra)")
    from tests.support.videos import write_video

    clip = write_video(tmp_path / "c.mp4", 20)
    message = [HumanMessage(content=[{"type": "video", "path": str(clip)}, "What happens?"])]
    count = llm.get_num_tokens_from_messages(message)
    assert count == _input_tokens(llm, message)
    four = llm.model_copy(update={"num_segments": 4}).get_num_tokens_from_messages(message)
    assert count - four > 4 * 256  # four frames fewer: 4 x (256 + tags and label)
    tiled = llm.model_copy(update={"max_tiles_per_frame": 2}).get_num_tokens_from_messages(message)
    assert tiled - count == 8 * 2 * 256  # 160x64 frames: 3 tiles each instead of 1


def test_tools_are_counted_when_given(llm: ChatInternVL) -> None:
    messages: list[BaseMessage] = [HumanMessage("Weather in Paris?")]
    bound = llm.bind_tools([get_weather])
    plain = llm.get_num_tokens_from_messages(messages)
    with_tools = llm.get_num_tokens_from_messages(messages, tools=[get_weather])
    assert with_tools > plain + 20
    assert with_tools == _input_tokens(bound, messages)
    # documented: a bound model's binding (tools) does not reach the counter
    assert bound.get_num_tokens_from_messages(messages) == plain  # type: ignore[attr-defined]


def _history() -> list[BaseMessage]:
    history: list[BaseMessage] = []
    for n in range(6):
        history += [HumanMessage(f"Question number {n}: what is {n} + {n}?"), AIMessage(f"{2 * n}")]
    return [*history, HumanMessage("And 7 + 7?")]


def test_trim_messages_keeps_the_longest_suffix_that_fits(llm: ChatInternVL) -> None:
    history = _history()
    budget = llm.get_num_tokens_from_messages(history) - 30
    trimmed = trim_messages(history, max_tokens=budget, token_counter=llm, strategy="last")
    assert 1 < len(trimmed) < len(history) and trimmed == history[-len(trimmed) :]
    # the count is the prompt invoke(trimmed) sends (default system message included) ...
    assert llm.get_num_tokens_from_messages(trimmed) <= budget
    assert _input_tokens(llm, trimmed) == llm.get_num_tokens_from_messages(trimmed)
    # ... and one message more would not fit
    assert llm.get_num_tokens_from_messages(history[-len(trimmed) - 1 :]) > budget
    first = trim_messages(history, max_tokens=budget, token_counter=llm, strategy="first")
    assert first == history[: len(first)] and llm.get_num_tokens_from_messages(first) <= budget
    assert llm.get_num_tokens_from_messages(history[: len(first) + 1]) > budget


def test_trim_messages_with_a_system_message_stays_within_budget(llm: ChatInternVL) -> None:
    history = [SystemMessage("You are terse."), *_history()]
    budget = llm.get_num_tokens_from_messages(history) - 30
    trimmed = trim_messages(
        history, max_tokens=budget, token_counter=llm, strategy="last", include_system=True,
        start_on="human",
    )  # fmt: skip
    assert trimmed[0] == history[0] and trimmed[-1] == history[-1]
    assert len(trimmed) < len(history)
    assert llm.get_num_tokens_from_messages(trimmed) <= budget


def test_counting_never_reaches_the_network(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh copy of the checkpoint (so the model loads inside the test) is counted with every
    network path and LangChain's GPT-2 fallback booby-trapped."""
    import langchain_core.language_models.base as lc_base
    import transformers

    copy = Path(shutil.copytree(tiny_checkpoint, tmp_path / "offline-copy"))

    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"network access attempted: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(lc_base, "get_tokenizer", no_network)
    monkeypatch.setattr(transformers.GPT2TokenizerFast, "from_pretrained", no_network)
    model = ChatInternVL(model=str(copy), device="cpu")
    messages: list[BaseMessage] = [HumanMessage("one"), AIMessage("two"), HumanMessage("three")]
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*GPT-2.*")
        assert model.get_num_tokens("hello world") > 0
        assert model.get_token_ids("hello") == model.get_token_ids("hello")
        assert model.get_num_tokens_from_messages(messages) > model.get_num_tokens("onetwothree")
        assert trim_messages(messages, max_tokens=10**6, token_counter=model) == messages

"""Video chat through ChatInternVL on the tiny checkpoint: the cards' prompt, per-call options,
and the vision cache covering frames (a second question about a video encodes nothing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from PIL import Image

from internvl_agent.chat.chat_model import ChatInternVL
from internvl_agent.chat.messages import messages_to_turns
from internvl_agent.chat.video import VideoOptions
from internvl_agent.engine.images import TilingConfig, tile_count
from internvl_agent.engine.prompt import IMG_CONTEXT, IMG_END, IMG_START, INTERNVL_SYSTEM_MESSAGE
from internvl_agent.engine.requests import GenerationRequest
from internvl_agent.errors import ConfigurationError
from tests.support.videos import HEIGHT, WIDTH, frame_pixels, write_video

pytest.importorskip("av", reason="needs PyAV (the video extra)")


@pytest.fixture(scope="module")
def llm(tiny_checkpoint: Path) -> ChatInternVL:
    return ChatInternVL(model=str(tiny_checkpoint), device="cpu", max_tiles=2, max_tokens=6)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("clip") / "clip.mp4", 37, fps=10)


def _question(clip: Path, text: str = "What is happening?", **block: Any) -> list[HumanMessage]:
    return [HumanMessage(content=[{"type": "video", "path": str(clip), **block}, text])]


def test_video_question_uses_the_cards_defaults(llm: ChatInternVL, clip: Path) -> None:
    reply = llm.invoke(_question(clip))
    assert isinstance(reply, AIMessage)
    assert reply.response_metadata["num_images"] == 8  # num_segments 8
    assert reply.response_metadata["image_tokens"] == 8 * 256  # one 448 tile a frame
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["input_tokens"] == llm.get_num_tokens_from_messages(_question(clip))


def test_prompt_tokens_are_model_chats(llm: ChatInternVL, clip: Path) -> None:
    """The ids equal those of the prompt string InternVL's model.chat builds for the cards'
    video example (Frame labels, one tile each), tokenized whole as model.chat does."""
    engine = llm._engine(llm.model)
    question = "What is the red panda doing?"
    turns = messages_to_turns(_question(clip, question), video_options=VideoOptions())
    prepared = engine.prepare(GenerationRequest(turns, default_system=None))
    card_question = "".join(f"Frame{i + 1}: <image>\n" for i in range(8)) + question
    card_question = card_question.replace("<image>", IMG_START + IMG_CONTEXT * 256 + IMG_END)
    card_prompt = (
        f"<|im_start|>system\n{INTERNVL_SYSTEM_MESSAGE}<|im_end|>\n"
        f"<|im_start|>user\n{card_question}<|im_end|>\n<|im_start|>assistant\n"
    )
    expected = engine.tokenizer(card_prompt, add_special_tokens=False)["input_ids"]
    assert prepared.input_ids == expected
    assert [img.num_tiles for img in prepared.images] == [1] * 8


def test_second_question_about_the_same_video_encodes_nothing(
    llm: ChatInternVL, clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = llm._engine(llm.model)
    engine.vision_cache.clear()
    encoded: list[int] = []  # tiles through the vision tower, per call
    real = engine.model.get_image_features

    def counting(*args: Any, **kwargs: Any) -> Any:
        encoded.append(int(kwargs["pixel_values"].shape[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(engine.model, "get_image_features", counting)
    hits, misses = engine.vision_cache.hits, engine.vision_cache.misses
    llm.invoke(_question(clip, "What is happening?"))
    assert encoded == [8]  # one batch of the 8 frames' tiles
    assert (engine.vision_cache.hits - hits, engine.vision_cache.misses - misses) == (0, 8)

    history = [
        *_question(clip, "What is happening?"),
        AIMessage("A counter counts."),
        HumanMessage("Describe this video in detail."),
    ]
    llm.invoke(_question(clip, "And the colours?"))  # another question, same video
    llm.invoke(history)  # the cards' follow-up: the video in the history
    assert encoded == [8]  # nothing encoded again
    assert (engine.vision_cache.hits - hits, engine.vision_cache.misses - misses) == (16, 8)

    llm.invoke(_question(clip), max_tiles_per_frame=2)  # other tiling: other features
    assert encoded == [8, 8 * 3]


def test_per_call_options(llm: ChatInternVL, clip: Path) -> None:
    reply = llm.invoke(_question(clip), num_segments=4, max_tiles_per_frame=2)
    # a 160x64 frame with at most 2 tiles: a 2x1 grid and a thumbnail
    tiles = tile_count(WIDTH, HEIGHT, TilingConfig(max_tiles=2))
    assert tiles == 3
    assert reply.response_metadata["num_images"] == 4
    assert reply.response_metadata["image_tokens"] == 4 * tiles * 256
    block_wins = llm.invoke(_question(clip, num_segments=2), num_segments=4)
    assert block_wins.response_metadata["num_images"] == 2
    fields = ChatInternVL(model=llm.model, device="cpu", max_tokens=4, num_segments=3)
    assert fields.invoke(_question(clip)).response_metadata["num_images"] == 3


@pytest.mark.parametrize(
    ("option", "value"),
    [("num_segments", 0), ("num_segments", 513), ("max_tiles_per_frame", 0),
     ("max_tiles_per_frame", "two")],
)  # fmt: skip
def test_bad_per_call_options_are_refused(
    llm: ChatInternVL, clip: Path, option: str, value: Any
) -> None:
    with pytest.raises(ConfigurationError, match=f"invalid call option {option}="):
        llm.invoke(_question(clip), **{option: value})
    with pytest.raises(ValueError, match=option):
        ChatInternVL(model=llm.model, **{option: value})


def test_explicit_frames_and_streaming(llm: ChatInternVL) -> None:
    frames = [Image.fromarray(frame_pixels(n)) for n in range(3)]
    message = HumanMessage(content=[{"type": "video", "frames": frames}, "what changes?"])
    chunks = list(llm.stream([message]))
    last = chunks[-1]
    assert last.response_metadata["num_images"] == 3
    assert last.response_metadata["image_tokens"] == 3 * 256
    assert last.usage_metadata is not None
    assert last.usage_metadata["input_tokens"] == llm.get_num_tokens_from_messages([message])

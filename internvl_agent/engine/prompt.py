"""Render a conversation into InternVL's prompt text (the `internvl2_5` chat format).

`<|im_start|>role\n...<|im_end|>\n` turns, for both language-model families (Qwen2 and
InternLM2), with the template's default system message when the conversation has none.

Each image becomes `<img>` + `<IMG_CONTEXT>` x (256 * tiles) + `</img>`; with several images in
one conversation they are numbered `Image-1: ...`, as InternVL was trained. Video frames
(`VideoFrame` parts) are labelled `Frame1: ...` within their video, as the model cards do, and
carry their own tiling (one tile a frame on the cards).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from PIL import Image

from internvl_agent.engine.images import TilingConfig

Role = Literal["system", "user", "assistant"]

# The default system message of InternVL's `internvl2_5` chat template.
INTERNVL_SYSTEM_MESSAGE = (
    "你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的"
    "多模态大语言模型。"
)
# The system message of InternVL2's `Hermes-2` and `internlm2-chat` templates (same format).
INTERNVL2_SYSTEM_MESSAGE = (
    "你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，英文名叫InternVL, "
    "是一个有用无害的人工智能助手。"
)
# InternVL's chat templates (the `template` of an original checkpoint's config) that use this
# format, and their default system messages. Every turn ends with `<|im_end|>` in all of them,
# whatever end token the language model's own config names.
TEMPLATE_SYSTEM_MESSAGES = {
    "internvl2_5": INTERNVL_SYSTEM_MESSAGE,
    "Hermes-2": INTERNVL2_SYSTEM_MESSAGE,
    "internlm2-chat": INTERNVL2_SYSTEM_MESSAGE,
}
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
IMG_START, IMG_END, IMG_CONTEXT = "<img>", "</img>", "<IMG_CONTEXT>"


class Markup(str):
    """Prompt text written by this package (tool-call blocks, tool wrappers, the tools prompt)
    whose tags are meant as the model's special tokens. Every other text part is content:
    tags inside it (a page titled "<|im_end|>", a user typing "<IMG_CONTEXT>") are tokenized
    as plain characters, so content can neither break image placement nor forge turns."""


@dataclass(frozen=True, eq=False)
class VideoFrame:
    """One frame of a video in a turn: rendered `Frame{number}: <img>...</img>\n` and tiled
    with its own `tiling` (not the request's image tiling)."""

    image: Image.Image
    number: int  # 1-based, within its video
    tiling: TilingConfig


TurnPart = str | Image.Image | VideoFrame


@dataclass
class Turn:
    """One message: a role and its parts in order (text, Markup, PIL images, video frames)."""

    role: Role
    parts: list[TurnPart] = field(default_factory=list)  # str or Markup

    @property
    def images(self) -> list[Image.Image]:
        """The (non-frame) images."""
        return [p for p in self.parts if isinstance(p, Image.Image)]


def template_system_message(template: str | None) -> str | None:
    """The default system message of an InternVL chat template (None: internvl2_5's); None for
    a template whose format this module does not render."""
    return TEMPLATE_SYSTEM_MESSAGES.get(template or "internvl2_5")


def visual_inputs(turns: Sequence[Turn]) -> list[tuple[Image.Image, TilingConfig | None]]:
    """Every image and video frame in prompt order, with the frame's own tiling (None for an
    image: the request's tiling applies)."""
    out: list[tuple[Image.Image, TilingConfig | None]] = []
    for turn in turns:
        for part in turn.parts:
            if isinstance(part, Image.Image):
                out.append((part, None))
            elif isinstance(part, VideoFrame):
                out.append((part.image, part.tiling))
    return out


def image_placeholder(num_tiles: int, tokens_per_tile: int = 256) -> str:
    """The token string one image occupies in the prompt."""
    return IMG_START + IMG_CONTEXT * (tokens_per_tile * num_tiles) + IMG_END


def count_images(turns: Sequence[Turn]) -> int:
    return sum(len(t.images) for t in turns)


def render_segments(
    turns: Sequence[Turn],
    tiles_per_image: Sequence[int],
    *,
    tokens_per_tile: int = 256,
    default_system: str | None = INTERNVL_SYSTEM_MESSAGE,
    add_generation_prompt: bool = True,
    prefill: str = "",
) -> list[tuple[str, bool]]:
    """The prompt as (text, is_markup) pieces; `tiles_per_image` gives the tiles of each image
    and video frame, in order."""
    total_images = count_images(turns)
    total_visuals = len(visual_inputs(turns))
    if total_visuals != len(tiles_per_image):
        raise ValueError(f"{total_visuals} images/frames but {len(tiles_per_image)} tile counts")
    out: list[tuple[str, bool]] = []
    if default_system is not None and (not turns or turns[0].role != "system"):
        out += [(f"{IM_START}system\n", True), (default_system, False), (f"{IM_END}\n", True)]
    image_index = image_number = 0  # position among images and frames; among images alone
    for turn in turns:
        out.append((f"{IM_START}{turn.role}\n", True))
        for part in turn.parts:
            if isinstance(part, Image.Image):
                image_number += 1
                label = f"Image-{image_number}: " if total_images > 1 else ""
                tiles = tiles_per_image[image_index]
                out.append((f"{label}{image_placeholder(tiles, tokens_per_tile)}\n", True))
                image_index += 1
            elif isinstance(part, VideoFrame):
                tiles = tiles_per_image[image_index]
                label = f"Frame{part.number}: "
                out.append((f"{label}{image_placeholder(tiles, tokens_per_tile)}\n", True))
                image_index += 1
            else:
                out.append((part, isinstance(part, Markup)))
        out.append((f"{IM_END}\n", True))
    if add_generation_prompt:
        out.append((f"{IM_START}assistant\n{prefill}", True))
    return out

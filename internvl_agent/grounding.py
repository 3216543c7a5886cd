"""InternVL's native grounding: ask for a box around a described region, parse it, use it.

InternVL answers `<ref>{description}</ref><box>[[x1, y1, x2, y2]]</box>` with integers 0..1000
normalized to the width and height of the ORIGINAL image. `ground` works with any LangChain chat
model that accepts OpenAI-style `image_url` blocks (ChatInternVL, ChatOpenAI against vLLM or
lmdeploy, ...). Parsing is tolerant and never raises on the model's output: when no box can be
read, the result carries `error` instead.
"""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage
from PIL import Image, ImageDraw

from internvl_agent.coordinates import (
    NORM_MAX,
    Box,
    Point,
    Size,
    box_center,
    box_to_pixels,
    norm_to_pixels,
    round_half_up,
)
from internvl_agent.errors import ConfigurationError, ImageInputError

GROUNDING_PROMPT = (
    "Please provide the bounding box coordinate of the region this sentence describes: "
    "<ref>{description}</ref>"
)
"""The prompt InternVL was trained on for grounding; `{description}` is filled in."""

GUI_GROUNDING_PROMPT = (
    "Please provide the bounding box coordinate of the UI element this user instruction "
    "describes: <ref>{description}</ref>"
)
"""The GUI variant used by ScreenSpot harnesses."""

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_NUM_LIST = re.compile(r"[\d\s.,，;+\-]+")  # numbers and separators only
_NUM_RE = re.compile(_NUM)
_BRACKETS = str.maketrans("[]()", "    ")
_BRACKET_GROUP = re.compile(r"\[([^\[\]]*)\]")
_PAREN_GROUP = re.compile(r"\(([^()]*)\)")
_REF = re.compile(r"<ref>.*?</ref>", re.DOTALL)
_BOX_OPEN = r"(?:<box>|<\|box_start\|>)"
_BOX_CLOSE = r"(?:</box>|<\|box_end\|>)"
_BOX_REGION = re.compile(rf"{_BOX_OPEN}(.*?)(?:{_BOX_CLOSE}|$)", re.DOTALL)


def _numbers(text: str) -> list[int]:
    """Every number in `text`, rounded and clamped to 0..1000."""
    return [round_half_up(min(max(float(n), 0.0), NORM_MAX)) for n in _NUM_RE.findall(text)]


def _make_box(x1: int, y1: int, x2: int, y2: int) -> Box:
    """A box with its corners ordered (x1 <= x2, y1 <= y2)."""
    return (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))


def _number_groups(text: str, pattern: re.Pattern[str]) -> list[list[int]]:
    """Contents of innermost bracket (or parenthesis) groups that hold only numbers."""
    return [
        _numbers(match.group(1))
        for match in pattern.finditer(text)
        if _NUM_LIST.fullmatch(match.group(1)) and _NUM_RE.search(match.group(1))
    ]


def _boxes_from_brackets(text: str) -> list[Box]:
    """`[x1, y1, x2, y2]` groups as boxes and `[x, y]` groups as degenerate boxes."""
    boxes: list[Box] = []
    for nums in _number_groups(text, _BRACKET_GROUP):
        if len(nums) == 4:
            boxes.append(_make_box(*nums))
        elif len(nums) == 2:
            boxes.append(_make_box(nums[0], nums[1], nums[0], nums[1]))
    return boxes


def _boxes_from_parens(text: str) -> list[Box]:
    """Qwen-VL / OS-Atlas style `(x1,y1),(x2,y2)` corner pairs; a lone `(x,y)` is a point."""
    points = [nums for nums in _number_groups(text, _PAREN_GROUP) if len(nums) == 2]
    boxes: list[Box] = []
    for i in range(0, len(points) - 1, 2):
        boxes.append(_make_box(*points[i], *points[i + 1]))
    if len(points) % 2:
        x, y = points[-1]
        boxes.append((x, y, x, y))
    return boxes


def _boxes_from_bare_numbers(text: str) -> list[Box]:
    """Numbers with no closed brackets (`<box>1, 2, 3, 4` or a truncated `<box>[[1, 2, 3, 4`).

    Only when the text holds nothing but numbers, separators and brackets; groups of 4, or 2.
    """
    stripped = text.translate(_BRACKETS)
    if not (_NUM_LIST.fullmatch(stripped) and _NUM_RE.search(stripped)):
        return []
    nums = _numbers(stripped)
    if len(nums) == 2:
        return [(nums[0], nums[1], nums[0], nums[1])]
    return [_make_box(*nums[i : i + 4]) for i in range(0, len(nums) - len(nums) % 4, 4)]


def _boxes_in_region(region: str, *, bare_numbers: bool) -> list[Box]:
    """Boxes in one stretch of text, trying the strictest notation first."""
    boxes = _boxes_from_brackets(region) or _boxes_from_parens(region)
    if not boxes and bare_numbers:
        boxes = _boxes_from_bare_numbers(region)
    return boxes


def parse_boxes(text: str) -> list[Box]:
    """Read every box from a model's grounding answer, in order; never raises.

    Accepts `<box>[[x1, y1, x2, y2]]</box>` and its variants: several boxes, spacing and
    newlines, single brackets, a bare point `[[x, y]]` (returned as the box x, y, x, y),
    `(x1,y1),(x2,y2)` corners, floats (rounded), a missing `<box>` tag, text around it.
    Values are clamped to 0..1000 and corners ordered. Text inside `<ref>` is ignored.
    """
    if not isinstance(text, str):
        return []
    text = _REF.sub(" ", text)
    regions = _BOX_REGION.findall(text)
    if regions:
        boxes = [b for r in regions for b in _boxes_in_region(r, bare_numbers=True)]
        if boxes:
            return boxes
    return _boxes_in_region(text, bare_numbers=False)


@dataclass
class GroundingResult:
    """What a grounding call found: boxes in 0..1000 and helpers to get pixels."""

    description: str
    raw_text: str
    boxes_norm: list[Box]
    image_size: Size
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when at least one box was found."""
        return bool(self.boxes_norm)

    @property
    def box_norm(self) -> Box | None:
        """The first box, 0..1000."""
        return self.boxes_norm[0] if self.boxes_norm else None

    @property
    def boxes(self) -> list[Box]:
        """Every box in image pixels."""
        return [box_to_pixels(box, self.image_size) for box in self.boxes_norm]

    @property
    def box(self) -> Box | None:
        """The first box in image pixels (right/bottom edges may equal width/height)."""
        return box_to_pixels(self.box_norm, self.image_size) if self.box_norm else None

    @property
    def point_norm(self) -> Point | None:
        """Centre of the first box, 0..1000."""
        if self.box_norm is None:
            return None
        x, y = box_center(self.box_norm)
        return round_half_up(x), round_half_up(y)

    @property
    def point(self) -> Point | None:
        """Centre of the first box in image pixels, inside the image: where to click."""
        if self.box_norm is None:
            return None
        return norm_to_pixels(*box_center(self.box_norm), self.image_size)


def result_from_text(description: str, text: str, image_size: Size) -> GroundingResult:
    """Parse a model's answer into a GroundingResult, with `error` set when it has no box."""
    boxes = parse_boxes(text)
    error = None if boxes else _no_box_reason(text)
    width, height = image_size
    return GroundingResult(description, text, boxes, (width, height), error)


def _no_box_reason(text: str) -> str:
    """Why no box could be read from `text`, in a line."""
    if not text.strip():
        return "the model output is empty"
    snippet = text.strip()[:200]
    if re.search(_BOX_OPEN, text):
        return f"a <box> in the model output holds no readable coordinates: {snippet!r}"
    return f"no <box> in the model output: {snippet!r}"


def image_to_data_url(image: Image.Image) -> str:
    """Encode a PIL image as a `data:image/png;base64,...` URL.

    Fast zlib level (lossless like any PNG): at 1920x1080 it encodes in about 60% of the
    default level's time for about 45% more bytes, a good trade on every agent step.
    """
    if not isinstance(image, Image.Image):
        raise ImageInputError(f"expected a PIL.Image.Image, got {type(image).__name__}")
    if image.mode not in ("RGB", "RGBA", "L", "LA"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def grounding_message(
    image: Image.Image | str | dict[str, Any], description: str, prompt: str = GROUNDING_PROMPT
) -> HumanMessage:
    """The user message asking for a box: the image block first, then the prompt.

    `image` is a PIL image, an already encoded data URL, or a ready image content block
    (Screenshot.content_block); `{description}` in `prompt` is replaced (other braces in a
    custom prompt are left alone).
    """
    if not description or not description.strip():
        raise ConfigurationError("grounding needs a non-empty description of the target")
    if isinstance(image, dict):
        block = image
    else:
        url = image if isinstance(image, str) else image_to_data_url(image)
        block = {"type": "image_url", "image_url": {"url": url}}
    return HumanMessage(
        content=[
            block,
            {"type": "text", "text": prompt.replace("{description}", description.strip())},
        ]
    )


def reply_text(message: Any) -> str:
    """The text of a model's reply: a message's `.text`, a string itself, else `str()`.

    Never raises: a message whose `.text` fails gives its content as a string, and an
    object that cannot be printed gives its type's name.
    """
    if isinstance(message, str):
        return message
    try:
        if isinstance(message, BaseMessage):
            try:
                return str(message.text or "")
            except Exception:
                return str(message.content)
        return str(message)
    except Exception:
        return f"<unprintable {type(message).__name__}>"


def ground(
    model: BaseChatModel,
    image: Image.Image,
    description: str,
    *,
    prompt: str = GROUNDING_PROMPT,
    **invoke_kwargs: Any,
) -> GroundingResult:
    """Ask `model` where `description` is in `image`.

    Errors raised by the model call propagate; unreadable output gives a result with `error`.
    """
    message = grounding_message(image, description, prompt)
    response = model.invoke([message], **invoke_kwargs)
    return result_from_text(description, reply_text(response), image.size)


async def aground(
    model: BaseChatModel,
    image: Image.Image,
    description: str,
    *,
    prompt: str = GROUNDING_PROMPT,
    **invoke_kwargs: Any,
) -> GroundingResult:
    """Async `ground`."""
    message = grounding_message(image, description, prompt)
    response = await model.ainvoke([message], **invoke_kwargs)
    return result_from_text(description, reply_text(response), image.size)


BOX_COLOUR = (255, 176, 0)  # amber, on a black halo
POINT_COLOUR = (230, 0, 0)  # red, on a white halo


def draw_box(
    image: Image.Image,
    result: GroundingResult | None = None,
    *,
    box: Box | None = None,
    point: Point | None = None,
) -> Image.Image:
    """An RGB copy of `image` with boxes outlined (amber) and a point marked (red circle and
    crosshair); each line has a halo so it shows on any background.

    result: every box, mapped onto `image`'s own size (a resized copy of the grounded image
        works too), and the first box's centre.
    box, point: in `image`'s pixels (the run record's marked screenshot: the action's target
        and the grounded box); `point` replaces the result's centre.
    """
    canvas = image.convert("RGB")
    boxes = [box_to_pixels(b, canvas.size) for b in result.boxes_norm] if result else []
    if box is not None:
        boxes.append(box)
    if point is None and result is not None and result.box_norm is not None:
        point = norm_to_pixels(*box_center(result.box_norm), canvas.size)
    draw = ImageDraw.Draw(canvas)
    w = max(2, round(max(canvas.size) / 500))
    for x1, y1, x2, y2 in boxes:
        x1, x2 = sorted((x1, x2))
        y1, y2 = sorted((y1, y2))
        draw.rectangle((x1, y1, x2, y2), outline=(0, 0, 0), width=w + 2)
        if x2 - x1 >= 2 and y2 - y1 >= 2:  # a box a pixel wide (a grounded point) has no inside
            draw.rectangle((x1 + 1, y1 + 1, x2 - 1, y2 - 1), outline=BOX_COLOUR, width=w)
    if point is not None:
        x, y = point
        r = 6 * w + 6
        arm = r + 4 * w
        for colour, width in (((255, 255, 255), w + 2), (POINT_COLOUR, w)):
            draw.ellipse((x - r, y - r, x + r, y + r), outline=colour, width=width)
            draw.line((x - arm, y, x + arm, y), fill=colour, width=width)
            draw.line((x, y - arm, x, y + arm), fill=colour, width=width)
    return canvas

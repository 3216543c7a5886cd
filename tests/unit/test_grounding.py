"""Tests for internvl_agent.grounding: tolerant box parsing, pixels, ground(), draw_box()."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from PIL import Image

from internvl_agent.errors import ConfigurationError, ImageInputError
from internvl_agent.grounding import (
    GROUNDING_PROMPT,
    GUI_GROUNDING_PROMPT,
    GroundingResult,
    aground,
    draw_box,
    ground,
    parse_boxes,
    reply_text,
)
from tests.support.fakes import RecordingChatModel


def make_model(reply: Any, *, fail: bool = False) -> RecordingChatModel:
    """Answers `reply` (str or content blocks); with `fail`, the server is unreachable."""
    return RecordingChatModel(
        reply=reply, fail=ConnectionError("server unreachable") if fail else None
    )


# --- parse_boxes -------------------------------------------------------------------------

PARSE_CASES = [
    ("canonical", "<ref>the button</ref><box>[[100, 200, 300, 400]]</box>", [(100, 200, 300, 400)]),
    ("no spaces", "<box>[[100,200,300,400]]</box>", [(100, 200, 300, 400)]),
    ("extra spaces", "<box>[[ 100 ,  200 , 300 ,400 ]]</box>", [(100, 200, 300, 400)]),
    ("newlines", "<box>[[\n100,\n200,\n300,\n400\n]]</box>", [(100, 200, 300, 400)]),
    ("spaces not commas", "<box>[[100 200 300 400]]</box>", [(100, 200, 300, 400)]),
    ("full-width commas", "<box>[[100，200，300，400]]</box>", [(100, 200, 300, 400)]),
    ("trailing comma", "<box>[[100, 200, 300, 400,]]</box>", [(100, 200, 300, 400)]),
    (
        "two boxes in one tag",
        "<box>[[1, 2, 3, 4], [5, 6, 7, 8]]</box>",
        [(1, 2, 3, 4), (5, 6, 7, 8)],
    ),
    (
        "two box tags",
        "<ref>a</ref><box>[[1, 2, 3, 4]]</box> and <ref>b</ref><box>[[5, 6, 7, 8]]</box>",
        [(1, 2, 3, 4), (5, 6, 7, 8)],
    ),
    ("bare point", "<box>[[500, 300]]</box>", [(500, 300, 500, 300)]),
    ("bare point no tag", "[[500, 300]]", [(500, 300, 500, 300)]),
    ("single brackets", "<box>[100, 200, 300, 400]</box>", [(100, 200, 300, 400)]),
    ("no box tag", "The element is at [[100, 200, 300, 400]].", [(100, 200, 300, 400)]),
    ("single brackets no tag", "box: [100, 200, 300, 400]", [(100, 200, 300, 400)]),
    ("floats rounded half up", "<box>[[10.5, 20.4, 30.6, 40.0]]</box>", [(11, 20, 31, 40)]),
    ("clamped above 1000", "<box>[[900, 950, 1200, 1001]]</box>", [(900, 950, 1000, 1000)]),
    ("huge numbers clamped", "<box>[[1, 2, " + "9" * 400 + ", 4]]</box>", [(1, 2, 1000, 4)]),
    ("negatives clamped", "<box>[[-5, -20, 30, 40]]</box>", [(0, 0, 30, 40)]),
    ("reversed corners swapped", "<box>[[300, 400, 100, 200]]</box>", [(100, 200, 300, 400)]),
    (
        "text around",
        "Sure! <ref>OK</ref><box>[[10, 20, 30, 40]]</box> is the OK button.",
        [(10, 20, 30, 40)],
    ),
    ("box without closing tag", "<box>[[10, 20, 30, 40]]", [(10, 20, 30, 40)]),
    ("truncated brackets", "<box>[[10, 20, 30, 40", [(10, 20, 30, 40)]),
    ("numbers without brackets", "<box>10, 20, 30, 40</box>", [(10, 20, 30, 40)]),
    ("qwen-style corners", "<|box_start|>(10,20),(30,40)<|box_end|>", [(10, 20, 30, 40)]),
    ("parenthesis corners", "<box>(10, 20), (30, 40)</box>", [(10, 20, 30, 40)]),
    ("json-ish", '{"bbox_2d": [10, 20, 30, 40]}', [(10, 20, 30, 40)]),
    ("numbers in ref ignored", "<ref>row [3, 4]</ref><box>[[1, 2, 3, 4]]</box>", [(1, 2, 3, 4)]),
    ("ref with brackets, no box", "<ref>row [3, 4]</ref> not found", []),
    ("plain refusal", "I cannot find that element.", []),
    ("empty", "", []),
    ("three numbers skipped", "<box>[[1, 2, 3]]</box>", []),
    ("non-numbers skipped", "<box>[[x1, y1, x2, y2]]</box>", []),
    ("mixed tokens skipped", "[[100, 200, 300, 400px]]", []),
    ("words in box skipped", "<box>the top left corner, 1 of 2</box>", []),
]


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in PARSE_CASES], ids=[c[0] for c in PARSE_CASES]
)
def test_parse_boxes(text: str, expected: list[tuple[int, int, int, int]]) -> None:
    assert parse_boxes(text) == expected


@pytest.mark.parametrize("junk", [None, 42, b"<box>[[1,2,3,4]]</box>", "[" * 10_000, "<box>" * 500])
def test_parse_boxes_never_raises(junk: Any) -> None:
    assert parse_boxes(junk) == []


def test_parse_boxes_is_linear_on_long_whitespace() -> None:
    # A crafted reply must not make the parser backtrack for seconds.
    import time

    start = time.perf_counter()
    parse_boxes("[1" + " " * 50_000 + "x]" + "[" + "1 " * 20_000 + "x]")
    assert time.perf_counter() - start < 0.5


# --- pixels ------------------------------------------------------------------------------


def test_result_pixels_on_odd_size() -> None:
    result = GroundingResult("x", "", [(100, 200, 301, 400)], (333, 199))
    assert result.ok and result.error is None
    assert result.box_norm == (100, 200, 301, 400)
    assert result.box == (33, 40, 100, 80)  # 33.3, 39.8, 100.233, 79.6
    assert result.point_norm == (201, 300)  # 200.5 -> 201
    assert result.point == (67, 60)  # 200.5*333/1000 = 66.77, 300*199/1000 = 59.7


def test_result_full_box_point_stays_inside() -> None:
    result = GroundingResult("x", "", [(1000, 1000, 1000, 1000)], (640, 480))
    assert result.box == (640, 480, 640, 480)
    assert result.point == (639, 479)


def test_result_without_boxes() -> None:
    result = GroundingResult("x", "nothing", [], (10, 10), error="no <box>")
    assert not result.ok
    assert result.box is None and result.box_norm is None
    assert result.point is None and result.point_norm is None
    assert result.boxes == []


def test_result_lists_every_box_in_pixels() -> None:
    result = GroundingResult("x", "", [(0, 0, 500, 500), (500, 500, 1000, 1000)], (200, 100))
    assert result.boxes == [(0, 0, 100, 50), (100, 50, 200, 100)]
    assert result.box == (0, 0, 100, 50)


# --- ground / aground --------------------------------------------------------------------


def _image(size: tuple[int, int] = (320, 200)) -> Image.Image:
    image = Image.new("RGB", size, "white")
    image.putpixel((5, 5), (1, 2, 3))
    return image


def _decode_data_url(url: str) -> Image.Image:
    header, data = url.split(",", 1)
    assert header == "data:image/png;base64"
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_ground_sends_image_and_prompt() -> None:
    model = make_model("<ref>the OK button</ref><box>[[100, 200, 300, 400]]</box>")
    image = _image()
    result = ground(model, image, "the OK button")

    [messages] = model.received
    [message] = messages
    image_blocks = [b for b in message.content if b["type"] == "image_url"]
    text_blocks = [b for b in message.content if b["type"] == "text"]
    assert message.content[0]["type"] == "image_url"  # image before the question
    assert len(image_blocks) == 1
    sent = _decode_data_url(image_blocks[0]["image_url"]["url"])
    assert sent.size == image.size
    assert sent.convert("RGB").getpixel((5, 5)) == (1, 2, 3)
    assert [b["text"] for b in text_blocks] == [
        GROUNDING_PROMPT.format(description="the OK button")
    ]
    assert "<ref>the OK button</ref>" in text_blocks[0]["text"]

    assert result.ok
    assert result.description == "the OK button"
    assert result.image_size == (320, 200)
    assert result.boxes_norm == [(100, 200, 300, 400)]
    assert result.point == (64, 60)


def test_ground_custom_prompt_and_invoke_kwargs() -> None:
    model = make_model("<box>[[1, 2, 3, 4]]</box>")
    ground(model, _image(), "search field", prompt=GUI_GROUNDING_PROMPT, stop=["</box>"])
    text = model.received[0][0].content[1]["text"]
    assert text == GUI_GROUNDING_PROMPT.format(description="search field")
    assert model.kwargs_seen[0]["stop"] == ["</box>"]  # invoke kwargs reach the model


def test_ground_content_blocks_reply() -> None:
    reply = [
        {"type": "text", "text": "<ref>a</ref>"},
        {"type": "text", "text": "<box>[[1, 2, 3, 4]]</box>"},
    ]
    result = ground(make_model(reply), _image(), "a")
    assert result.boxes_norm == [(1, 2, 3, 4)]
    assert result.raw_text == "<ref>a</ref><box>[[1, 2, 3, 4]]</box>"


def test_ground_unparseable_output_sets_error() -> None:
    result = ground(make_model("I don't see it."), _image(), "a unicorn")
    assert not result.ok
    assert result.point is None
    assert result.raw_text == "I don't see it."
    assert result.error is not None and "no <box>" in result.error


def test_ground_empty_box_sets_error() -> None:
    result = ground(make_model("<ref>a</ref><box></box>"), _image(), "a")
    assert not result.ok
    assert result.error is not None and "<box>" in result.error and "no readable" in result.error


def test_ground_empty_output_sets_error() -> None:
    result = ground(make_model(""), _image(), "a")
    assert result.error == "the model output is empty"


def test_ground_model_errors_propagate() -> None:
    with pytest.raises(ConnectionError):
        ground(make_model("", fail=True), _image(), "a")


def test_ground_rejects_empty_description() -> None:
    with pytest.raises(ConfigurationError):
        ground(make_model("<box>[[1, 2, 3, 4]]</box>"), _image(), "  ")


def test_ground_rejects_non_image() -> None:
    with pytest.raises(ImageInputError):
        ground(make_model("<box>[[1, 2, 3, 4]]</box>"), b"png bytes", "a")  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "CMYK", "I;16"])
def test_ground_accepts_image_modes(mode: str) -> None:
    model = make_model("<box>[[0, 0, 1000, 1000]]</box>")
    result = ground(model, Image.new(mode, (16, 9)), "all")
    assert result.box == (0, 0, 16, 9)
    assert _decode_data_url(model.received[0][0].content[0]["image_url"]["url"]).size == (16, 9)


async def test_aground() -> None:
    model = make_model("<box>[[500, 500, 500, 500]]</box>")
    result = await aground(model, _image((100, 100)), "centre")
    assert result.point == (50, 50)
    assert model.received[0][0].content[1]["text"].endswith("<ref>centre</ref>")


# --- draw_box ----------------------------------------------------------------------------


def test_draw_box_marks_box_and_point() -> None:
    image = Image.new("RGB", (200, 100), "white")
    result = GroundingResult("x", "", [(100, 200, 500, 800)], image.size)
    drawn = draw_box(image, result)

    assert drawn is not image
    assert image.getpixel((20, 50)) == (255, 255, 255)  # the input is untouched
    assert drawn.size == image.size
    assert drawn.getpixel((20, 50)) != (255, 255, 255)  # left edge of the box at x=20
    assert drawn.getpixel((60, 20)) != (255, 255, 255)  # top edge at y=20
    assert drawn.getpixel(result.point) == (230, 0, 0)  # red crosshair at the centre
    assert drawn.getpixel((150, 50)) == (255, 255, 255)  # outside the box


def test_draw_box_without_box_is_a_plain_copy() -> None:
    image = Image.new("L", (30, 30), 128)
    drawn = draw_box(image, GroundingResult("x", "", [], image.size, error="none"))
    assert drawn.mode == "RGB"
    assert drawn.getcolors() == [(900, (128, 128, 128))]


def test_draw_box_full_image_box_is_visible() -> None:
    image = Image.new("RGB", (50, 40), "white")
    drawn = draw_box(image, GroundingResult("x", "", [(0, 0, 1000, 1000)], image.size))
    assert drawn.getpixel((49, 39)) != (255, 255, 255)  # right/bottom edges drawn inside


def test_draw_box_marks_pixel_box_and_point_with_halos() -> None:
    """The run record's marked screenshot: a target point and a box, in image pixels."""
    image = Image.new("RGB", (400, 300), (240, 240, 240))
    drawn = draw_box(image, box=(20, 30, 120, 90), point=(200, 150))
    r, g, b = drawn.getpixel((200 + 13, 150))  # on the crosshair, beside the centre
    assert r > 200 and g < 60 and b < 60
    assert drawn.getpixel((200 + 13, 152)) == (255, 255, 255)  # its white halo
    assert drawn.getpixel((70, 31)) == (255, 176, 0)  # the box's amber top edge
    assert drawn.getpixel((70, 30)) == (0, 0, 0)  # on a black halo
    assert drawn.getpixel((300, 250)) == (240, 240, 240)  # away from both: untouched


def test_draw_box_point_replaces_the_result_centre_and_boxes_add_up() -> None:
    image = Image.new("RGB", (200, 100), "white")
    result = GroundingResult("x", "", [(100, 200, 500, 800)], image.size)
    drawn = draw_box(image, result, box=(150, 60, 190, 90), point=(170, 75))
    assert drawn.getpixel((170, 75)) == (230, 0, 0)
    assert drawn.getpixel(result.point) == (255, 255, 255)  # (60, 50): no crosshair there
    assert drawn.getpixel((20, 50)) != (255, 255, 255)  # the result's box is drawn too


def test_draw_box_survives_a_box_one_pixel_wide() -> None:
    """A grounded point is the box (x, y, x, y): outlined by its halo, never an error."""
    image = Image.new("RGB", (50, 50), "white")
    drawn = draw_box(image, box=(10, 10, 10, 10), point=(10, 10))
    assert drawn.getpixel((10, 10)) == (230, 0, 0)


# --- reply_text ----------------------------------------------------------------------------


class _BrokenText(AIMessage):
    @property
    def text(self) -> str:  # type: ignore[override]
        raise RuntimeError("no text")


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str")


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (AIMessage("<box>[[1, 2, 3, 4]]</box>"), "<box>[[1, 2, 3, 4]]</box>"),
        (AIMessage([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]), "ab"),
        (AIMessage(""), ""),
        ("plain", "plain"),
        (42, "42"),
        (None, "None"),
        (_BrokenText("kept"), "kept"),
        (_Unprintable(), "<unprintable _Unprintable>"),
    ],
)
def test_reply_text_never_raises(reply: Any, expected: str) -> None:
    assert reply_text(reply) == expected

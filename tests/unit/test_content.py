"""Tests for internvl_agent.chat.content: LangChain content -> text and PIL images."""

from __future__ import annotations

import base64
import io
import struct
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from internvl_agent.chat.content import (
    ImageLoadOptions,
    ImagePart,
    TextPart,
    content_to_parts,
    load_image,
)
from internvl_agent.errors import ImageInputError, MessageFormatError

# ----------------------------------------------------------------------------- helpers
from tests.support.http import local_server, without_proxies


def make_image(width: int = 5, height: int = 4) -> Image.Image:
    """An RGB image whose every pixel differs, so any mix-up shows."""
    pixels = np.arange(width * height * 3, dtype=np.uint8).reshape(height, width, 3) * 3
    return Image.fromarray(pixels, "RGB")


def png_bytes(image: Image.Image, **save_kwargs: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **save_kwargs)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def assert_same_pixels(actual: Image.Image, expected: Image.Image) -> None:
    assert actual.mode == "RGB"
    assert actual.size == expected.size
    np.testing.assert_array_equal(np.asarray(actual), np.asarray(expected.convert("RGB")))


def png_claiming_size(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height but whose pixel data is a few bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


IMAGE = make_image()
PNG = png_bytes(IMAGE)
DATA_URL = "data:image/png;base64," + b64(PNG)


@pytest.fixture
def png_path(tmp_path: Path) -> Path:
    path = tmp_path / "picture.png"
    path.write_bytes(PNG)
    return path


# ----------------------------------------------------------------------------- http server


class _Handler(BaseHTTPRequestHandler):
    """Routes: /img.png, /noctype, /page.html, /slow.png, /big-declared, /big-undeclared,
    /redirect (to /img.png) and /loop (redirects to itself)."""

    def do_GET(self) -> None:
        route = self.path
        if route in ("/redirect", "/loop"):
            self.send_response(302)
            self.send_header("Location", "/img.png" if route == "/redirect" else "/loop")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif route == "/img.png":
            self._reply(200, PNG, "image/png")
        elif route == "/noctype":
            self._reply(200, PNG, None)
        elif route == "/page.html":
            self._reply(200, b"<html>not an image</html>", "text/html; charset=utf-8")
        elif route == "/slow.png":
            time.sleep(1.5)
            self._reply(200, PNG, "image/png")
        elif route == "/big-declared":
            self._reply(200, PNG + b"\x00" * 5000, "image/png")
        elif route == "/big-undeclared":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(PNG + b"\x00" * 5000)
        else:
            self._reply(404, b"nope", "text/plain")

    def _reply(self, status: int, body: bytes, content_type: str | None) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # silence test output
        pass


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with local_server(_Handler) as url:
        yield url


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    without_proxies(monkeypatch)


# ----------------------------------------------------------------------------- block forms


def _image_blocks(png_path: Path) -> dict[str, Any]:
    """Every accepted image block form, each carrying IMAGE."""
    data = b64(PNG)
    return {
        "v1 base64": {"type": "image", "base64": data, "mime_type": "image/png"},
        "v1 base64 without mime": {"type": "image", "base64": data},
        "v1 url data": {"type": "image", "url": DATA_URL},
        "v1 url file": {"type": "image", "url": png_path.as_uri()},
        "v1 url path": {"type": "image", "url": str(png_path)},
        "path key": {"type": "image", "path": str(png_path)},
        "v0 base64": {
            "type": "image",
            "source_type": "base64",
            "data": data,
            "mime_type": "image/png",
        },
        "v0 url": {"type": "image", "source_type": "url", "url": DATA_URL},
        "anthropic base64": {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": data},
        },
        "anthropic url": {"type": "image", "source": {"type": "url", "url": DATA_URL}},
        "openai dict": {"type": "image_url", "image_url": {"url": DATA_URL, "detail": "high"}},
        "openai str": {"type": "image_url", "image_url": DATA_URL},
        "responses input_image": {"type": "input_image", "image_url": DATA_URL},
        "pil": {"type": "image", "image": IMAGE.copy()},
        "v1 file": {"type": "file", "base64": data, "mime_type": "image/png"},
        "v0 file": {
            "type": "file",
            "source_type": "base64",
            "data": data,
            "mime_type": "image/png",
        },
        "file by path url": {"type": "file", "url": str(png_path)},
        "openai file": {"type": "file", "file": {"file_data": DATA_URL, "filename": "a.png"}},
        "non_standard wrapping image": {
            "type": "non_standard",
            "value": {"type": "image_url", "image_url": {"url": DATA_URL}},
        },
        "base64 key holding a data URL": {"type": "image", "base64": DATA_URL},
        "url-safe base64 without padding": {
            "type": "image",
            "base64": base64.urlsafe_b64encode(PNG).decode().rstrip("="),
            "mime_type": "image/png",
        },
        "base64 with line breaks": {
            "type": "image",
            "base64": "\n".join(data[i : i + 76] for i in range(0, len(data), 76)),
            "mime_type": "image/png",
        },
    }


FORM_NAMES = list(_image_blocks(Path("/unused.png")))


@pytest.mark.parametrize("form", FORM_NAMES)
def test_every_image_block_form_yields_the_image(form: str, png_path: Path) -> None:
    block = _image_blocks(png_path)[form]
    parts = content_to_parts([block], where="messages[0]")
    assert len(parts) == 1
    assert isinstance(parts[0], ImagePart)
    assert_same_pixels(parts[0].image, IMAGE)


def test_http_url_block_forms(server_url: str) -> None:
    url = f"{server_url}/img.png"
    blocks = [
        {"type": "image", "url": url},
        {"type": "image", "source_type": "url", "url": url},
        {"type": "image_url", "image_url": {"url": url}},
        {"type": "image_url", "image_url": url},
        {"type": "file", "url": url},
    ]
    parts = content_to_parts(blocks, where="m")
    assert len(parts) == len(blocks)
    for part in parts:
        assert isinstance(part, ImagePart)
        assert_same_pixels(part.image, IMAGE)
        assert part.source == url


def test_plain_string_content() -> None:
    assert content_to_parts("hello", where="m") == [TextPart("hello")]
    assert content_to_parts("", where="m") == []


def test_text_and_images_keep_their_order() -> None:
    content = [
        "first",
        {"type": "text", "text": "second"},
        {"type": "image", "base64": b64(PNG), "mime_type": "image/png"},
        {"type": "input_text", "text": "third"},
        {"type": "reasoning", "reasoning": "hidden thoughts"},
        {"type": "image_url", "image_url": {"url": DATA_URL}},
        {"type": "text-plain", "mime_type": "text/plain", "text": "fourth"},
        "",
    ]
    parts = content_to_parts(content, where="m")
    kinds = [p.text if isinstance(p, TextPart) else "IMG" for p in parts]
    assert kinds == ["first", "second", "IMG", "third", "IMG", "fourth"]


@pytest.mark.parametrize(
    "block",
    [
        {"type": "reasoning", "reasoning": "x"},
        {"type": "thinking", "thinking": "x"},
        {"type": "redacted_thinking", "data": "x"},
        {"type": "tool_call", "id": "1", "name": "f", "args": {}},
        {"type": "tool_call_chunk", "id": "1", "name": "f", "args": "{"},
        {"type": "invalid_tool_call", "id": "1", "name": "f", "args": "{", "error": "bad"},
        {"type": "server_tool_call", "id": "1", "name": "web", "args": {}},
        {"type": "server_tool_call_chunk", "name": "web"},
        {"type": "server_tool_result", "tool_call_id": "1", "status": "success"},
        {"type": "tool_use", "id": "1", "name": "f", "input": {}},
        {"type": "non_standard", "value": {"type": "provider_thing", "x": 1}},
    ],
    ids=lambda block: block["type"] + ("-" + block["value"]["type"] if "value" in block else ""),
)
def test_blocks_without_model_input_are_skipped(block: dict[str, Any]) -> None:
    assert content_to_parts(["a", block, "b"], where="m") == [TextPart("a"), TextPart("b")]


def test_langchain_messages_round_trip() -> None:
    """Content as stored on real LangChain messages (incl. content_blocks) converts."""
    from langchain_core.messages import AIMessage, HumanMessage

    human = HumanMessage(
        content=[
            {"type": "text", "text": "look"},
            {"type": "image", "base64": b64(PNG), "mime_type": "image/png"},
        ]
    )
    ai = AIMessage(
        content=[{"type": "text", "text": "ok"}],
        tool_calls=[{"name": "f", "args": {}, "id": "c1"}],
    )
    for message in (human, ai):
        direct = content_to_parts(message.content, where="m")
        via_blocks = content_to_parts(list(message.content_blocks), where="m")
        assert [type(p) for p in direct] == [type(p) for p in via_blocks]
    assert content_to_parts(ai.content_blocks, where="m") == [TextPart("ok")]


# ----------------------------------------------------------------------------- image handling


def test_transparency_is_composited_on_white() -> None:
    rgba = Image.new("RGBA", (2, 1))
    rgba.putpixel((0, 0), (255, 0, 0, 0))  # fully transparent red
    rgba.putpixel((1, 0), (0, 0, 255, 255))  # opaque blue
    part = load_image(png_bytes(rgba))
    assert part.image.mode == "RGB"
    assert part.image.getpixel((0, 0)) == (255, 255, 255)
    assert part.image.getpixel((1, 0)) == (0, 0, 255)


def test_palette_transparency_is_composited_on_white() -> None:
    palette = Image.new("P", (2, 1))
    palette.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    palette.putpixel((0, 0), 0)
    palette.putpixel((1, 0), 1)
    part = load_image(png_bytes(palette, transparency=0))
    assert part.image.getpixel((0, 0)) == (255, 255, 255)
    assert part.image.getpixel((1, 0)) == (0, 255, 0)


def test_grayscale_becomes_rgb() -> None:
    part = load_image(Image.new("L", (2, 2), 77))
    assert part.image.mode == "RGB"
    assert part.image.getpixel((1, 1)) == (77, 77, 77)


def test_exif_orientation_is_applied() -> None:
    wide = make_image(6, 2)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    part = load_image(png_bytes(wide, exif=exif))
    assert part.image.size == (2, 6)
    assert_same_pixels(part.image, wide.transpose(Image.Transpose.ROTATE_270))


def test_pil_input_is_not_mutated() -> None:
    original = Image.new("RGBA", (2, 2), (10, 20, 30, 0))
    part = load_image(original)
    assert original.mode == "RGBA"
    assert part.image is not original
    assert part.source == "PIL image 2x2 RGBA"


def test_sources_describe_without_payload(png_path: Path) -> None:
    part = content_to_parts(
        [{"type": "image", "base64": b64(PNG), "mime_type": "image/png"}], where="m"
    )[0]
    assert isinstance(part, ImagePart)
    assert part.source.startswith("base64 image/png (")
    assert b64(PNG)[:20] not in part.source
    assert load_image(DATA_URL).source.startswith("data URL image/png (")
    assert load_image(png_path).source == str(png_path)
    assert load_image(PNG).source.startswith("image bytes (")


def test_load_image_accepts_pathlike_str_and_file_url(png_path: Path) -> None:
    for source in (png_path, str(png_path), png_path.as_uri(), "file://localhost" + str(png_path)):
        assert_same_pixels(load_image(source).image, IMAGE)


def test_percent_encoded_data_url() -> None:
    from urllib.parse import quote_from_bytes

    part = load_image("data:image/png," + quote_from_bytes(PNG))
    assert_same_pixels(part.image, IMAGE)


# ----------------------------------------------------------------------------- errors


def _error(content: Any, options: ImageLoadOptions | None = None) -> str:
    """The message of the error content_to_parts raises (must be ImageInputError)."""
    with pytest.raises(ImageInputError) as info:
        content_to_parts(
            content, where="messages[3] (human)", options=options or ImageLoadOptions()
        )
    return str(info.value)


def test_corrupt_base64_names_location() -> None:
    bad = {"type": "image", "base64": "%%%not*base64", "mime_type": "image/png"}
    message = _error(["intro", bad])
    assert "messages[3] (human)" in message
    assert "content block 1" in message
    assert "not valid base64" in message


def test_bytes_that_are_not_an_image() -> None:
    message = _error([{"type": "image", "base64": b64(b"hello world, not a picture")}])
    assert "content block 0" in message
    assert "cannot be decoded as an image (PIL:" in message


def test_truncated_image_data_is_reported() -> None:
    big_png = png_bytes(make_image(64, 64))
    message = _error([{"type": "image", "base64": b64(big_png[: len(big_png) // 2])}])
    assert "cannot be decoded as an image (PIL:" in message


def test_non_image_data_url_mime_is_rejected() -> None:
    message = _error([{"type": "image_url", "image_url": {"url": "data:text/plain;base64,aGk="}}])
    assert "'text/plain'" in message
    assert "not an image" in message


def test_pixel_limit_checked_before_decoding() -> None:
    # The IHDR claims 8000x8000 (64 Mpx, over the 50 Mpx default); the pixel data is a few
    # bytes, so decoding would fail with a different error: the limit must be checked first.
    bomb = png_claiming_size(8000, 8000)
    message = _error([{"type": "image", "base64": b64(bomb), "mime_type": "image/png"}])
    assert "8000x8000" in message
    assert "50000000" in message
    assert "ImageLoadOptions.max_pixels" in message


def test_pixel_limit_option_is_honoured() -> None:
    with pytest.raises(ImageInputError, match=r"5x4 = 20 pixels.*limit of 19"):
        load_image(PNG, ImageLoadOptions(max_pixels=19))
    with pytest.raises(ImageInputError, match="limit of 19"):
        load_image(IMAGE, ImageLoadOptions(max_pixels=19))
    assert load_image(PNG, ImageLoadOptions(max_pixels=20)).image.size == (5, 4)


def test_pil_decompression_bomb_error_is_wrapped() -> None:
    # 40000x40000 is over twice PIL's own MAX_IMAGE_PIXELS, so Image.open itself refuses.
    bomb = png_claiming_size(40_000, 40_000)
    with pytest.raises(ImageInputError, match=r"too large to decode safely.*MAX_IMAGE_PIXELS"):
        load_image(bomb, ImageLoadOptions(max_pixels=10**12))


def test_byte_limit() -> None:
    limit = len(PNG) - 1
    expected = rf"larger than the limit of {limit} bytes.*max_bytes"
    with pytest.raises(ImageInputError, match=expected):
        load_image(PNG, ImageLoadOptions(max_bytes=limit))
    assert load_image(PNG, ImageLoadOptions(max_bytes=len(PNG))).image.size == (5, 4)
    big_b64 = {"type": "image", "base64": "A" * 8000, "mime_type": "image/png"}
    message = _error([big_b64], ImageLoadOptions(max_bytes=10))
    assert "ImageLoadOptions.max_bytes" in message


@pytest.mark.parametrize(
    ("block", "fragments"),
    [
        ({"type": "audio", "base64": "AAAA", "mime_type": "audio/wav"}, ["'audio'", "supported"]),
        ({"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}}, ["input_audio"]),
        ({"type": "mystery"}, ["'mystery'", "not supported"]),
        ({"text": "no type"}, ["no 'type' key"]),
        ({"type": "file", "base64": "JVBERi0=", "mime_type": "application/pdf"}, ["pdf"]),
        ({"type": "file", "url": "https://x/report.pdf"}, ["application/pdf"]),
        ({"type": "image", "file_id": "file-123"}, ["file id"]),
        ({"type": "image", "source_type": "id", "id": "file-123"}, ["file id"]),
        ({"type": "image"}, ["no image data"]),
        ({"type": "image", "image": "not a PIL image"}, ["PIL.Image.Image"]),
        ({"type": "image_url", "image_url": {"detail": "low"}}, ["image_url"]),
        ({"type": "text", "text": 5}, ["'text' must be a str"]),
        ({"type": "text-plain", "url": "https://x/a.txt"}, ["plain-text"]),
    ],
)
def test_unsupported_blocks(block: dict[str, Any], fragments: list[str]) -> None:
    with pytest.raises(MessageFormatError) as info:
        content_to_parts(["ok", block], where="messages[7] (tool)")
    message = str(info.value)
    assert "messages[7] (tool), content block 1" in message
    for fragment in fragments:
        assert fragment in message


def test_bad_items_and_content() -> None:
    with pytest.raises(MessageFormatError, match="wrap it as"):
        content_to_parts([IMAGE], where="m")
    with pytest.raises(MessageFormatError, match=r"content block 0.*not int"):
        content_to_parts([3], where="m")
    with pytest.raises(MessageFormatError, match="m: content must be a str or a list"):
        content_to_parts({"type": "text"}, where="m")  # type: ignore[arg-type]


def test_missing_file_and_disabled_local_files(png_path: Path, tmp_path: Path) -> None:
    with pytest.raises(ImageInputError, match="does not exist"):
        load_image(tmp_path / "absent.png")
    with pytest.raises(ImageInputError, match="allow_local_files=False"):
        load_image(png_path, ImageLoadOptions(allow_local_files=False))
    message = _error(
        [{"type": "image", "url": png_path.as_uri()}], ImageLoadOptions(allow_local_files=False)
    )
    assert "allow_local_files=False" in message


def test_remote_file_url_host_and_unknown_scheme() -> None:
    with pytest.raises(ImageInputError, match="names host 'server'"):
        load_image("file://server/share/a.png")
    with pytest.raises(ImageInputError, match="unsupported scheme 'gs'"):
        load_image("gs://bucket/a.png")


def test_raw_base64_string_gets_a_hint() -> None:
    with pytest.raises(ImageInputError, match="looks like raw base64") as info:
        load_image(b64(PNG) * 4)
    assert b64(PNG)[:40] not in str(info.value)


def test_unsupported_source_type() -> None:
    with pytest.raises(ImageInputError, match="cannot load an image from a int"):
        load_image(42)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- http


def test_http_fetch_success(server_url: str) -> None:
    part = load_image(f"{server_url}/img.png")
    assert_same_pixels(part.image, IMAGE)
    assert part.source == f"{server_url}/img.png"


def test_http_without_content_type_is_decoded(server_url: str) -> None:
    assert_same_pixels(load_image(f"{server_url}/noctype").image, IMAGE)


def test_http_404(server_url: str) -> None:
    url = f"{server_url}/missing.png"
    message = _error([{"type": "image_url", "image_url": {"url": url}}])
    assert "content block 0" in message
    assert url in message
    assert "HTTP 404" in message
    assert "base64" in message


def test_http_timeout(server_url: str) -> None:
    url = f"{server_url}/slow.png"
    started = time.monotonic()
    with pytest.raises(ImageInputError) as info:
        load_image(url, ImageLoadOptions(fetch_timeout=0.3))
    assert time.monotonic() - started < 1.4
    message = str(info.value)
    assert url in message
    assert "timed out" in message
    assert "fetch_timeout" in message


@pytest.mark.parametrize("route", ["/big-declared", "/big-undeclared"])
def test_http_oversize(server_url: str, route: str) -> None:
    url = f"{server_url}{route}"
    with pytest.raises(ImageInputError, match="max_bytes") as info:
        load_image(url, ImageLoadOptions(max_bytes=len(PNG) + 100))
    assert url in str(info.value)


def test_http_non_image_content_type(server_url: str) -> None:
    with pytest.raises(ImageInputError, match=r"'text/html', not an image") as info:
        load_image(f"{server_url}/page.html")
    assert f"{server_url}/page.html" in str(info.value)


def test_http_connection_refused() -> None:
    import socket

    with socket.socket() as probe:  # find a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ImageInputError, match=r"failed.*pass it as base64"):
        load_image(f"http://127.0.0.1:{port}/a.png", ImageLoadOptions(fetch_timeout=2))


def test_remote_disabled(server_url: str) -> None:
    message = _error(
        [{"type": "image", "url": f"{server_url}/img.png"}],
        ImageLoadOptions(allow_remote=False),
    )
    assert "allow_remote=False" in message
    assert "disabled" in message


def test_http_redirects_are_followed_up_to_a_limit(server_url: str) -> None:
    assert_same_pixels(load_image(f"{server_url}/redirect").image, IMAGE)
    with pytest.raises(ImageInputError, match=r"failed.*redirects.*pass it as base64"):
        load_image(f"{server_url}/loop")


def test_an_rgb_pil_image_is_used_as_is() -> None:
    picture = Image.new("RGB", (20, 20), "red")
    part = content_to_parts([{"type": "image", "image": picture}], where="m")[0]
    assert part.image is picture  # no copy: a frozen screenshot keeps its remembered key


def test_a_converted_copy_of_a_frozen_image_is_frozen() -> None:
    from internvl_agent.engine.images import freeze_image, is_frozen

    picture = freeze_image(Image.new("RGBA", (4, 4), (1, 2, 3, 255)))
    part = content_to_parts([{"type": "image", "image": picture}], where="m")[0]
    assert part.image is not picture and part.image.mode == "RGB" and is_frozen(part.image)
    unfrozen = content_to_parts([{"type": "image", "image": picture.copy()}], where="m")[0]
    assert not is_frozen(unfrozen.image)

"""Turn LangChain message content into text parts and decoded PIL images.

`content_to_parts` accepts every content form LangChain produces or passes through:

Text
    * a plain ``str`` content, or ``str`` items of a content list;
    * ``{"type": "text", "text": ...}`` (also OpenAI Responses ``"input_text"``);
    * ``{"type": "text-plain", "text": ...}`` (v1 plain-text document, its text is used).

Images (all decoded, EXIF-rotated and converted to RGB)
    * v1 ``{"type": "image", "base64": ..., "mime_type": ...}``;
    * v1 ``{"type": "image", "url": ...}`` where the URL is ``http(s)://``, ``data:``,
      ``file://`` or a plain local path (``{"type": "image", "path": ...}`` works too);
    * v0 ``{"type": "image", "source_type": "base64", "data": ..., "mime_type": ...}`` and
      ``{"type": "image", "source_type": "url", "url": ...}``;
    * Anthropic ``{"type": "image", "source": {"type": "base64" | "url", ...}}``;
    * OpenAI ``{"type": "image_url", "image_url": {"url": ..., "detail": ...}}`` and
      ``{"type": "image_url", "image_url": "https://..."}`` (``detail`` is ignored), and
      OpenAI Responses ``{"type": "input_image", "image_url": ...}``;
    * this package's extension ``{"type": "image", "image": <PIL.Image.Image>}``;
    * ``{"type": "file", ...}`` (v1, v0 or OpenAI ``{"file": {"file_data": "data:..."}}``)
      whose MIME type is ``image/*``; other files are rejected.

Videos (sampled as the model cards do, see chat/video.py; decoding needs the ``video`` extra)
    * v1 ``{"type": "video", "base64": ..., "mime_type": "video/mp4"}``;
    * v1 ``{"type": "video", "url": ...}`` (``http(s)://`` with the image limits: the same
      ``fetch_timeout`` and ``max_bytes``; ``data:``; ``file://`` or a local path) and
      ``{"type": "video", "path": ...}``; v0 ``source_type`` forms as for images;
    * ``{"type": "video_url", "video_url": {"url": ...}}`` (vLLM's form) and ``file`` blocks
      whose MIME type is ``video/*``;
    * this package's explicit frames ``{"type": "video", "frames": [...]}``: PIL images, image
      blocks or image paths/URLs, used as given (no sampling);
    * optional keys: ``num_segments`` (frames to sample, else `VideoOptions.num_segments`) and
      ``start`` / ``end`` (seconds; the cards' ``bound``).

Skipped (they carry nothing the model should see as input; tool calls are rendered from
``AIMessage.tool_calls`` elsewhere)
    * ``reasoning``, ``thinking``, ``redacted_thinking``;
    * ``tool_call``, ``tool_call_chunk``, ``invalid_tool_call``, ``server_tool_call``,
      ``server_tool_call_chunk``, ``server_tool_result`` and Anthropic ``tool_use``;
    * ``non_standard`` blocks, unless their ``value`` is itself a supported text or image
      block, which is then used.

Everything else (``audio``, ``input_audio``, unknown types, provider file ids) raises
`MessageFormatError`. Image problems raise `ImageInputError`, video problems
`VideoInputError` (a missing PyAV: `ConfigurationError` naming the extra).
"""

from __future__ import annotations

import base64
import binascii
import io
import mimetypes
import os
import re
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from internvl_agent.chat.video import VideoOptions, check_num_segments, decode_video
from internvl_agent.engine.images import freeze_image, is_frozen, to_rgb
from internvl_agent.errors import (
    ConfigurationError,
    ImageInputError,
    MessageFormatError,
    VideoInputError,
)

__all__ = [
    "ContentPart",
    "ImageLoadOptions",
    "ImagePart",
    "TextPart",
    "VideoPart",
    "content_to_parts",
    "load_image",
]

USER_AGENT = "internvl-agent (Python httpx)"
MAX_REDIRECTS = 5
_READ_CHUNK = 64 * 1024
_URL_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")
_WINDOWS_DRIVE = re.compile(r"^[a-zA-Z]:[\\/]")
_BASE64_LOOKING = re.compile(r"^[A-Za-z0-9+/=_\-\s]+$")
_GENERIC_BINARY_TYPES = frozenset({"application/octet-stream", "binary/octet-stream"})

_TEXT_TYPES = frozenset({"text", "input_text", "text-plain"})
_IMAGE_TYPES = frozenset({"image", "image_url", "input_image"})
_VIDEO_TYPES = frozenset({"video", "video_url"})
_SKIPPED_TYPES = frozenset(
    {
        "reasoning",
        "thinking",
        "redacted_thinking",
        "tool_call",
        "tool_call_chunk",
        "invalid_tool_call",
        "server_tool_call",
        "server_tool_call_chunk",
        "server_tool_result",
        "tool_use",
    }
)
_SUPPORTED_HELP = (
    "supported block types are 'text', 'image' (base64, url, path or a PIL image under "
    "'image'), 'image_url', 'input_image', 'video' (base64, url, path or 'frames'), "
    "'video_url' and 'file' with an image/* or video/* MIME type; reasoning and tool-call "
    "blocks are skipped"
)


@dataclass
class TextPart:
    """A run of text from the message content."""

    text: str


@dataclass
class ImagePart:
    """A decoded image: `image` is fully loaded RGB; `source` describes where it came from."""

    image: Image.Image
    source: str


@dataclass
class VideoPart:
    """A video as its frames (RGB; sampled ones are frozen), in order; `indices` are the frame
    numbers sampled from the video (0..n-1 for frames given explicitly)."""

    frames: list[Image.Image]
    source: str
    indices: list[int]


ContentPart = TextPart | ImagePart | VideoPart


@dataclass(frozen=True)
class ImageLoadOptions:
    """Limits and permissions for loading images."""

    max_pixels: int = 50_000_000
    """Largest accepted width*height (decompression-bomb guard), checked before decoding."""
    max_bytes: int = 20 * 1024 * 1024
    """Largest accepted encoded size: download, file or decoded base64."""
    fetch_timeout: float = 10.0
    """Seconds allowed for a whole http(s) fetch (redirects, at most 5, included)."""
    allow_remote: bool = True
    """Whether http(s) URLs may be fetched."""
    allow_local_files: bool = True
    """Whether local paths and file:// URLs may be read."""


_DEFAULT_OPTIONS = ImageLoadOptions()
_DEFAULT_VIDEO = VideoOptions()


# --------------------------------------------------------------------------- helpers


def _human_size(n_bytes: int) -> str:
    """Format a byte count for messages, e.g. '12 KB'."""
    if n_bytes < 1024:
        return f"{n_bytes} B"
    if n_bytes < 1024 * 1024:
        return f"{n_bytes / 1024:.0f} KB"
    return f"{n_bytes / (1024 * 1024):.1f} MB"


def _short(text: str, limit: int = 120) -> str:
    """Truncate a string for use in an error message."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fetch_hint(kind: str) -> str:
    return f"download the {kind} yourself and pass it as base64 or a local file"


_EXAMPLE_FORMATS = {"image": "PNG, JPEG, WebP, ...", "video": "MP4, WebM, MKV, ..."}


def _check_mime(mime_type: str | None, source: str, kind: str = "image") -> None:
    """Reject a declared MIME type that is neither `kind`/* nor generic binary."""
    if not mime_type:
        return
    mime = mime_type.split(";", 1)[0].strip().lower()
    if mime.startswith(f"{kind}/") or mime in _GENERIC_BINARY_TYPES:
        return
    article = "an" if kind == "image" else "a"
    raise ImageInputError(
        f"{source} has MIME type {mime!r}, not {article} {kind}/* type; pass {article} {kind} "
        f"({_EXAMPLE_FORMATS[kind]}) instead"
    )


def _check_size(n_bytes: int, source: str, options: ImageLoadOptions, kind: str = "image") -> None:
    """Reject encoded data over `options.max_bytes`."""
    if n_bytes > options.max_bytes:
        raise ImageInputError(
            f"{source} is larger than the limit of {options.max_bytes} bytes "
            f"({_human_size(options.max_bytes)}); pass a smaller {kind} or raise "
            "ImageLoadOptions.max_bytes"
        )


# --------------------------------------------------------------------------- decoding


def _open_lazily(data: bytes, source: str) -> Image.Image:
    """Open image data without decoding pixels; PIL's own bomb guard may fire here."""
    try:
        return Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageInputError(
            f"{source} is too large to decode safely (PIL: {exc}); if you trust it, raise "
            "PIL.Image.MAX_IMAGE_PIXELS and ImageLoadOptions.max_pixels"
        ) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageInputError(f"{source} cannot be decoded as an image (PIL: {exc})") from exc


def _check_pixels(image: Image.Image, source: str, options: ImageLoadOptions) -> None:
    """Reject an image whose width*height exceeds `options.max_pixels`."""
    width, height = image.size
    if width * height > options.max_pixels:
        raise ImageInputError(
            f"{source} is {width}x{height} = {width * height} pixels, over the limit of "
            f"{options.max_pixels} pixels; downscale it or raise ImageLoadOptions.max_pixels"
        )


def _load_pixels(image: Image.Image, source: str) -> None:
    """Decode the pixel data of a lazily opened image."""
    try:
        image.load()
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageInputError(f"{source} cannot be decoded as an image (PIL: {exc})") from exc


def _apply_exif_orientation(image: Image.Image) -> Image.Image:
    """Rotate/flip per the EXIF orientation tag (the image itself when there is nothing to do);
    a malformed tag is ignored."""
    try:
        if image.getexif().get(ExifTags.Base.Orientation, 1) not in range(2, 9):
            return image
        return ImageOps.exif_transpose(image)
    except (OSError, ValueError, KeyError, TypeError, SyntaxError):
        return image


def _finish(image: Image.Image, source: str) -> ImagePart:
    """Orient and convert a loaded image into an `ImagePart`."""
    return ImagePart(image=to_rgb(_apply_exif_orientation(image)), source=source)


def _decode_bytes(data: bytes, source: str, options: ImageLoadOptions) -> ImagePart:
    """Decode encoded image bytes, checking byte and pixel limits before decoding pixels."""
    _check_size(len(data), source, options)
    image = _open_lazily(data, source)
    _check_pixels(image, source, options)
    _load_pixels(image, source)
    return _finish(image, source)


def _from_pil(image: Image.Image, options: ImageLoadOptions) -> ImagePart:
    """Accept an in-memory PIL image (loading it if it is still lazy).

    An RGB image without EXIF rotation is used as is (no copy); a converted copy of a frozen
    image (see `freeze_image`) is frozen too.
    """
    source = f"PIL image {image.width}x{image.height} {image.mode}"
    _check_pixels(image, source, options)
    _load_pixels(image, source)
    part = _finish(image, source)
    if part.image is not image and is_frozen(image):
        freeze_image(part.image)
    return part


# --------------------------------------------------------------------------- sources


def _compact_base64(data: str) -> str:
    """Normalise base64 text: drop whitespace, map URL-safe characters, restore padding."""
    compact = "".join(data.split()).replace("-", "+").replace("_", "/")
    return compact + "=" * (-len(compact) % 4)


def _decode_base64_text(data: str, label: str) -> bytes:
    """Decode standard or URL-safe base64, tolerating whitespace and missing padding."""
    try:
        return base64.b64decode(_compact_base64(data), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageInputError(f"{label} data is not valid base64 ({exc})") from exc


def _load_base64(data: str | bytes, mime_type: str | None, options: ImageLoadOptions) -> ImagePart:
    """Load an image from a base64 payload (a data: URL is accepted too)."""
    if isinstance(data, bytes):
        data = data.decode("ascii", errors="replace")
    if not isinstance(data, str):
        raise ImageInputError(f"base64 image data must be a str, not {type(data).__name__}")
    if data.startswith("data:"):
        return _load_data_url(data, options)
    label = f"base64 {mime_type or 'image'}"
    _check_mime(mime_type, label)
    # Reject oversize data before decoding it: n base64 characters hold at most 3n/4 bytes.
    estimate = len(data) * 3 // 4
    if estimate > options.max_bytes + 1024:
        _check_size(estimate, f"{label} (about {_human_size(estimate)})", options)
    raw = _decode_base64_text(data, label)
    return _decode_bytes(raw, f"{label} ({_human_size(len(raw))})", options)


def _parse_data_url(url: str) -> tuple[str, bool, str]:
    """Split 'data:<mime>[;params][;base64],<payload>' into (mime, is_base64, payload)."""
    header, sep, payload = url[len("data:") :].partition(",")
    if not sep:
        raise ImageInputError("data URL has no ',' separating its header from its data")
    params = [p.strip() for p in header.split(";")]
    is_base64 = any(p.lower() == "base64" for p in params[1:])
    return params[0], is_base64, payload


def _load_data_url(url: str, options: ImageLoadOptions) -> ImagePart:
    """Load an image from a data: URL (base64 or percent-encoded)."""
    mime_type, is_base64, payload = _parse_data_url(url)
    label = f"data URL {mime_type or 'image'}"
    _check_mime(mime_type, label)
    if is_base64:
        raw = _decode_base64_text(payload, label)
    else:
        raw = urllib.parse.unquote_to_bytes(payload)
    return _decode_bytes(raw, f"{label} ({_human_size(len(raw))})", options)


def _read_capped(
    response: httpx.Response, url: str, options: ImageLoadOptions, kind: str = "image"
) -> bytes:
    """The body of a streamed response, stopping once it exceeds `options.max_bytes`."""
    deadline = time.monotonic() + options.fetch_timeout
    chunks: list[bytes] = []
    received = 0
    for chunk in response.iter_bytes(_READ_CHUNK):
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout(f"reading {url} took too long")
        received += len(chunk)
        _check_size(received, f"{kind} at {url}", options, kind)
        chunks.append(chunk)
    return b"".join(chunks)


def _http_get(url: str, options: ImageLoadOptions, kind: str = "image") -> tuple[bytes, str | None]:
    """GET `url` (redirects followed); return (body, Content-Type) within size and time limits."""
    with (
        httpx.Client(
            headers={"User-Agent": USER_AGENT, "Accept": f"{kind}/*"},
            timeout=options.fetch_timeout,
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
        ) as client,
        client.stream("GET", url) as response,
    ):
        response.raise_for_status()
        content_type = response.headers.get("Content-Type")
        length = response.headers.get("Content-Length")
        if length and length.isdigit():
            _check_size(int(length), f"{kind} at {url}", options, kind)
        return _read_capped(response, url, options, kind), content_type


def _fetch_bytes(url: str, options: ImageLoadOptions, kind: str = "image") -> bytes:
    """Download an http(s) URL of an image (or video) within the options' limits."""
    source = _short(url, 200)
    if not options.allow_remote:
        raise ImageInputError(
            f"fetching remote {kind}s is disabled (ImageLoadOptions.allow_remote=False), so "
            f"{source} cannot be loaded; {_fetch_hint(kind)}"
        )
    try:
        body, content_type = _http_get(url, options, kind)
    except httpx.HTTPStatusError as exc:
        status = exc.response
        raise ImageInputError(
            f"fetching {source} failed: HTTP {status.status_code} {status.reason_phrase}; "
            f"check the URL or {_fetch_hint(kind)}"
        ) from exc
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        outcome = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
        raise ImageInputError(
            f"fetching {source} {outcome} ({exc or type(exc).__name__}; timeout "
            f"{options.fetch_timeout} s, see ImageLoadOptions.fetch_timeout); "
            f"{_fetch_hint(kind)}"
        ) from exc
    _check_mime(content_type, f"the response from {source}", kind)
    return body


def _fetch_url(url: str, options: ImageLoadOptions) -> ImagePart:
    """Fetch and decode an http(s) image URL."""
    return _decode_bytes(_fetch_bytes(url, options), _short(url, 200), options)


def _local_path(text: str) -> Path:
    """Turn a file:// URL or a plain path string into a Path."""
    if not text.lower().startswith("file:"):
        return Path(text).expanduser()
    parsed = urllib.parse.urlparse(text)
    if parsed.netloc not in ("", "localhost"):
        raise ImageInputError(
            f"file URL {_short(text)} names host {parsed.netloc!r}; only local files "
            "(file:///path) can be read"
        )
    return Path(urllib.request.url2pathname(parsed.path))


def _missing_file_message(text: str) -> str:
    """Explain a path that does not exist, hinting when it looks like raw base64."""
    message = f"image file {_short(text)} does not exist"
    if len(text) > 256 and _BASE64_LOOKING.match(text[:1024]):
        message = (
            f"image string of {len(text)} characters is neither a URL nor an existing file; "
            "it looks like raw base64: pass a data: URL or an "
            "{'type': 'image', 'base64': ..., 'mime_type': ...} block"
        )
    return message


def _is_file(path: Path) -> bool:
    """Whether `path` is an existing regular file (False for unusable names too)."""
    try:
        return path.is_file()
    except (OSError, ValueError):  # e.g. name too long, embedded NUL
        return False


def _load_local(location: str | os.PathLike[str], options: ImageLoadOptions) -> ImagePart:
    """Read and decode a local image file (plain path or file:// URL)."""
    text = os.fspath(location)
    if not options.allow_local_files:
        raise ImageInputError(
            f"reading local files is disabled (ImageLoadOptions.allow_local_files=False), so "
            f"{_short(text)} cannot be loaded; pass the image as base64 instead"
        )
    path = _local_path(text)
    if not _is_file(path):
        raise ImageInputError(_missing_file_message(text))
    try:
        _check_size(path.stat().st_size, str(path), options)
        with path.open("rb") as handle:
            data = handle.read(options.max_bytes + 1)
    except OSError as exc:
        raise ImageInputError(f"cannot read image file {_short(text)}: {exc}") from exc
    return _decode_bytes(data, str(path), options)


def _load_string(text: str, options: ImageLoadOptions) -> ImagePart:
    """Dispatch a string source: data: URL, http(s) URL, file:// URL or local path."""
    scheme_match = _URL_SCHEME.match(text)
    scheme = scheme_match.group(1).lower() if scheme_match else ""
    if scheme == "data":
        return _load_data_url(text, options)
    if scheme in ("http", "https"):
        return _fetch_url(text, options)
    if scheme == "file" or not scheme or _WINDOWS_DRIVE.match(text):
        return _load_local(text, options)
    raise ImageInputError(
        f"image URL {_short(text)} has unsupported scheme {scheme!r}; use http(s)://, "
        "data:, file:// or a local path"
    )


def load_image(
    source: Image.Image | bytes | str | os.PathLike[str],
    options: ImageLoadOptions = _DEFAULT_OPTIONS,
) -> ImagePart:
    """Load an image from a PIL image, encoded bytes, a URL/data URL/file URL or a path.

    Strings are URLs (``http(s)://``, ``data:``, ``file://``) or local paths; raw base64
    strings are not accepted here (use a ``data:`` URL). The result is fully decoded,
    rotated per its EXIF orientation and converted to RGB, with transparency composited
    on a white background. Raises `ImageInputError` on any failure.
    """
    if isinstance(source, Image.Image):
        return _from_pil(source, options)
    if isinstance(source, (bytes, bytearray, memoryview)):
        raw = bytes(source)
        return _decode_bytes(raw, f"image bytes ({_human_size(len(raw))})", options)
    if isinstance(source, str):
        return _load_string(source, options)
    if isinstance(source, os.PathLike):
        return _load_local(source, options)
    raise ImageInputError(
        f"cannot load an image from a {type(source).__name__}; pass a PIL image, bytes, "
        "a URL or a path"
    )


# --------------------------------------------------------------------------- blocks


def _text_of(block: dict[str, Any]) -> TextPart:
    """The text of a text-like block."""
    text = block.get("text")
    if isinstance(text, str):
        return TextPart(text)
    if text is None and block.get("type") == "text-plain":
        raise MessageFormatError(
            "plain-text documents are supported only with their 'text' inline, not by "
            "URL or file id"
        )
    raise MessageFormatError(f"its 'text' must be a str, not {type(text).__name__}")


def _no_file_ids(block: dict[str, Any]) -> None:
    """Reject a block that points at a provider's file storage instead of carrying data."""
    if "file_id" in block or block.get("source_type") == "id":
        raise MessageFormatError(
            "it refers to a provider file id, which a local model cannot resolve; pass the "
            "data as base64 or a URL instead"
        )


def _anthropic_source(source: dict[str, Any], options: ImageLoadOptions) -> ImagePart:
    """Load an Anthropic-style ``source`` ({"type": "base64"|"url", ...})."""
    kind = source.get("type")
    if kind == "base64" and "data" in source:
        return _load_base64(source["data"], source.get("media_type"), options)
    if kind == "url" and isinstance(source.get("url"), str):
        return load_image(source["url"], options)
    raise MessageFormatError(f"its 'source' of type {kind!r} is not supported; use base64 or url")


def _base64_field(block: dict[str, Any]) -> Any:
    """A block's inline base64 data: LangChain's ``base64`` key, or the older
    ``source_type: "base64"`` form's ``data``; None when it has neither."""
    data = block.get("base64")
    if data is None and block.get("source_type") == "base64":
        data = block.get("data")
    return data


def _image_from_block(block: dict[str, Any], options: ImageLoadOptions) -> ImagePart:
    """Load the image of a v1/v0/Anthropic ``image`` (or image ``file``) block."""
    if "image" in block:
        if not isinstance(block["image"], Image.Image):
            raise MessageFormatError(
                f"its 'image' must be a PIL.Image.Image, not {type(block['image']).__name__}"
            )
        return _from_pil(block["image"], options)
    if isinstance(block.get("source"), dict):
        return _anthropic_source(block["source"], options)
    data = _base64_field(block)
    if data is not None:
        return _load_base64(data, block.get("mime_type"), options)
    for key in ("url", "path"):
        value = block.get(key)
        if isinstance(value, str) and value:
            return _load_string(value, options) if key == "url" else _load_local(value, options)
    _no_file_ids(block)
    raise MessageFormatError(
        "it has no image data; give one of 'base64' (+ 'mime_type'), 'url', 'path' or 'image'"
    )


def _image_from_openai(block: dict[str, Any], options: ImageLoadOptions) -> ImagePart:
    """Load an OpenAI ``image_url`` / Responses ``input_image`` block (``detail`` ignored)."""
    _no_file_ids(block)
    value = block.get("image_url")
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str) or not url:
        raise MessageFormatError(
            "its 'image_url' must be a URL string or {'url': '...'} (http(s) or data: URL)"
        )
    return _load_string(url, options)


def _file_mime_type(block: dict[str, Any]) -> str | None:
    """The MIME type of a ``file`` block: declared, from a data: URL, or guessed from a name."""
    file_part = block.get("file")
    nested: dict[str, Any] = file_part if isinstance(file_part, dict) else {}
    for candidate in (block.get("url"), nested.get("file_data")):
        if isinstance(candidate, str) and candidate.startswith("data:"):
            return _parse_data_url(candidate)[0] or None
    if block.get("mime_type"):
        return str(block["mime_type"])
    for name in (block.get("url"), block.get("filename"), nested.get("filename")):
        if isinstance(name, str):
            guessed = mimetypes.guess_type(urllib.parse.urlparse(name).path)[0]
            if guessed:
                return guessed
    return None


def _image_from_file_block(block: dict[str, Any], options: ImageLoadOptions) -> ImagePart:
    """Load a ``file`` block if it holds an image; reject other files."""
    mime_type = _file_mime_type(block)
    if not mime_type or not mime_type.lower().startswith("image/"):
        raise MessageFormatError(
            f"only image files are supported, but this file's MIME type is "
            f"{mime_type or 'unknown'!r}; for documents, extract the text and send a text block"
        )
    nested = block.get("file")
    if isinstance(nested, dict) and isinstance(nested.get("file_data"), str):
        return _load_string(nested["file_data"], options)
    return _image_from_block(block, options)


# --------------------------------------------------------------------------- video


def _video_error(exc: ImageInputError) -> VideoInputError:
    """A loading error of the shared image/video helpers, as a video error."""
    error = VideoInputError(str(exc))
    error.__cause__ = exc.__cause__
    return error


def _video_path(text: str, options: ImageLoadOptions) -> Path:
    """A local video file (plain path or file:// URL); PyAV reads it, not this module."""
    if not options.allow_local_files:
        raise VideoInputError(
            f"reading local files is disabled (ImageLoadOptions.allow_local_files=False), so "
            f"{_short(text)} cannot be loaded; pass the video as base64 instead"
        )
    try:
        path = _local_path(text)
    except ImageInputError as exc:
        raise _video_error(exc) from exc
    if not _is_file(path):
        raise VideoInputError(f"video file {_short(text)} does not exist")
    return path


def _video_base64(data: Any, mime_type: str | None, options: ImageLoadOptions) -> tuple[bytes, str]:
    """Decoded base64 video data (a data: URL is accepted too) and its label."""
    if isinstance(data, bytes):
        data = data.decode("ascii", errors="replace")
    if not isinstance(data, str):
        raise VideoInputError(f"base64 video data must be a str, not {type(data).__name__}")
    if data.startswith("data:"):
        mime_type, is_base64, data = _parse_data_url(data)
        if not is_base64:
            raise VideoInputError("a video data: URL must be base64 (data:video/mp4;base64,...)")
    label = f"base64 {mime_type or 'video'}"
    try:
        _check_mime(mime_type, label, "video")
        estimate = len(data) * 3 // 4
        if estimate > options.max_bytes + 1024:
            _check_size(estimate, f"{label} (about {_human_size(estimate)})", options, "video")
        raw = _decode_base64_text(data, label)
        _check_size(len(raw), label, options, "video")
    except ImageInputError as exc:
        raise _video_error(exc) from exc
    return raw, f"{label} ({_human_size(len(raw))})"


def _video_string(text: str, options: ImageLoadOptions) -> tuple[Path | bytes, str]:
    """A video named by a data:, http(s)://, file:// URL or a local path: (path or bytes, label)."""
    scheme_match = _URL_SCHEME.match(text)
    scheme = scheme_match.group(1).lower() if scheme_match else ""
    if scheme == "data":
        return _video_base64(text, None, options)
    if scheme in ("http", "https"):
        try:
            return _fetch_bytes(text, options, "video"), _short(text, 200)
        except ImageInputError as exc:
            raise _video_error(exc) from exc
    if scheme == "file" or not scheme or _WINDOWS_DRIVE.match(text):
        path = _video_path(text, options)
        return path, str(path)
    raise VideoInputError(
        f"video URL {_short(text)} has unsupported scheme {scheme!r}; use http(s)://, "
        "data:, file:// or a local path"
    )


def _video_source(block: dict[str, Any], options: ImageLoadOptions) -> tuple[Path | bytes, str]:
    """Where a ``video`` / ``video_url`` / video ``file`` block's data is."""
    if block.get("type") == "video_url":
        value = block.get("video_url")
        url = value.get("url") if isinstance(value, dict) else value
        if not isinstance(url, str) or not url:
            raise MessageFormatError("its 'video_url' must be a URL string or {'url': '...'}")
        return _video_string(url, options)
    nested = block.get("file")
    if isinstance(nested, dict) and isinstance(nested.get("file_data"), str):
        return _video_string(nested["file_data"], options)
    data = _base64_field(block)
    if data is not None:
        return _video_base64(data, block.get("mime_type"), options)
    for key in ("url", "path"):
        value = block.get(key)
        if isinstance(value, str) and value:
            if key == "path":
                path = _video_path(value, options)
                return path, str(path)
            return _video_string(value, options)
    _no_file_ids(block)
    raise MessageFormatError(
        "it has no video data; give one of 'base64' (+ 'mime_type'), 'url', 'path' or "
        "'frames' (a list of images)"
    )


def _video_bound(block: dict[str, Any]) -> tuple[float, float] | None:
    """The block's optional ``start`` / ``end`` (seconds) as the cards' ``bound``."""
    start, end = block.get("start"), block.get("end")
    if start is None and end is None:
        return None
    for name, value in (("start", start), ("end", end)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise MessageFormatError(f"its {name!r} must be a number of seconds, not {value!r}")
    low = float(start) if start is not None else 0.0
    high = float(end) if end is not None else float("inf")
    if low < 0 or high <= low:
        raise MessageFormatError(
            f"its start={start!r} and end={end!r} must satisfy 0 <= start < end (seconds)"
        )
    return low, min(high, 1e9)


def _explicit_frames(frames: Any, options: ImageLoadOptions) -> VideoPart:
    """A video given as its frames: PIL images, image blocks, or image paths/URLs."""
    if not isinstance(frames, (list, tuple)) or not frames:
        raise MessageFormatError(
            "its 'frames' must be a non-empty list of PIL images, image blocks or image paths/URLs"
        )
    images: list[Image.Image] = []
    for number, frame in enumerate(frames, 1):
        try:
            if isinstance(frame, Image.Image):
                part: ContentPart | None = _from_pil(frame, options)
            elif isinstance(frame, str):
                part = _load_string(frame, options)
            elif isinstance(frame, dict):
                part = _block_to_part(frame, options, None)
            else:
                raise MessageFormatError(
                    f"a frame must be a PIL image, an image block or an image path/URL, not "
                    f"{type(frame).__name__}"
                )
            if not isinstance(part, ImagePart):
                raise MessageFormatError("a frame must be an image block")
        except (ImageInputError, MessageFormatError) as exc:
            raise type(exc)(f"frame {number}: {exc}") from exc
        images.append(part.image)
    return VideoPart(images, f"{len(images)} frames", list(range(len(images))))


def _video_from_block(
    block: dict[str, Any], options: ImageLoadOptions, video: VideoOptions | None
) -> VideoPart:
    """Sample the frames of a ``video`` block (or take its explicit ``frames``)."""
    if video is None:
        raise MessageFormatError("a frame of a video cannot itself be a video")
    if "frames" in block:
        return _explicit_frames(block["frames"], options)
    num_segments = block.get("num_segments", video.num_segments)
    try:
        check_num_segments(num_segments)
    except ConfigurationError as exc:
        raise MessageFormatError(f"its {exc}") from None
    bound = _video_bound(block)
    source, label = _video_source(block, options)
    sampled = decode_video(
        source,
        num_segments=num_segments,
        bound=bound,
        max_pixels=options.max_pixels,
        label=label,
    )
    return VideoPart(list(sampled.frames), label, list(sampled.indices))


def _unwrap_non_standard(block: dict[str, Any]) -> dict[str, Any] | None:
    """The supported block inside a ``non_standard`` block, if any."""
    value = block.get("value")
    supported = _TEXT_TYPES | _IMAGE_TYPES | _VIDEO_TYPES | {"file"}
    if isinstance(value, dict) and value.get("type") in supported:
        return value
    return None


def _block_to_part(
    block: dict[str, Any], options: ImageLoadOptions, video: VideoOptions | None
) -> ContentPart | None:
    """Convert one content block; None for blocks that are skipped. `video` None: videos are
    not accepted here (inside a video's frames)."""
    block_type = block.get("type")
    if block_type == "non_standard":
        inner = _unwrap_non_standard(block)
        return None if inner is None else _block_to_part(inner, options, video)
    if block_type in _SKIPPED_TYPES:
        return None
    if block_type in _TEXT_TYPES:
        return _text_of(block)
    if block_type == "image":
        return _image_from_block(block, options)
    if block_type in ("image_url", "input_image"):
        return _image_from_openai(block, options)
    if block_type in _VIDEO_TYPES:
        return _video_from_block(block, options, video)
    if block_type == "file":
        mime_type = _file_mime_type(block)
        if mime_type and mime_type.lower().startswith("video/"):
            return _video_from_block(block, options, video)
        return _image_from_file_block(block, options)
    if block_type is None:
        raise MessageFormatError(f"the block has no 'type' key; {_SUPPORTED_HELP}")
    raise MessageFormatError(f"type {block_type!r} is not supported; {_SUPPORTED_HELP}")


def _item_to_part(
    item: object, options: ImageLoadOptions, video: VideoOptions
) -> ContentPart | None:
    """Convert one item of a content list (a str or a block dict)."""
    if isinstance(item, str):
        return TextPart(item)
    if isinstance(item, dict):
        return _block_to_part(item, options, video)
    if isinstance(item, Image.Image):
        raise MessageFormatError(
            "a bare PIL image is not a content block; wrap it as {'type': 'image', 'image': img}"
        )
    raise MessageFormatError(f"content items must be str or dict blocks, not {type(item).__name__}")


def _block_label(item: object) -> str:
    """A short name for an item's type, for error locations."""
    if isinstance(item, dict):
        return repr(item.get("type"))
    return type(item).__name__


def content_to_parts(
    content: str | list[Any],
    *,
    where: str,
    options: ImageLoadOptions = _DEFAULT_OPTIONS,
    video: VideoOptions = _DEFAULT_VIDEO,
) -> list[ContentPart]:
    """Convert LangChain message content into ordered text, image and video parts.

    `where` names the message for error messages (e.g. ``"messages[2] (human)"``).
    Empty text is dropped; adjacent text parts are kept separate (the caller joins them).
    Reasoning, tool-call and unrecognised ``non_standard`` blocks are skipped; see the
    module docstring for every accepted form. Raises `MessageFormatError` for unsupported
    blocks and `ImageInputError` for images that cannot be loaded, naming `where` and the
    block index; videos are sampled by `video` (`VideoInputError` when one cannot be read).
    """
    if isinstance(content, str):
        return [TextPart(content)] if content else []
    if not isinstance(content, list):
        raise MessageFormatError(
            f"{where}: content must be a str or a list of blocks, not {type(content).__name__}"
        )
    parts: list[ContentPart] = []
    for index, item in enumerate(content):
        try:
            part = _item_to_part(item, options, video)
        except (ImageInputError, MessageFormatError, VideoInputError) as exc:
            location = f"{where}, content block {index} (type {_block_label(item)})"
            raise type(exc)(f"{location}: {exc}") from exc
        if part is not None and not (isinstance(part, TextPart) and not part.text):
            parts.append(part)
    return parts

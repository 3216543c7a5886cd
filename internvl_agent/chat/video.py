"""Video input: decode a video with PyAV and sample its frames the way InternVL's cards do.

`sample_frame_indices` is the model cards' ``get_index`` (``load_video`` with decord): the
video's frames ``0 .. max_frame`` (optionally only those between a start and an end time in
seconds, converted to frame numbers with the stream's average fps and rounded) are cut into
``num_segments`` equal segments and the frame at the centre of each is taken.

`decode_video` opens a path or encoded bytes, counts the frames by demuxing (no decoding),
computes the indices, then decodes once, in order, keeping only those frames as RGB PIL images.
The frames are frozen (`freeze_image`): their vision-cache keys are computed once. An LRU
(256 MB of RGB frames) keeps the frames of recent videos, so a second question about the same
video decodes nothing (and, through the engine's vision cache, encodes nothing).

PyAV (``av``) is the ``video`` extra; without it, decoding raises a `ConfigurationError` that
names the extra.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from internvl_agent.engine.caches import LRU
from internvl_agent.engine.images import freeze_image
from internvl_agent.errors import ConfigurationError, VideoInputError

__all__ = [
    "DEFAULT_NUM_SEGMENTS",
    "VideoFrames",
    "VideoOptions",
    "decode_video",
    "sample_frame_indices",
]

DEFAULT_NUM_SEGMENTS = 8
MAX_NUM_SEGMENTS = 512
_INSTALL_HINT = "pip install 'internvl-agent[video]' (or pip install av)"
# Decoded frames kept for reuse, by total RGB bytes.
_FRAME_CACHE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class VideoOptions:
    """How videos in messages are sampled and tiled."""

    num_segments: int = DEFAULT_NUM_SEGMENTS
    """Frames sampled from a video: the centres of this many equal segments (8 on the cards)."""
    max_tiles_per_frame: int = 1
    """Most 448x448 tiles one frame is cut into (1 on the cards: 256 tokens a frame)."""

    def __post_init__(self) -> None:
        """Reject values that cannot work."""
        check_num_segments(self.num_segments)
        value = self.max_tiles_per_frame
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 40:
            raise ConfigurationError(f"max_tiles_per_frame must be an int in 1..40, got {value!r}")


def check_num_segments(value: Any) -> int:
    """`value` if it is a usable segment count, else a ConfigurationError."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_NUM_SEGMENTS:
        raise ConfigurationError(
            f"num_segments must be an int in 1..{MAX_NUM_SEGMENTS}, got {value!r}"
        )
    return value


@dataclass(frozen=True)
class VideoFrames:
    """The sampled frames of one video, with what they were sampled from."""

    frames: tuple[Image.Image, ...]
    indices: tuple[int, ...]  # frame numbers in the video, 0-based
    num_frames: int
    fps: float


def sample_frame_indices(
    num_frames: int,
    fps: float,
    num_segments: int = DEFAULT_NUM_SEGMENTS,
    bound: tuple[float, float] | None = None,
) -> list[int]:
    """The frame numbers the model cards' ``get_index`` picks (``first_idx`` 0).

    ``bound`` is (start, end) in seconds; the cards' default is the whole video. A bound that
    selects no frame (start after the end of the video, or end before start) is an error rather
    than the out-of-range numbers the cards' formula would give.
    """
    check_num_segments(num_segments)
    if num_frames < 1:
        raise VideoInputError("the video has no frames")
    max_frame = num_frames - 1
    start, end = bound if bound is not None else (-100000.0, 100000.0)
    start_idx = max(0, round(start * fps))
    end_idx = min(round(end * fps), max_frame)
    if bound is not None and (end < start or start_idx > max_frame or end_idx < start_idx):
        duration = num_frames / fps if fps > 0 else 0.0
        raise VideoInputError(
            f"the bound start={start} s, end={end} s selects no frame of this video "
            f"({num_frames} frames at {fps:g} fps, about {duration:.2f} s); give "
            "0 <= start <= end within the video"
        )
    seg_size = float(end_idx - start_idx) / num_segments
    return [
        int(start_idx + (seg_size / 2) + np.round(seg_size * idx)) for idx in range(num_segments)
    ]


# --------------------------------------------------------------------------- decoding


def _import_av() -> Any:
    try:
        import av
    except ImportError as exc:
        raise ConfigurationError(
            f"reading video needs PyAV, which is not installed: {_INSTALL_HINT}"
        ) from exc
    return av


def _open(av: Any, source: Path | bytes, label: str) -> Any:
    target: Any = str(source) if isinstance(source, Path) else io.BytesIO(source)
    try:
        return av.open(target, mode="r")
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise VideoInputError(f"{label} cannot be decoded as a video (PyAV: {exc})") from exc


def _video_stream(container: Any, label: str) -> Any:
    streams = container.streams.video
    if not streams:
        raise VideoInputError(f"{label} has no video stream (an audio file, or an incomplete one?)")
    return streams[0]


def _average_fps(stream: Any) -> float:
    """decord's ``get_avg_fps``: the stream's average frame rate (guessed when missing)."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    return 0.0


def _count_frames(av: Any, source: Path | bytes, label: str) -> tuple[int, float, tuple[int, int]]:
    """(frames, fps, (width, height)) of the first video stream, by demuxing its packets."""
    container = _open(av, source, label)
    try:
        stream = _video_stream(container, label)
        size = (int(stream.codec_context.width or 0), int(stream.codec_context.height or 0))
        fps = _average_fps(stream)
        count = sum(1 for packet in container.demux(stream) if packet.size)
    except av.FFmpegError as exc:
        raise VideoInputError(f"{label} cannot be read as a video (PyAV: {exc})") from exc
    finally:
        container.close()
    return count, fps, size


def _decode_frames(
    av: Any, source: Path | bytes, label: str, wanted: set[int]
) -> tuple[dict[int, Image.Image], int]:
    """The frames numbered in `wanted` (as RGB images) and how many frames were decoded."""
    container = _open(av, source, label)
    found: dict[int, Image.Image] = {}
    decoded = 0
    last = max(wanted)
    try:
        stream = _video_stream(container, label)
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            decoded = index + 1
            if index in wanted:
                found[index] = frame.to_image().convert("RGB")
            if index >= last:
                break
    except av.FFmpegError as exc:
        raise VideoInputError(f"{label} cannot be decoded as a video (PyAV: {exc})") from exc
    finally:
        container.close()
    return found, decoded


def _frames_nbytes(video: VideoFrames) -> int:
    return sum(f.width * f.height * 3 for f in video.frames)


_CACHE: LRU[tuple[Any, ...], VideoFrames] = LRU(max_size=_FRAME_CACHE_BYTES, size=_frames_nbytes)


def _source_key(source: Path | bytes) -> tuple[Any, ...]:
    if isinstance(source, Path):
        try:
            stat = source.stat()
        except OSError as exc:
            raise VideoInputError(f"cannot read video file {source}: {exc}") from exc
        return ("path", str(source.resolve()), stat.st_mtime_ns, stat.st_size)
    return ("bytes", hashlib.sha256(source).hexdigest())


def decode_video(
    source: str | os.PathLike[str] | bytes,
    *,
    num_segments: int = DEFAULT_NUM_SEGMENTS,
    bound: tuple[float, float] | None = None,
    max_pixels: int = 50_000_000,
    label: str | None = None,
) -> VideoFrames:
    """Sample `num_segments` frames of a video file or encoded video bytes, as the cards do.

    Raises `ConfigurationError` without PyAV, `VideoInputError` for a file that is not a video,
    has no frames, has frames over `max_pixels` (width*height) or a `bound` outside it.
    """
    check_num_segments(num_segments)
    data: Path | bytes = bytes(source) if isinstance(source, (bytes, bytearray)) else Path(source)
    name = label or (str(data) if isinstance(data, Path) else f"video bytes ({len(data)} B)")
    av = _import_av()
    key = (*_source_key(data), num_segments, bound, max_pixels)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    count, fps, (width, height) = _count_frames(av, data, name)
    if width * height > max_pixels:
        raise VideoInputError(
            f"{name} is {width}x{height} = {width * height} pixels a frame, over the limit of "
            f"{max_pixels} pixels; downscale it or raise ImageLoadOptions.max_pixels "
            "(ChatInternVL's image_max_pixels)"
        )
    for _ in range(2):  # a second pass only when fewer frames decode than packets were counted
        if count < 1:
            raise VideoInputError(f"{name} has no video frames")
        indices = sample_frame_indices(count, fps, num_segments, bound)
        found, decoded = _decode_frames(av, data, name, set(indices))
        if len(found) == len(set(indices)):
            frames = tuple(freeze_image(found[i]) for i in indices)
            video = VideoFrames(frames, tuple(indices), count, fps)
            _CACHE.put(key, video)
            return video
        count = decoded
    raise VideoInputError(f"{name} could not be decoded: its frames kept failing to decode")


def frames_from_images(images: Sequence[Image.Image]) -> VideoFrames:
    """An explicit list of frames (already chosen by the caller) as `VideoFrames`."""
    if not images:
        raise VideoInputError("the video's 'frames' list is empty; give at least one frame")
    return VideoFrames(tuple(images), tuple(range(len(images))), len(images), 0.0)

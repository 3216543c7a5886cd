"""Video input: the cards' frame sampling, PyAV decoding, video content blocks, Frame prompts.

Every video here is written by the test with PyAV (tests/support/videos.py); each frame shows
its own number, so which frames were sampled can be checked exactly.
"""

from __future__ import annotations

import base64
import contextlib
import sys
import time
from collections.abc import Iterator
from fractions import Fraction
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.messages import HumanMessage
from PIL import Image

from internvl_agent.chat import video as video_module
from internvl_agent.chat.content import (
    ImageLoadOptions,
    ImagePart,
    TextPart,
    VideoPart,
    content_to_parts,
)
from internvl_agent.chat.messages import messages_to_turns
from internvl_agent.chat.video import VideoOptions, decode_video, sample_frame_indices
from internvl_agent.engine.images import is_frozen
from internvl_agent.engine.prompt import (
    INTERNVL_SYSTEM_MESSAGE,
    VideoFrame,
    image_placeholder,
    render_segments,
)
from internvl_agent.errors import (
    ConfigurationError,
    ImageInputError,
    MessageFormatError,
    VideoInputError,
)
from tests.support.http import local_server, without_proxies
from tests.support.videos import frame_number, frame_pixels, write_video

pytest.importorskip("av", reason="needs PyAV (the video extra)")


def card_get_index(
    bound: tuple[float, float] | None, fps: float, max_frame: int, first_idx=0, num_segments=32
) -> np.ndarray:
    """The model cards' ``get_index``, verbatim (the reference the sampling must match)."""
    if bound:
        start, end = bound[0], bound[1]
    else:
        start, end = -100000, 100000
    start_idx = max(first_idx, round(start * fps))
    end_idx = min(round(end * fps), max_frame)
    seg_size = float(end_idx - start_idx) / num_segments
    frame_indices = np.array(
        [int(start_idx + (seg_size / 2) + np.round(seg_size * idx)) for idx in range(num_segments)]
    )
    return frame_indices


@pytest.fixture(autouse=True)
def _fresh_frame_cache() -> Iterator[None]:
    video_module._CACHE.clear()
    yield
    video_module._CACHE.clear()


# ----------------------------------------------------------------------------- sampling


def test_sampling_worked_example() -> None:
    # 37 frames at 10 fps, 8 segments of 4.5 frames: centres 2.25 + round(4.5 k), where
    # numpy rounds halves to even (round(4.5) = 4, round(13.5) = 14): not int(x + 0.5).
    assert sample_frame_indices(37, 10.0, 8) == [2, 6, 11, 16, 20, 24, 29, 34]
    assert sample_frame_indices(1, 30.0, 8) == [0] * 8
    # bound in seconds: frames round(1.0 * 10) = 10 .. round(2.0 * 10) = 20, segments of
    # 2.5: 10 + 1.25 + round(2.5 k) with round(2.5) = 2, round(7.5) = 8
    assert sample_frame_indices(37, 10.0, 4, (1.0, 2.0)) == [11, 13, 16, 19]


@pytest.mark.parametrize("num_frames", [1, 2, 7, 8, 9, 37, 100, 301, 1000])
@pytest.mark.parametrize("num_segments", [1, 3, 8, 16, 32])
@pytest.mark.parametrize("fps", [10.0, 24.0, 30000 / 1001])
def test_sampling_matches_the_cards_formula(num_frames: int, num_segments: int, fps: float) -> None:
    duration = num_frames / fps
    bounds: list[tuple[float, float] | None] = [
        None,
        (0.0, duration),
        (duration / 3, duration * 2 / 3),
        (-5.0, duration / 2),  # a negative start is clamped to frame 0, as on the cards
        (duration / 4, duration * 10),  # an end past the video is clamped to the last frame
    ]
    for bound in bounds:
        expected = card_get_index(bound, fps, num_frames - 1, num_segments=num_segments)
        try:
            got = sample_frame_indices(num_frames, fps, num_segments, bound)
        except VideoInputError:
            # only where the cards' formula would point outside the video
            assert bound is not None and (expected.max() >= num_frames or expected.min() < 0)
            continue
        assert got == expected.tolist(), (num_frames, fps, num_segments, bound)
        assert all(0 <= i < num_frames for i in got)


@pytest.mark.parametrize(
    "bound", [(10.0, 20.0), (3.0, 1.0), (-3.0, -1.0)], ids=["after-end", "reversed", "negative"]
)
def test_a_bound_that_selects_no_frame_is_an_error(bound: tuple[float, float]) -> None:
    with pytest.raises(VideoInputError, match=r"selects no frame.*37 frames at 10 fps"):
        sample_frame_indices(37, 10.0, 8, bound)


@pytest.mark.parametrize("value", [0, -1, 513, 2.5, True, "8"])
def test_num_segments_is_validated(value: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"num_segments must be an int in 1\.\.512"):
        sample_frame_indices(10, 10.0, value)
    with pytest.raises(ConfigurationError, match="num_segments"):
        VideoOptions(num_segments=value)


@pytest.mark.parametrize("value", [0, 41, 1.5, None])
def test_max_tiles_per_frame_is_validated(value: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"max_tiles_per_frame must be an int in 1\.\.40"):
        VideoOptions(max_tiles_per_frame=value)


# ----------------------------------------------------------------------------- decoding

_CODECS = {"mp4-h264": ("libx264", ".mp4"), "webm-vp9": ("libvpx-vp9", ".webm"),
           "mkv-ffv1": ("ffv1", ".mkv"), "mp4-mpeg4": ("mpeg4", ".mp4")}  # fmt: skip


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int, Any], Path]:
    folder = tmp_path_factory.mktemp("videos")
    out: dict[tuple[str, int, Any], Path] = {}
    for name, (codec, suffix) in _CODECS.items():
        for frames, fps in ((5, 10), (37, 10), (90, Fraction(30000, 1001))):
            path = folder / f"{name}-{frames}{suffix}"
            out[name, frames, fps] = write_video(path, frames, fps=fps, codec=codec)
    return out


@pytest.mark.parametrize("codec", list(_CODECS))
def test_decoded_frames_are_the_cards_indices(
    videos: dict[tuple[str, int, Any], Path], codec: str
) -> None:
    for (name, num_frames, fps), path in videos.items():
        if name != codec:
            continue
        for num_segments in (1, 4, 8, 12):
            for bound in (None, (0.2, 0.45), (0.1, 100.0)):
                if bound and round(bound[0] * float(fps)) >= num_frames:
                    continue
                video = decode_video(path, num_segments=num_segments, bound=bound)
                expected = card_get_index(bound, float(fps), num_frames - 1, 0, num_segments)
                assert video.num_frames == num_frames
                assert video.fps == pytest.approx(float(fps))
                assert list(video.indices) == expected.tolist()
                assert [frame_number(f) for f in video.frames] == expected.tolist(), (
                    path.name,
                    num_segments,
                    bound,
                )
                assert all(f.mode == "RGB" and f.size == (160, 64) for f in video.frames)


def test_fractional_fps_converts_the_bound_with_the_streams_average_rate(
    videos: dict[tuple[str, int, Any], Path],
) -> None:
    path = videos["mkv-ffv1", 90, Fraction(30000, 1001)]
    video = decode_video(path, num_segments=4, bound=(1.65, 2.5))
    assert video.fps == pytest.approx(29.97002997)
    # start: round(1.65 * 29.97) = 49 (at 30 fps: round(49.5) = 50), end round(74.93) = 75;
    # segments of 6.5: 49 + 3.25 + round(6.5 k)
    assert list(video.indices) == [52, 58, 65, 72]
    assert [frame_number(f) for f in video.frames] == [52, 58, 65, 72]
    assert sample_frame_indices(90, 30.0, 4, (1.65, 2.5)) == [53, 59, 65, 72]


def test_lossless_frames_are_the_written_pixels(videos: dict[tuple[str, int, Any], Path]) -> None:
    video = decode_video(videos["mkv-ffv1", 37, 10], num_segments=8)
    for index, frame in zip(video.indices, video.frames, strict=True):
        difference = np.abs(np.asarray(frame, np.int16) - frame_pixels(index).astype(np.int16))
        assert difference.max() <= 3  # yuv444p round trip


def test_frames_are_frozen_and_a_second_decode_is_served_from_the_cache(
    videos: dict[tuple[str, int, Any], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = videos["mp4-h264", 37, 10]
    first = decode_video(path)
    assert all(is_frozen(f) for f in first.frames)
    calls: list[Any] = []
    monkeypatch.setattr(video_module, "_decode_frames", lambda *a: calls.append(a))
    again = decode_video(path)
    assert again is first and calls == []  # nothing decoded
    monkeypatch.undo()
    assert decode_video(path, num_segments=4) is not first  # other options: another entry
    from_bytes = decode_video(path.read_bytes())  # bytes are keyed by their hash
    assert from_bytes is not first and decode_video(path.read_bytes()) is from_bytes
    assert [np.asarray(f).tobytes() for f in from_bytes.frames] == [
        np.asarray(f).tobytes() for f in first.frames
    ]


def test_a_rewritten_file_is_decoded_again(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mkv", 9, codec="ffv1")
    first = decode_video(path, num_segments=2)
    time.sleep(0.01)
    write_video(path, 30, codec="ffv1")
    second = decode_video(path, num_segments=2)
    assert first.num_frames == 9 and second.num_frames == 30


def test_missing_pyav_names_the_extra(
    videos: dict[tuple[str, int, Any], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` now raises ImportError
    with pytest.raises(ConfigurationError, match=r"PyAV.*internvl-agent\[video\]"):
        decode_video(videos["mp4-h264", 5, 10])
    block = {"type": "video", "path": str(videos["mp4-h264", 5, 10])}
    with pytest.raises(ConfigurationError, match=r"internvl-agent\[video\]"):
        content_to_parts([block], where="message 0")


def test_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "noise.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoInputError, match=r"noise.mp4 cannot be decoded as a video \(PyAV"):
        decode_video(path)
    with pytest.raises(VideoInputError, match="cannot be decoded as a video"):
        decode_video(b"definitely not a video")


def test_truncated_file_is_an_error_or_its_first_frames(tmp_path: Path) -> None:
    whole = write_video(tmp_path / "whole.mkv", 40, codec="ffv1").read_bytes()
    try:
        video = decode_video(whole[: len(whole) // 2], num_segments=4)
    except VideoInputError as exc:
        assert "video" in str(exc)
    else:  # the frames that survive are sampled as a shorter video, each one really there
        assert 0 < video.num_frames < 40
        assert [frame_number(f) for f in video.frames] == list(video.indices)


def test_zero_frame_video_is_a_clear_error(tmp_path: Path) -> None:
    path = write_video(tmp_path / "empty.avi", 0, codec="mpeg4")  # a video stream, 0 frames
    with pytest.raises(VideoInputError, match=r"empty\.avi has no video frames"):
        decode_video(path)
    path = write_video(tmp_path / "empty.mp4", 0)  # MP4 keeps no stream without samples
    with pytest.raises(VideoInputError, match=r"empty\.mp4 has no video stream"):
        decode_video(path)


def test_missing_file_is_a_video_error(tmp_path: Path) -> None:
    with pytest.raises(VideoInputError, match=r"cannot read video file .*gone\.mp4"):
        decode_video(tmp_path / "gone.mp4")


def test_audio_only_file_has_no_video_stream(tmp_path: Path) -> None:
    import av

    path = tmp_path / "tone.wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono"
        )
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(VideoInputError, match=r"tone\.wav has no video stream"):
        decode_video(path)


def test_frames_over_the_pixel_limit_are_refused_before_decoding(
    videos: dict[tuple[str, int, Any], Path],
) -> None:
    with pytest.raises(VideoInputError, match=r"160x64 = 10240 pixels a frame.*max_pixels"):
        decode_video(videos["mp4-h264", 5, 10], max_pixels=10_000)


# ----------------------------------------------------------------------------- blocks


class _Handler(BaseHTTPRequestHandler):
    """/v.mp4 (the 37-frame video), /slow.mp4, /page.png (an image MIME type), else 404."""

    body = b""

    def do_GET(self) -> None:
        if self.path == "/slow.mp4":
            time.sleep(1.5)
        if self.path in ("/v.mp4", "/slow.mp4", "/page.png"):
            kind = "image/png" if self.path == "/page.png" else "video/mp4"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(self.body)))
            self.end_headers()
            # the client may give up first (timeout)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(self.body)
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server_url(videos: dict[tuple[str, int, Any], Path]) -> Iterator[str]:
    _Handler.body = videos["mp4-h264", 37, 10].read_bytes()
    with local_server(_Handler) as url:
        yield url


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    without_proxies(monkeypatch)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _video_blocks(path: Path, url: str) -> dict[str, dict[str, Any]]:
    data = _b64(path.read_bytes())
    return {
        "v1 base64": {"type": "video", "base64": data, "mime_type": "video/mp4"},
        "v1 base64 without mime": {"type": "video", "base64": data},
        "v1 url http": {"type": "video", "url": f"{url}/v.mp4"},
        "v1 url data": {"type": "video", "url": f"data:video/mp4;base64,{data}"},
        "v1 url file": {"type": "video", "url": path.as_uri()},
        "v1 url path": {"type": "video", "url": str(path)},
        "path key": {"type": "video", "path": str(path)},
        "v0 base64": {"type": "video", "source_type": "base64", "data": data,
                      "mime_type": "video/mp4"},
        "v0 url": {"type": "video", "source_type": "url", "url": f"{url}/v.mp4"},
        "video_url": {"type": "video_url", "video_url": {"url": f"{url}/v.mp4"}},
        "video_url str": {"type": "video_url", "video_url": str(path)},
        "file block": {"type": "file", "base64": data, "mime_type": "video/mp4"},
        "openai file": {"type": "file",
                        "file": {"file_data": f"data:video/mp4;base64,{data}"}},
        "non_standard": {"type": "non_standard", "value": {"type": "video", "path": str(path)}},
    }  # fmt: skip


def test_every_video_block_form_samples_the_same_frames(
    videos: dict[tuple[str, int, Any], Path], server_url: str
) -> None:
    path = videos["mp4-h264", 37, 10]
    for name, block in _video_blocks(path, server_url).items():
        parts = content_to_parts(["Look:", block, "what happens?"], where="message 0")
        assert isinstance(parts[0], TextPart) and isinstance(parts[2], TextPart), name
        part = parts[1]
        assert isinstance(part, VideoPart), name
        assert part.indices == [2, 6, 11, 16, 20, 24, 29, 34], name
        assert [frame_number(f) for f in part.frames] == part.indices, name


def test_block_options_num_segments_start_end(videos: dict[tuple[str, int, Any], Path]) -> None:
    path = str(videos["mp4-h264", 37, 10])
    block = {"type": "video", "path": path, "num_segments": 4, "start": 1.0, "end": 2.0}
    (part,) = content_to_parts([block], where="m", video=VideoOptions(num_segments=16))
    assert isinstance(part, VideoPart)
    assert part.indices == card_get_index((1.0, 2.0), 10.0, 36, 0, 4).tolist() == [11, 13, 16, 19]
    (part,) = content_to_parts([{"type": "video", "path": path}], where="m",
                               video=VideoOptions(num_segments=3))  # fmt: skip
    assert isinstance(part, VideoPart) and len(part.frames) == 3
    only_start = {"type": "video", "path": path, "num_segments": 2, "start": 3.0}
    (part,) = content_to_parts([only_start], where="m")
    assert isinstance(part, VideoPart)
    assert part.indices == card_get_index((3.0, 1e9), 10.0, 36, 0, 2).tolist()


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        ({"num_segments": 0}, "num_segments must be an int"),
        ({"start": "0"}, "'start' must be a number of seconds"),
        ({"start": 2.0, "end": 1.0}, r"0 <= start < end"),
        ({"start": -1.0}, r"0 <= start < end"),
    ],
)
def test_bad_block_options_name_the_block(
    videos: dict[tuple[str, int, Any], Path], extra: dict[str, Any], pattern: str
) -> None:
    block = {"type": "video", "path": str(videos["mp4-h264", 5, 10]), **extra}
    with pytest.raises(MessageFormatError, match=pattern) as info:
        content_to_parts(["hi", block], where="message 3 (human)")
    assert "message 3 (human), content block 1 (type 'video')" in str(info.value)


def test_explicit_frames_are_used_as_given(tmp_path: Path) -> None:
    images = [Image.fromarray(frame_pixels(n)) for n in (5, 1, 9)]
    png = tmp_path / "f.png"
    Image.fromarray(frame_pixels(42)).save(png)
    block = {
        "type": "video",
        "frames": [
            images[0],
            {"type": "image", "image": images[1]},
            {"type": "image", "base64": _b64(png.read_bytes()), "mime_type": "image/png"},
            str(png),
            images[2],
        ],
        "num_segments": 2,  # ignored: explicit frames are not sampled
    }
    (part,) = content_to_parts([block], where="m")
    assert isinstance(part, VideoPart)
    assert [frame_number(f) for f in part.frames] == [5, 1, 42, 42, 9]
    assert part.frames[0] is images[0]  # an RGB PIL frame is used as is


@pytest.mark.parametrize(
    ("frames", "pattern"),
    [
        ([], "non-empty list"),
        ("x.png", "non-empty list"),
        ([3], "frame 1: a frame must be a PIL image"),
        ([{"type": "text", "text": "hi"}], "frame 1: a frame must be an image block"),
        ([{"type": "video", "path": "v.mp4"}], "cannot itself be a video"),
    ],
)
def test_bad_explicit_frames(frames: Any, pattern: str) -> None:
    with pytest.raises(MessageFormatError, match=pattern):
        content_to_parts([{"type": "video", "frames": frames}], where="m")


def test_bad_image_in_explicit_frames_is_an_image_error() -> None:
    with pytest.raises(ImageInputError, match="frame 2: base64 image data is not valid"):
        content_to_parts(
            [{"type": "video", "frames": [Image.new("RGB", (8, 8)),
                                           {"type": "image", "base64": "!!"}]}],
            where="m",
        )  # fmt: skip


def test_http_video_has_the_image_timeout_and_size_cap(
    videos: dict[tuple[str, int, Any], Path], server_url: str
) -> None:
    size = videos["mp4-h264", 37, 10].stat().st_size
    block = {"type": "video", "url": f"{server_url}/v.mp4"}
    with pytest.raises(VideoInputError, match=r"video at .*v.mp4 is larger than.*max_bytes"):
        content_to_parts([block], where="m", options=ImageLoadOptions(max_bytes=size - 1))
    started = time.monotonic()
    slow = {"type": "video", "url": f"{server_url}/slow.mp4"}
    with pytest.raises(VideoInputError, match=r"timed out.*fetch_timeout.*download the video"):
        content_to_parts([slow], where="m", options=ImageLoadOptions(fetch_timeout=0.3))
    assert time.monotonic() - started < 1.4
    with pytest.raises(VideoInputError, match="HTTP 404"):
        content_to_parts([{"type": "video", "url": f"{server_url}/gone.mp4"}], where="m")
    with pytest.raises(VideoInputError, match=r"'image/png', not a video/\* type"):
        content_to_parts([{"type": "video", "url": f"{server_url}/page.png"}], where="m")
    with pytest.raises(VideoInputError, match="allow_remote=False"):
        content_to_parts([block], where="m", options=ImageLoadOptions(allow_remote=False))


def test_video_sources_follow_the_image_rules(videos: dict[tuple[str, int, Any], Path]) -> None:
    path = videos["mp4-h264", 5, 10]
    data = _b64(path.read_bytes())
    with pytest.raises(VideoInputError, match="allow_local_files=False"):
        content_to_parts([{"type": "video", "path": str(path)}], where="m",
                         options=ImageLoadOptions(allow_local_files=False))  # fmt: skip
    with pytest.raises(VideoInputError, match=r"video file /nope/v\.mp4 does not exist"):
        content_to_parts([{"type": "video", "url": "/nope/v.mp4"}], where="m")
    with pytest.raises(VideoInputError, match=r"'image/png', not a video/\* type"):
        content_to_parts([{"type": "video", "base64": data, "mime_type": "image/png"}], where="m")
    with pytest.raises(VideoInputError, match="larger than the limit"):
        content_to_parts([{"type": "video", "base64": data}], where="m",
                         options=ImageLoadOptions(max_bytes=100))  # fmt: skip
    with pytest.raises(VideoInputError, match="unsupported scheme 'ftp'"):
        content_to_parts([{"type": "video", "url": "ftp://x/v.mp4"}], where="m")
    with pytest.raises(MessageFormatError, match="provider file id"):
        content_to_parts([{"type": "video", "file_id": "file-123"}], where="m")
    with pytest.raises(MessageFormatError, match="no video data"):
        content_to_parts([{"type": "video"}], where="m")


# ----------------------------------------------------------------------------- prompt


def test_a_video_becomes_numbered_frames_in_the_cards_prompt(
    videos: dict[tuple[str, int, Any], Path],
) -> None:
    message = HumanMessage(
        content=[
            {"type": "video", "path": str(videos["mp4-h264", 37, 10])},
            "What is the red panda doing?",
        ]
    )
    turns = messages_to_turns([message], video_options=VideoOptions())
    frames = [p for p in turns[1].parts if isinstance(p, VideoFrame)]
    assert [f.number for f in frames] == list(range(1, 9))
    assert all(f.tiling.max_tiles == 1 and f.tiling.min_tiles == 1 for f in frames)
    assert [frame_number(f.image) for f in frames] == [2, 6, 11, 16, 20, 24, 29, 34]
    prompt = "".join(text for text, _ in render_segments(turns, [1] * 8))
    # the cards: ''.join(f'Frame{i+1}: <image>\n' ...) + question, each <image> one tile
    question = "".join(f"Frame{i + 1}: <image>\n" for i in range(8))
    question += "What is the red panda doing?"
    expected_user = question.replace("<image>", image_placeholder(1))
    # model.chat's template: system message, the user turn, the assistant header
    assert prompt == (
        f"<|im_start|>system\n{INTERNVL_SYSTEM_MESSAGE}<|im_end|>\n"
        f"<|im_start|>user\n{expected_user}<|im_end|>\n<|im_start|>assistant\n"
    )


def test_frames_do_not_renumber_images(videos: dict[tuple[str, int, Any], Path]) -> None:
    red, blue = Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 8), "blue")
    message = HumanMessage(
        content=[
            {"type": "image", "image": red},
            {"type": "video", "path": str(videos["mkv-ffv1", 5, 10]), "num_segments": 2},
            {"type": "image", "image": blue},
            "compare",
        ]
    )
    options = VideoOptions(max_tiles_per_frame=3)
    turns = messages_to_turns([message], system_message="", video_options=options)
    frames = [p for p in turns[1].parts if isinstance(p, VideoFrame)]
    assert [f.tiling.max_tiles for f in frames] == [3, 3]
    prompt = "".join(text for text, _ in render_segments(turns, [1, 3, 3, 1]))
    one, three = image_placeholder(1), image_placeholder(3)
    assert f"Image-1: {one}\nFrame1: {three}\nFrame2: {three}\nImage-2: {one}\ncompare" in prompt


def test_a_system_message_cannot_carry_a_video(videos: dict[tuple[str, int, Any], Path]) -> None:
    from langchain_core.messages import SystemMessage

    message = SystemMessage(content=[{"type": "video", "path": str(videos["mp4-h264", 5, 10])}])
    with pytest.raises(MessageFormatError, match="cannot carry images or videos"):
        messages_to_turns([message])


def test_image_parts_unchanged_next_to_videos() -> None:
    parts = content_to_parts([{"type": "image", "image": Image.new("RGB", (4, 4))}], where="m")
    assert isinstance(parts[0], ImagePart)

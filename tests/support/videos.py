"""Short test videos written with PyAV whose every frame shows its own number.

Frame i is split into `BITS` vertical stripes, stripe b white when bit b of i is set (black
otherwise), over a background colour that changes with i; `frame_number` reads the number back
from a decoded frame, robustly through lossy codecs (H.264, MPEG-4).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

BITS = 10  # up to 1023 frames
WIDTH, HEIGHT = 160, 64


def frame_pixels(number: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """The RGB pixels (height, width, 3) of frame `number`."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    stripe = width // BITS
    for bit in range(BITS):
        if number >> bit & 1:
            pixels[: height // 2, bit * stripe : (bit + 1) * stripe] = 255
    # the lower half: a colour that differs from frame to frame
    pixels[height // 2 :] = ((number * 37) % 200 + 30, (number * 91) % 200 + 30, 128)
    return pixels


def frame_number(image: Image.Image) -> int:
    """The number `frame_pixels` drew on a (decoded, possibly resized) frame."""
    gray = np.asarray(image.convert("L"), dtype=np.float32)
    top = gray[: gray.shape[0] // 2]
    stripe = top.shape[1] / BITS
    number = 0
    for bit in range(BITS):
        column = top[:, int(bit * stripe + stripe / 4) : int((bit + 1) * stripe - stripe / 4)]
        if column.mean() > 128:
            number |= 1 << bit
    return number


def write_video(
    path: Path,
    num_frames: int,
    *,
    fps: int | Fraction = 10,
    codec: str = "libx264",
    width: int = WIDTH,
    height: int = HEIGHT,
) -> Path:
    """Write `num_frames` numbered frames at `fps` (container from the suffix: .mp4, .mkv...)."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p" if codec != "ffv1" else "yuv444p"
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "ultrafast"}
        if not num_frames:
            container.start_encoding()  # a header and a video stream, without a frame
        for number in range(num_frames):
            frame = av.VideoFrame.from_ndarray(frame_pixels(number, width, height), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path

"""Benchmark our InternVL preprocessing against transformers' GotOcr2ImageProcessorPil.

Run: ``.venv/bin/python tools/bench_preprocess.py [--width W --height H --max-tiles N]``.
Both sides get the same PIL image and the same tiling; the script checks that their outputs
agree, times each (warm-up, then the median of several repeats) and exits non-zero when ours
is not the faster one.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from unittest import mock

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout

from internvl_agent.engine import images as images_module
from internvl_agent.engine import resize as resize_module
from internvl_agent.engine.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TilingConfig,
    preprocess_image,
)

T = TypeVar("T")


def make_image(width: int, height: int) -> Image.Image:
    """A deterministic photo-like RGB image (gradients plus noise)."""
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:height, 0:width]
    base = np.stack([xs * 255 / width, ys * 255 / height, (xs + ys) * 127 / (width + height)], -1)
    noisy = base + rng.normal(0, 20, base.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def reference_processor(config: TilingConfig):
    """GotOcr2ImageProcessorPil configured like InternVL."""
    from transformers.image_utils import PILImageResampling
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import (
        GotOcr2ImageProcessorPil,
    )

    return GotOcr2ImageProcessorPil(
        crop_to_patches=True,
        min_patches=config.min_tiles,
        max_patches=config.max_tiles,
        size={"height": config.tile_size, "width": config.tile_size},
        resample=PILImageResampling.BICUBIC,
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
    )


def median_ms(
    funcs: dict[str, Callable[[], object]], warmup: int, repeats: int
) -> dict[str, float]:
    """Median wall time (ms) of each function, interleaved so machine load hits all alike."""
    for _ in range(warmup):
        for func in funcs.values():
            func()
    samples: dict[str, list[float]] = {name: [] for name in funcs}
    for _ in range(repeats):
        for name, func in funcs.items():
            start = time.perf_counter()
            func()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(times) * 1000 for name, times in samples.items()}


def on_one_thread(func: Callable[[], T]) -> Callable[[], T]:
    """`func` with the resizes and the normalization kept on the calling thread."""

    def run() -> T:
        with (
            mock.patch.object(images_module, "cpu_threads", lambda: 1),
            mock.patch.object(resize_module, "cpu_threads", lambda: 1),
        ):
            return func()

    return run


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--max-tiles", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=15)
    return parser.parse_args()


def main() -> int:
    """Check agreement, time both implementations, print the comparison."""
    args = parse_args()
    config = TilingConfig(max_tiles=args.max_tiles)
    image = make_image(args.width, args.height)
    processor = reference_processor(config)

    ours = preprocess_image(image, config)
    theirs = processor(images=image, return_tensors="np")["pixel_values"]
    max_diff = float(np.abs(ours.pixel_values - theirs).max())

    timings = median_ms(
        {
            "ours": lambda: preprocess_image(image, config),
            "ours, one thread": on_one_thread(lambda: preprocess_image(image, config)),
            "theirs": lambda: processor(images=image, return_tensors="np"),
        },
        args.warmup,
        args.repeats,
    )
    ours_ms, theirs_ms = timings["ours"], timings["theirs"]
    single = on_one_thread(lambda: preprocess_image(image, config))()
    assert np.array_equal(single.pixel_values, ours.pixel_values)  # threads change no value

    print(f"image {args.width}x{args.height}, max_tiles={args.max_tiles}, "
          f"{resize_module.cpu_threads()} threads (cores available)")  # fmt: skip
    print(f"  grid {ours.grid} (cols, rows), {ours.num_tiles} tiles with thumbnail")
    print(f"  max |ours - GotOcr2|     : {max_diff:.2e}")
    print(f"  ours (internvl_agent)    : {ours_ms:8.2f} ms (median of {args.repeats})")
    print(f"  ours, one thread         : {timings['ours, one thread']:8.2f} ms")
    print(f"  GotOcr2ImageProcessorPil : {theirs_ms:8.2f} ms (median of {args.repeats})")
    print(f"  speed-up                 : {theirs_ms / ours_ms:8.2f}x "
          f"(one thread: {theirs_ms / timings['ours, one thread']:.2f}x)")  # fmt: skip
    if max_diff >= 1e-3 or ours_ms >= theirs_ms:
        print("FAIL: outputs differ or ours is not faster", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""PIL's bicubic resize, bit for bit, with its two passes spread over the CPU cores.

PIL resizes in two separable passes: along the rows first (each output row depends on
one input row only), then along the columns (each output column on one column of the
first pass). So the first pass is cut into bands of rows and the second into bands of
columns, and PIL itself resizes each band on a thread of its own (it releases the GIL
while it resamples). A pass's coefficients depend only on the two sizes along it, so every
band is computed with exactly the numbers PIL uses for the whole image, and the result is
identical to ``image.resize(size, Image.Resampling.BICUBIC)`` (tests/unit/test_resize.py).

The passes run in PIL's own order: rows first, except that Pillow 13 runs the columns first
when the height shrinks much more than the width (python-pillow/Pillow#9549). Which order
the installed Pillow takes for a pair of sizes is found once per pair (`pil_pass_order`).
"""

from __future__ import annotations

import functools
import itertools
import os
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from PIL import Image

__all__ = ["cpu_threads", "resize_bicubic"]

BICUBIC = Image.Resampling.BICUBIC
MAX_THREADS = 8
# A band smaller than this many output pixels costs more in threading than it saves.
MIN_BAND_PIXELS = 128 * 1024
# Modes whose PIL resize is a plain per-channel pass (no premultiplied alpha, no palette).
BANDED_MODES = frozenset({"RGB", "L"})

T = TypeVar("T")


def cpu_threads() -> int:
    """The CPU cores this process may run on (at most MAX_THREADS)."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    return max(1, min(count, MAX_THREADS))


def resize_bicubic(
    image: Image.Image, width: int, height: int, threads: int | None = None
) -> Image.Image:
    """``image.resize((width, height), BICUBIC)``, computed in bands on up to `threads`
    threads (default: one per core); the pixels are PIL's own."""
    threads = cpu_threads() if threads is None else max(1, threads)
    too_small = max(image.width * image.height, width * height) < 2 * MIN_BAND_PIXELS
    if image.mode not in BANDED_MODES or threads == 1 or too_small or image.size == (width, height):
        return image.resize((width, height), resample=BICUBIC)
    image.load()  # a lazily opened file is read once here, not by several threads at once
    if width == image.width:
        return _columns_pass(image, height, threads)
    if height == image.height:
        return _rows_pass(image, width, threads)
    order = pil_pass_order(image.size, (width, height))
    if order == "rows":
        return _columns_pass(_rows_pass(image, width, threads), height, threads)
    if order == "columns":
        return _rows_pass(_columns_pass(image, height, threads), width, threads)
    return image.resize((width, height), resample=BICUBIC)


@functools.lru_cache(maxsize=64)
def pil_pass_order(source: tuple[int, int], target: tuple[int, int]) -> str | None:
    """Which pass this Pillow runs first for these sizes, "rows" or "columns", found once
    on a noise image of the same sizes (the two orders round differently); None when
    neither gives PIL's pixels (then PIL resizes alone)."""
    noise = Image.effect_noise(source, 64)
    whole = noise.resize(target, resample=BICUBIC).tobytes()
    rows_first = noise.resize((target[0], source[1]), resample=BICUBIC)
    if rows_first.resize(target, resample=BICUBIC).tobytes() == whole:
        return "rows"
    columns_first = noise.resize((source[0], target[1]), resample=BICUBIC)
    if columns_first.resize(target, resample=BICUBIC).tobytes() == whole:
        return "columns"
    return None


def _rows_pass(image: Image.Image, width: int, threads: int) -> Image.Image:
    """The rows pass: every row resized to `width`, in bands of rows."""
    return _one_pass(image, width, image.height, threads, rows=True)


def _columns_pass(image: Image.Image, height: int, threads: int) -> Image.Image:
    """The columns pass: every column resized to `height`, in bands of columns."""
    return _one_pass(image, image.width, height, threads, rows=False)


def _one_pass(
    image: Image.Image, width: int, height: int, threads: int, *, rows: bool
) -> Image.Image:
    """One PIL pass to (width, height), along the rows or the columns: each band of lines is
    cropped, resized by PIL on a thread of its own, and pasted back in place."""
    bands = _bands(image.height, width, threads) if rows else _bands(image.width, height, threads)
    if len(bands) == 1:
        return image.resize((width, height), resample=BICUBIC)

    def job(start: int, end: int) -> Callable[[], Image.Image]:
        if rows:
            box, size = (0, start, image.width, end), (width, end - start)
        else:
            box, size = (start, 0, end, image.height), (end - start, height)
        return lambda: image.crop(box).resize(size, resample=BICUBIC)

    done = run_in_threads([job(start, end) for start, end in bands])
    out = Image.new(image.mode, (width, height))
    for (start, _), part in zip(bands, done, strict=True):
        out.paste(part, (0, start) if rows else (start, 0))
    return out


def _bands(lines: int, length: int, threads: int) -> list[tuple[int, int]]:
    """`lines` (each `length` output pixels long) cut into at most `threads` even bands."""
    count = max(1, min(threads, lines, lines * length // MIN_BAND_PIXELS))
    edges = [lines * i // count for i in range(count + 1)]
    return list(itertools.pairwise(edges))


def run_in_threads(jobs: Sequence[Callable[[], T]]) -> list[T]:
    """Each job's result, in order: the first runs on this thread, the others on threads
    of their own (a thread per call, not a pool, stays safe across ``os.fork``); the first
    exception raised is raised here once every job has ended."""
    results: list[T | None] = [None] * len(jobs)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = jobs[index]()
        except BaseException as exc:  # handed to the calling thread
            errors.append(exc)

    workers = [
        threading.Thread(target=run, args=(i,), name="internvl-resize", daemon=True)
        for i in range(1, len(jobs))
    ]
    for worker in workers:
        worker.start()
    if jobs:
        run(0)
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
    return results  # type: ignore[return-value]

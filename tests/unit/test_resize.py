"""The banded bicubic resize gives PIL's pixels exactly, whatever the sizes and threads."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from internvl_agent.engine import resize as resize_module
from internvl_agent.engine.resize import resize_bicubic, run_in_threads

SIZES = [
    ((1920, 1080), (1792, 896)),  # both shrink
    ((1920, 1080), (448, 448)),  # the thumbnail
    ((1080, 1920), (448, 448)),  # height shrinks much more: Pillow 13 does the columns first
    ((1080, 1920), (896, 1792)),
    ((1366, 768), (1344, 896)),  # width shrinks, height grows
    ((1003, 677), (1344, 896)),  # both grow, odd sizes
    ((3840, 2160), (1792, 896)),
    ((300, 200), (896, 448)),
    ((1, 1), (448, 448)),
    ((5000, 7), (448, 896)),
    ((7, 5000), (896, 448)),  # height shrinks, width grows: Pillow may do the columns first
    ((640, 3000), (1344, 896)),
    ((640, 480), (640, 896)),  # one pass only
    ((640, 480), (1344, 480)),
]


def noisy(width: int, height: int, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(width * 7919 + height)
    bands = 3 if mode == "RGB" else 1
    pixels = rng.integers(0, 256, (height, width, bands), dtype=np.uint8)
    return Image.fromarray(pixels if bands == 3 else pixels[..., 0], mode)


@pytest.mark.parametrize(("source", "target"), SIZES)
@pytest.mark.parametrize("threads", [2, 3, 8])
def test_banded_resize_is_pils_resize(
    source: tuple[int, int], target: tuple[int, int], threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resize_module, "MIN_BAND_PIXELS", 1)  # bands even on small images
    image = noisy(*source)
    expected = np.asarray(image.resize(target, resample=Image.Resampling.BICUBIC))
    got = np.asarray(resize_bicubic(image, *target, threads=threads))
    assert got.shape == expected.shape
    assert np.array_equal(got, expected)


def test_grey_images_are_banded_too_and_other_modes_left_to_pil(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(resize_module, "MIN_BAND_PIXELS", 1)
    grey = noisy(333, 211, "L")
    expected = grey.resize((448, 896), resample=Image.Resampling.BICUBIC)
    assert resize_bicubic(grey, 448, 896, threads=4).tobytes() == expected.tobytes()
    rgba = noisy(50, 40).convert("RGBA")
    assert resize_bicubic(rgba, 30, 20, threads=4).tobytes() == (
        rgba.resize((30, 20), resample=Image.Resampling.BICUBIC).tobytes()
    )


def test_the_pass_order_is_found_once_per_pair_of_sizes() -> None:
    resize_module.pil_pass_order.cache_clear()
    assert resize_module.pil_pass_order((1920, 1080), (1792, 896)) == "rows"  # every Pillow
    assert resize_module.pil_pass_order((1920, 1080), (1792, 896)) == "rows"
    info = resize_module.pil_pass_order.cache_info()
    assert (info.misses, info.hits) == (1, 1)


def test_bands_cover_every_line_once() -> None:
    for lines, threads in ((1080, 2), (1081, 3), (5, 8), (1, 4)):
        bands = resize_module._bands(lines, 10**6, threads)
        assert bands[0][0] == 0 and bands[-1][1] == lines
        assert all(a[1] == b[0] for a, b in itertools.pairwise(bands))
        assert len(bands) == min(threads, lines)


def test_small_images_are_not_split() -> None:
    assert resize_module._bands(100, 100, 8) == [(0, 100)]


def test_run_in_threads_keeps_order_and_raises_the_first_error() -> None:
    assert run_in_threads([lambda i=i: i * i for i in range(5)]) == [0, 1, 4, 9, 16]
    assert run_in_threads([]) == []

    def boom() -> int:
        raise ValueError("band 2 failed")

    with pytest.raises(ValueError, match="band 2 failed"):
        run_in_threads([lambda: 1, boom, lambda: 3])


def test_a_lazily_opened_file_is_read_once_before_the_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resize_module, "MIN_BAND_PIXELS", 1)
    noisy(900, 700).save(tmp_path / "shot.png")
    expected = Image.open(tmp_path / "shot.png").resize((448, 896), Image.Resampling.BICUBIC)
    for _ in range(5):
        lazy = Image.open(tmp_path / "shot.png")  # not decoded yet
        assert resize_bicubic(lazy, 448, 896, threads=4).tobytes() == expected.tobytes()

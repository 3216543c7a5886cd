"""internvl_agent.coordinates: model 0..1000 <-> screenshot pixels, and PixelMap.

The desktop's physical and logical maps are tested with their monitors in test_screens.py.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from internvl_agent.coordinates import (
    OffScreenError,
    PixelMap,
    box_center,
    box_to_pixels,
    checked_norm_to_pixels,
    css_map,
    expected_shot_size,
    norm_to_pixels,
    round_half_up,
)

SCALES = (1.0, 1.25, 1.5, 2.0, 3.0)


# --------------------------------------------------------------------------- model <-> screenshot


@pytest.mark.parametrize(
    ("point", "size", "expected"),
    [
        ((0, 0), (1920, 1080), (0, 0)),
        ((500, 500), (1920, 1080), (960, 540)),
        ((1000, 1000), (1920, 1080), (1919, 1079)),  # kept inside the image
        ((500, 500), (101, 57), (51, 29)),  # 50.5 -> 51, 28.5 -> 29: halves round up
        ((333, 667), (7, 3), (2, 2)),
        ((999, 1), (1, 1), (0, 0)),
        ((250.4, 750.6), (1000, 1000), (250, 751)),
    ],
)
def test_norm_to_pixels(
    point: tuple[float, float], size: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert norm_to_pixels(*point, size) == expected


def test_round_half_up_and_boxes() -> None:
    assert [round_half_up(v) for v in (0.5, 1.5, 2.5, -0.5, 2.49)] == [1, 2, 3, 0, 2]
    assert box_to_pixels((0, 0, 1000, 1000), (50, 40)) == (0, 0, 50, 40)  # not clamped
    assert box_to_pixels((100, 200, 301, 400), (333, 199)) == (33, 40, 100, 80)
    assert box_center((100, 200, 301, 400)) == (200.5, 300.0)


def test_checked_norm_to_pixels_maps_points_on_the_image() -> None:
    assert checked_norm_to_pixels((500, 500), (200, 100)) == (100, 50)
    assert checked_norm_to_pixels((1000, 1000), (200, 100)) == (199, 99)
    assert checked_norm_to_pixels((0, 0), (1, 1)) == (0, 0)


@pytest.mark.parametrize("point", [(1001, 5), (5, -1), (-3, 2000)])
def test_checked_norm_to_pixels_refuses_points_outside_0_1000(point: tuple[int, int]) -> None:
    with pytest.raises(OffScreenError) as info:
        checked_norm_to_pixels(point, (200, 100))
    x, y = point
    assert str(info.value) == (
        f"({x}, {y}) is outside 0..1000; coordinates are 0..1000 of the screenshot"
    )
    assert isinstance(info.value, ValueError)


def test_checked_norm_to_pixels_refuses_an_empty_screenshot() -> None:
    with pytest.raises(OffScreenError, match=r"^\(5, 5\) falls outside the screenshot; nothing"):
        checked_norm_to_pixels((5, 5), (0, 10))


# --------------------------------------------------------------------------- PixelMap


def test_pixel_map_centre_floor_offset_and_inverse() -> None:
    """A 2x downscaled screenshot of a grid area at (-100, 50)."""
    pixel_map = PixelMap.spanning((10, 5), (20, 10), (-100, 50))
    assert pixel_map.centre(0, 0) == (Fraction(-99), Fraction(51))
    assert pixel_map.to_grid(0, 0) == (-99, 51)
    assert pixel_map.to_grid(9, 4) == (-81, 59)
    assert pixel_map.from_grid(-81, 59) == (9, 4)
    assert pixel_map.contains(9, 4) and not pixel_map.contains(10, 0)
    assert not pixel_map.contains(0, -1)


def test_pixel_map_divided_by_floors_the_exact_centre() -> None:
    """floor((left + (x + 0.5) * r) / s), not floor(floor(...) / s)."""
    logical = PixelMap.spanning((2, 2), (10, 10)).divided_by(2.5)
    # pixel 0's centre is physical 2.5, logical 1.0 (floor(2) / 2.5 would give 0); pixel 1:
    # 7.5 -> 3.0
    assert logical.to_grid(0, 1) == (1, 3)
    assert logical.from_grid(1, 3) == (0, 1)  # logical centres 1.5 and 3.5 -> physical 3.75, 8.75


def test_invalid_pixel_maps() -> None:
    with pytest.raises(ValueError, match="shot_size"):
        PixelMap.spanning((0, 10), (10, 10))
    with pytest.raises(ValueError, match="scale_factor"):
        PixelMap.spanning((10, 10), (10, 10)).divided_by(0)


@pytest.mark.parametrize("dsf", SCALES)
def test_css_map_lands_in_the_css_pixel_containing_each_screenshot_pixel(dsf: float) -> None:
    css = (101, 77)
    pixel_map = css_map(expected_shot_size(css, dsf), css, dsf)
    for x in range(pixel_map.shot_size[0]):
        css_x, _ = pixel_map.to_grid(x, 0)
        # the last column may be a partial device pixel whose centre is past the viewport
        assert css_x == min(math.floor((x + 0.5) / dsf), css[0] - 1)
    assert pixel_map.to_grid(*[side - 1 for side in pixel_map.shot_size]) == (100, 76)
    assert pixel_map.bounds == css


def test_css_map_uses_the_ratio_for_a_screenshot_of_another_size() -> None:
    pixel_map = css_map((500, 400), (1000, 800), device_scale_factor=1.0)
    assert pixel_map.to_grid(0, 0) == (1, 1)  # pixel 0 covers CSS [0, 2); centre 1
    assert pixel_map.to_grid(250, 399) == (501, 799)
    assert not pixel_map.contains(500, 0)
    assert not pixel_map.contains(0, -1)


def test_expected_shot_size_rounds_half_up() -> None:
    assert expected_shot_size((1037, 679), 1.5) == (1556, 1019)
    assert expected_shot_size((1037, 679), 1.25) == (1296, 849)

"""The desktop's monitors and coordinate spaces (screens.py, coordinates.py): no display needed.

Expected values are worked out by hand from the formulas in coordinates.py's PixelMap:
physical = left + (x + 0.5) * region/shot, logical = floor(physical / scale_factor).
"""

from __future__ import annotations

import itertools

import pytest

from internvl_agent.computers.screens import (
    Layout,
    Rect,
    ScreenMap,
    bounding,
    detect_scale_factor,
    fit_width,
    parse_monitor,
)

# A primary 2560x1440, a 1920x1080 monitor to its left (negative x) and a 1280x1024 one
# above it (negative y), as Windows and macOS report them.
PRIMARY = Rect(0, 0, 2560, 1440)
LEFT = Rect(-1920, 200, 1920, 1080)
ABOVE = Rect(640, -1024, 1280, 1024)
MSS_MONITORS = [
    {"left": -1920, "top": -1024, "width": 4480, "height": 2464},  # mss's union entry
    {"left": 0, "top": 0, "width": 2560, "height": 1440, "is_primary": True},
    {"left": -1920, "top": 200, "width": 1920, "height": 1080},
    {"left": 640, "top": -1024, "width": 1280, "height": 1024},
]


# --------------------------------------------------------------------------- geometry


def test_rect_edges_and_containment() -> None:
    rect = Rect(-10, 5, 20, 10)
    assert (rect.right, rect.bottom, rect.size) == (10, 15, (20, 10))
    assert rect.contains(-10, 5) and rect.contains(9, 14)
    assert not rect.contains(10, 5) and not rect.contains(0, 15) and not rect.contains(-11, 5)
    with pytest.raises(ValueError, match="positive size"):
        Rect(0, 0, 0, 10)


def test_bounding_box_of_monitors_with_negative_offsets() -> None:
    assert bounding([PRIMARY, LEFT, ABOVE]) == Rect(-1920, -1024, 4480, 2464)


def test_layout_from_mss_keeps_order_offsets_and_primary() -> None:
    layout = Layout.from_mss(MSS_MONITORS)
    assert layout.monitors == (PRIMARY, LEFT, ABOVE)
    assert layout.primary == 1
    assert layout.bounds == Rect(-1920, -1024, 4480, 2464)
    assert layout.region(0) == layout.bounds
    assert layout.region(2) == LEFT
    assert layout.monitor_at(-1, 200) == 2
    assert layout.monitor_at(-1, 199) is None  # above the left monitor: a gap
    assert layout.monitor_at(700, -1) == 3
    assert layout.monitor_at(0, -1) is None  # above the primary, left of the upper one
    assert layout.monitor_at(2559, 1439) == 1


def test_layout_region_out_of_range_names_the_monitors() -> None:
    layout = Layout.from_mss(MSS_MONITORS)
    with pytest.raises(ValueError, match=r"no monitor 4") as info:
        layout.region(4)
    message = str(info.value)
    assert "1 = 2560x1440 at (0, 0) (primary)" in message
    assert "2 = 1920x1080 at (-1920, 200)" in message
    assert "0 = all (4480x2464 at (-1920, -1024))" in message


def test_layout_primary_flag_and_single_union_entry() -> None:
    monitors = [
        {"left": 0, "top": 0, "width": 3000, "height": 1000},
        {"left": 0, "top": 0, "width": 1000, "height": 1000, "is_primary": False},
        {"left": 1000, "top": 0, "width": 2000, "height": 1000, "is_primary": True},
    ]
    assert Layout.from_mss(monitors).primary == 2
    only_union = Layout.from_mss([{"left": 0, "top": 0, "width": 800, "height": 600}])
    assert only_union.monitors == (Rect(0, 0, 800, 600),)


def test_layout_in_mss_points_becomes_physical_pixels() -> None:
    """A Retina Mac: mss reports points, the capture has twice as many pixels."""
    monitors = [
        {"left": -1440, "top": 0, "width": 2880, "height": 900},
        {"left": 0, "top": 0, "width": 1440, "height": 900},
        {"left": -1440, "top": 0, "width": 1440, "height": 900},
    ]
    layout = Layout.from_mss(monitors, units=2.0)
    assert layout.monitors == (Rect(0, 0, 2880, 1800), Rect(-2880, 0, 2880, 1800))


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0), ("all", 0), (" ALL ", 0), (1, 1), ("2", 2), ("primary", "primary")],
)
def test_parse_monitor(value: int | str, expected: int | str) -> None:
    assert parse_monitor(value) == expected


@pytest.mark.parametrize("value", [-1, "-1", "left", "", True, 1.5])
def test_parse_monitor_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="monitor must be"):
        parse_monitor(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("size", "max_width", "expected"),
    [
        ((2560, 1440), 1280, (1280, 720)),
        ((1366, 768), 1000, (1000, 562)),  # 562.2
        ((1280, 800), 1280, (1280, 800)),
        ((1280, 800), 1920, (1280, 800)),  # never upscaled
        ((5120, 1440), None, (5120, 1440)),
        ((4000, 1), 100, (100, 1)),
    ],
)
def test_fit_width(size: tuple[int, int], max_width: int | None, expected: tuple[int, int]) -> None:
    assert fit_width(size, max_width) == expected


@pytest.mark.parametrize(
    ("logical", "candidates", "expected"),
    [
        ((1440, 900), [(2880, 1800)], 2.0),  # Retina
        ((1536, 864), [(1920, 1080)], 1.25),
        ((1920, 1080), [(2880, 1620)], 1.5),
        ((1920, 1080), [(3360, 1890)], 1.75),
        ((2304, 1024), [(2304, 1024)], 1.0),  # X11: the root window
        ((1920, 1080), [(3840, 1080), (1920, 1080)], 1.0),  # union disagrees, primary fits
        ((1000, 1000), [(1500, 1200)], 1.0),  # no candidate agrees on both axes
        ((1000, 1000), [(1333, 1333)], 1.333),  # uncommon factors are kept
        ((0, 0), [(10, 10)], 1.0),
    ],
)
def test_detect_scale_factor(
    logical: tuple[int, int], candidates: list[tuple[int, int]], expected: float
) -> None:
    assert detect_scale_factor(logical, candidates) == pytest.approx(expected)


# --------------------------------------------------------------------------- mapping


@pytest.mark.parametrize(
    ("scale", "pixel", "logical"),
    [
        # primary, no resize: logical = floor((x + 0.5) / s)
        (1.0, (0, 0), (0, 0)),
        (1.0, (2559, 1439), (2559, 1439)),
        (1.25, (0, 0), (0, 0)),
        (1.25, (1000, 625), (800, 500)),  # 1000.5 / 1.25 = 800.4
        (1.25, (999, 624), (799, 499)),  # 999.5 / 1.25 = 799.6
        (1.5, (1000, 1439), (667, 959)),  # 1000.5 / 1.5 = 667.0, 959.67
        (1.5, (2, 3), (1, 2)),  # 1.67, 2.33
        (2.0, (1001, 1), (500, 0)),  # 500.75, 0.75
        (2.0, (2559, 1439), (1279, 719)),
    ],
)
def test_primary_monitor_scale_factors(
    scale: float, pixel: tuple[int, int], logical: tuple[int, int]
) -> None:
    screen_map = ScreenMap(PRIMARY, PRIMARY.size, scale)
    assert screen_map.physical.to_grid(*pixel) == pixel
    assert screen_map.logical.to_grid(*pixel) == logical


@pytest.mark.parametrize(
    ("scale", "pixel", "physical", "logical"),
    [
        (1.0, (0, 0), (-1920, 200), (-1920, 200)),
        (1.0, (1919, 1079), (-1, 1279), (-1, 1279)),
        # centre -1919.5 / 1.25 = -1535.6 -> -1536; 200.5 / 1.25 = 160.4 -> 160
        (1.25, (0, 0), (-1920, 200), (-1536, 160)),
        # -0.5 / 1.5 = -0.33 -> -1 (floor, not truncation); 1279.5 / 1.5 = 853
        (1.5, (1919, 1079), (-1, 1279), (-1, 853)),
        (2.0, (960, 540), (-960, 740), (-480, 370)),
    ],
)
def test_monitor_left_of_primary_has_negative_x(
    scale: float,
    pixel: tuple[int, int],
    physical: tuple[int, int],
    logical: tuple[int, int],
) -> None:
    screen_map = ScreenMap(LEFT, LEFT.size, scale)
    assert screen_map.physical.to_grid(*pixel) == physical
    assert screen_map.logical.to_grid(*pixel) == logical


@pytest.mark.parametrize(
    ("scale", "pixel", "physical", "logical"),
    [
        (1.0, (0, 0), (640, -1024), (640, -1024)),
        (1.0, (1279, 1023), (1919, -1), (1919, -1)),
        # (650.5, -1013.5) / 2 = (325.25, -506.75)
        (2.0, (10, 10), (650, -1014), (325, -507)),
        # (1919.5, -0.5) / 1.25 = (1535.6, -0.4)
        (1.25, (1279, 1023), (1919, -1), (1535, -1)),
    ],
)
def test_monitor_above_primary_has_negative_y(
    scale: float,
    pixel: tuple[int, int],
    physical: tuple[int, int],
    logical: tuple[int, int],
) -> None:
    screen_map = ScreenMap(ABOVE, ABOVE.size, scale)
    assert screen_map.physical.to_grid(*pixel) == physical
    assert screen_map.logical.to_grid(*pixel) == logical


def test_resized_screenshot_scales_back_to_physical() -> None:
    """A 2560x1440 monitor right of a 1920 one, captured at 1280x720 (half size)."""
    region = Rect(1920, 0, 2560, 1440)
    screen_map = ScreenMap(region, fit_width(region.size, 1280))
    assert screen_map.shot_size == (1280, 720)
    assert screen_map.physical.to_grid(0, 0) == (1921, 1)  # centre of a 2x2 block
    assert screen_map.physical.to_grid(1279, 719) == (4479, 1439)
    assert screen_map.physical.to_grid(640, 360) == (3201, 721)
    scaled = ScreenMap(region, (1280, 720), 1.5)
    assert scaled.logical.to_grid(0, 0) == (1280, 0)  # 1921 / 1.5 = 1280.67
    assert scaled.logical.to_grid(1279, 719) == (2986, 959)  # 4479 / 1.5 = 2986, 1439 / 1.5


def test_non_integer_resize_ratio() -> None:
    """1366x768 shown at 1000x562: each axis keeps its own ratio."""
    region = Rect(0, 0, 1366, 768)
    screen_map = ScreenMap(region, fit_width(region.size, 1000))
    # x: (500.5 * 1.366) = 683.68; y: 281.5 * 768 / 562 = 384.68
    assert screen_map.physical.to_grid(500, 281) == (683, 384)
    assert screen_map.physical.to_grid(999, 561) == (1365, 767)


def test_each_axis_has_its_own_ratio() -> None:
    """A screenshot squeezed more in one direction (2x across, 4x down)."""
    screen_map = ScreenMap(Rect(100, 200, 1000, 1000), (500, 250))
    assert screen_map.physical.to_grid(0, 249) == (101, 1198)  # 100 + 0.5 * 2, 200 + 249.5 * 4
    assert screen_map.physical.to_grid(499, 0) == (1099, 202)
    assert screen_map.physical.from_grid(1099, 1199) == (499, 249)


def test_all_monitors_union_image() -> None:
    """monitor=0: one image of the bounding box, downscaled; gaps are refused."""
    layout = Layout.from_mss(MSS_MONITORS)
    bounds = layout.bounds  # 4480x2464 at (-1920, -1024)
    screen_map = ScreenMap(bounds, fit_width(bounds.size, 2240), 1.0, layout.monitors)
    assert screen_map.shot_size == (2240, 1232)
    # union pixel (960, 512): physical -1920 + 960.5 * 2 = 1, -1024 + 1025 = 1 -> primary
    assert screen_map.physical.to_grid(960, 512) == (1, 1)
    assert screen_map.problem(960, 512) is None
    # the left monitor starts at y=200: union row (200 + 1024) / 2 = 612
    assert screen_map.physical.to_grid(0, 612) == (-1919, 201)
    assert screen_map.problem(0, 612) is None
    assert "gap between monitors" in (screen_map.problem(0, 0) or "")
    assert "gap between monitors" in (screen_map.problem(0, 1231) or "")  # below the left one
    assert "gap between monitors" in (screen_map.problem(2239, 0) or "")  # right of the upper
    assert screen_map.problem(1500, 0) is None  # on the upper monitor
    # with a 1.25 scale factor: (1, 1) / 1.25 = (0.8, 0.8) -> (0, 0)
    assert ScreenMap(bounds, (2240, 1232), 1.25, layout.monitors).logical.to_grid(960, 512) == (
        0,
        0,
    )


@pytest.mark.parametrize(("x", "y"), [(-1, 0), (0, -1), (1280, 0), (0, 720), (5000, 5000)])
def test_points_outside_the_screenshot_are_refused(x: int, y: int) -> None:
    screen_map = ScreenMap(Rect(1920, 0, 2560, 1440), (1280, 720))
    assert screen_map.problem(x, y) == f"({x}, {y}) is outside the screenshot (1280x720)"


def test_invalid_maps() -> None:
    with pytest.raises(ValueError, match="shot_size"):
        ScreenMap(PRIMARY, (0, 10))
    with pytest.raises(ValueError, match="scale_factor"):
        ScreenMap(PRIMARY, PRIMARY.size, 0)


# --------------------------------------------------------------------------- round trips


def _grid(size: tuple[int, int], step: int) -> list[tuple[int, int]]:
    xs = sorted({*range(0, size[0], step), size[0] - 1})
    ys = sorted({*range(0, size[1], step), size[1] - 1})
    return list(itertools.product(xs, ys))


@pytest.mark.parametrize("region", [PRIMARY, LEFT, ABOVE], ids=["primary", "left", "above"])
@pytest.mark.parametrize("shot_width", [None, 1280, 1000])
@pytest.mark.parametrize("scale", [1.0, 1.25, 1.5, 2.0])
def test_round_trips(region: Rect, shot_width: int | None, scale: float) -> None:
    """Screenshot -> physical -> screenshot is exact. Through logical it is exact in the
    direction where pixels are not merged: screenshot pixels at least as large as logical
    ones go screenshot -> logical -> screenshot; finer ones go logical -> screenshot ->
    logical."""
    shot = fit_width(region.size, shot_width)
    screen_map = ScreenMap(region, shot, scale)
    ratio = region.width / shot[0]
    for x, y in _grid(shot, 37):
        assert screen_map.physical.from_grid(*screen_map.physical.to_grid(x, y)) == (x, y)
        if ratio >= scale:
            assert screen_map.logical.from_grid(*screen_map.logical.to_grid(x, y)) == (x, y)
    if ratio < scale:
        left, top = screen_map.logical.to_grid(0, 0)
        right, bottom = screen_map.logical.to_grid(shot[0] - 1, shot[1] - 1)
        for lx, ly in itertools.product(range(left, right + 1, 29), range(top, bottom + 1, 31)):
            assert screen_map.logical.to_grid(*screen_map.logical.from_grid(lx, ly)) == (lx, ly)


def test_every_pixel_of_a_monitor_lands_on_it() -> None:
    """No screenshot pixel maps outside its monitor, at any scale or downscale."""
    for region, width, scale in itertools.product(
        (PRIMARY, LEFT, ABOVE), (None, 1280, 777), (1.0, 1.25, 1.5, 2.0)
    ):
        shot = fit_width(region.size, width)
        screen_map = ScreenMap(region, shot, scale)
        for x, y in ((0, 0), (shot[0] - 1, 0), (0, shot[1] - 1), (shot[0] - 1, shot[1] - 1)):
            assert region.contains(*screen_map.physical.to_grid(x, y))
            lx, ly = screen_map.logical.to_grid(x, y)
            # the logical pixel [l * s, (l + 1) * s) overlaps the monitor
            assert region.left - scale < lx * scale < region.right
            assert region.top - scale < ly * scale < region.bottom

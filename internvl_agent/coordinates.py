"""Every coordinate space of the package and the conversions between them, in one place.

    space       what it is                                converted by (who calls it)
    ----------  ----------------------------------------  --------------------------------
    model       integers 0..1000 of the screenshot's      model -> screenshot:
                width and height                          norm_to_pixels, box_to_pixels
                                                          (grounding), checked_norm_to_pixels
                                                          (agent)
    screenshot  pixels of the image the model saw,        what every Computer method takes
                top-left origin
    CSS         Playwright's mouse pixels                 screenshot -> CSS: css_map
                                                          (browser)
    physical    virtual-screen pixels, what mss           screenshot -> physical:
                captures; negative for a monitor left     PixelMap.spanning (desktop,
                of or above the primary (Windows,         via screens.ScreenMap)
                macOS; X11 starts at 0, 0)
    logical     what pyautogui moves in: physical /       physical -> logical:
                scale factor (1 on X11, 2 on a Retina     PixelMap.divided_by (desktop)
                Mac, where pyautogui works in points)

model -> screenshot rounds half up and keeps the pixel inside the image. Screenshot -> any
other grid (`PixelMap`) takes the centre of the screenshot pixel and returns the grid pixel
holding it, with exact Fractions so that factors like 1.25 or 1.5 cannot drift; `from_grid`
is the inverse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

__all__ = [
    "NORM_MAX",
    "Box",
    "OffScreenError",
    "PixelMap",
    "Point",
    "Size",
    "box_center",
    "box_to_pixels",
    "checked_norm_to_pixels",
    "css_map",
    "exact",
    "expected_shot_size",
    "norm_to_pixels",
    "round_half_up",
]

Point = tuple[int, int]
Box = tuple[int, int, int, int]
Size = tuple[int, int]

NORM_MAX = 1000
"""Model coordinates are 0..NORM_MAX of the screenshot's width and height."""

_HALF = Fraction(1, 2)


def round_half_up(value: float) -> int:
    """Round to the nearest integer, halves up (2.5 -> 3), unlike Python's round."""
    return math.floor(value + 0.5)


def exact(value: float) -> Fraction:
    """A scale factor as a Fraction (1.25 -> 5/4), denominators up to 1000."""
    return Fraction(value).limit_denominator(1000)


# --------------------------------------------------------------------------- model <-> screenshot


def norm_to_pixels(x: float, y: float, size: Size) -> Point:
    """A 0..1000 point as a pixel of an image of `size` (width, height), kept inside it."""
    width, height = size
    px = round_half_up(x * width / NORM_MAX)
    py = round_half_up(y * height / NORM_MAX)
    return min(max(px, 0), max(width - 1, 0)), min(max(py, 0), max(height - 1, 0))


def box_to_pixels(box: Box, size: Size) -> Box:
    """A 0..1000 box in pixels of an image of `size`: round(v / 1000 * side), not clamped."""
    width, height = size
    x1, y1, x2, y2 = box
    return (
        round_half_up(x1 * width / NORM_MAX),
        round_half_up(y1 * height / NORM_MAX),
        round_half_up(x2 * width / NORM_MAX),
        round_half_up(y2 * height / NORM_MAX),
    )


def box_center(box: Box) -> tuple[float, float]:
    """Centre of a box, in the box's own units."""
    x1, y1, x2, y2 = box
    return (x1 + x2) / 2, (y1 + y2) / 2


class OffScreenError(ValueError):
    """A model point that names no pixel of the screenshot; the message is for the model."""


def checked_norm_to_pixels(point: Point, size: Size) -> Point:
    """The screenshot pixel of a model point; OffScreenError when there is none.

    The agent's conversion: unlike `norm_to_pixels` it refuses points outside 0..1000
    rather than clamping them, and an empty screenshot. The error's text tells the model
    what went wrong, so the agent hands it on as the action's outcome.
    """
    x, y = point
    if not (0 <= x <= NORM_MAX and 0 <= y <= NORM_MAX):
        raise OffScreenError(
            f"({x}, {y}) is outside 0..1000; coordinates are 0..1000 of the screenshot"
        )
    px, py = norm_to_pixels(x, y, size)
    if not (0 <= px < size[0] and 0 <= py < size[1]):
        raise OffScreenError(f"({x}, {y}) falls outside the screenshot; nothing was done")
    return px, py


# --------------------------------------------------------------------------- screenshot -> grid


@dataclass(frozen=True)
class PixelMap:
    """Screenshot pixels -> pixels of another grid (CSS, physical or logical).

    Screenshot pixel x covers grid [offset + x * scale, offset + (x + 1) * scale); the grid
    pixel holding its centre, floor(offset + (x + 0.5) * scale), is the one returned, per
    axis. An integer matters: Chromium hit-tests a mouse event as a 1x1 CSS-pixel area, so
    a fractional point (10.5) can hit an element that starts at 11.

    shot_size: the screenshot's (width, height).
    scale: grid pixels per screenshot pixel, (x, y).
    offset: grid coordinates of the screenshot's top-left corner (a monitor's position).
    bounds: the grid's (width, height) when results must stay inside it (a viewport).
    """

    shot_size: Size
    scale: tuple[Fraction, Fraction]
    offset: tuple[Fraction, Fraction] = (Fraction(0), Fraction(0))
    bounds: Size | None = None

    def __post_init__(self) -> None:
        _check_shot_size(self.shot_size)
        if min(self.scale) <= 0:
            raise ValueError(f"scale must be positive, got {self.scale}")

    @classmethod
    def spanning(cls, shot_size: Size, area: Size, offset: Point = (0, 0)) -> PixelMap:
        """A screenshot of `shot_size` showing the grid rectangle `area` at `offset`
        (a monitor captured, then maybe downscaled)."""
        _check_shot_size(shot_size)
        return cls(
            shot_size,
            (Fraction(area[0], shot_size[0]), Fraction(area[1], shot_size[1])),
            (Fraction(offset[0]), Fraction(offset[1])),
        )

    def divided_by(self, factor: float) -> PixelMap:
        """This map onto a grid whose pixels are `factor` of ours (physical -> logical)."""
        if factor <= 0:
            raise ValueError(f"scale_factor must be > 0, got {factor}")
        f = exact(factor)
        return PixelMap(
            self.shot_size,
            (self.scale[0] / f, self.scale[1] / f),
            (self.offset[0] / f, self.offset[1] / f),
        )

    def contains(self, x: int, y: int) -> bool:
        """Whether (x, y) is a pixel of the screenshot."""
        return 0 <= x < self.shot_size[0] and 0 <= y < self.shot_size[1]

    def centre(self, x: int, y: int) -> tuple[Fraction, Fraction]:
        """Grid coordinates of the centre of screenshot pixel (x, y), exact."""
        return (
            self.offset[0] + (x + _HALF) * self.scale[0],
            self.offset[1] + (y + _HALF) * self.scale[1],
        )

    def to_grid(self, x: int, y: int) -> Point:
        """The grid pixel holding the centre of screenshot pixel (x, y), inside `bounds`."""
        gx, gy = (math.floor(c) for c in self.centre(x, y))
        if self.bounds is not None:
            gx = min(max(gx, 0), self.bounds[0] - 1)
            gy = min(max(gy, 0), self.bounds[1] - 1)
        return gx, gy

    def from_grid(self, gx: float, gy: float) -> Point:
        """The screenshot pixel holding the centre of grid pixel (gx, gy)."""
        return (
            math.floor((Fraction(gx) + _HALF - self.offset[0]) / self.scale[0]),
            math.floor((Fraction(gy) + _HALF - self.offset[1]) / self.scale[1]),
        )


def _check_shot_size(size: Size) -> None:
    if size[0] < 1 or size[1] < 1:
        raise ValueError(f"shot_size must be positive, got {size}")


def expected_shot_size(css_size: Size, device_scale_factor: float) -> Size:
    """The screenshot size Chromium gives for a viewport: css * dsf rounded half up."""
    width, height = (round_half_up(side * device_scale_factor) for side in css_size)
    return width, height


def css_map(shot_size: Size, css_size: Size, device_scale_factor: float) -> PixelMap:
    """Screenshot (device) pixels -> the CSS pixels of a `css_size` viewport.

    Per axis, s device pixels per CSS pixel is the device_scale_factor when the screenshot
    has the size it implies (exact even for 1.25 or 1.5), else shot / css (a screenshot of
    another size); CSS pixel = floor((x + 0.5) / s), kept inside the viewport.
    """
    dsf = exact(device_scale_factor)

    def scale(axis: int) -> Fraction:
        shot, css = shot_size[axis], css_size[axis]
        return 1 / dsf if abs(css * dsf - shot) < 1 else Fraction(css, shot)

    return PixelMap(shot_size, (scale(0), scale(1)), bounds=css_size)

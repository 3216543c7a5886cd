"""The desktop's monitors and where a screenshot lies on them (pure, no X needed).

The coordinate arithmetic (screenshot pixel -> physical -> logical, the spaces and their
formulas) is coordinates.py's; this module knows the monitors: their rectangles, the
region a screenshot shows, the gaps in an "all monitors" image, the scale factor.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from internvl_agent.coordinates import PixelMap, Size, round_half_up

__all__ = [
    "Layout",
    "Rect",
    "ScreenMap",
    "detect_scale_factor",
    "fit_width",
    "parse_monitor",
]


@dataclass(frozen=True)
class Rect:
    """A rectangle of pixels: [left, left + width) x [top, top + height)."""

    left: int
    top: int
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise ValueError(f"a rectangle needs a positive size, got {self.width}x{self.height}")

    @property
    def right(self) -> int:
        """One past the last column."""
        return self.left + self.width

    @property
    def bottom(self) -> int:
        """One past the last row."""
        return self.top + self.height

    @property
    def size(self) -> Size:
        return self.width, self.height

    def contains(self, x: float | Fraction, y: float | Fraction) -> bool:
        """Whether the point lies in the rectangle."""
        return self.left <= x < self.right and self.top <= y < self.bottom

    def scaled(self, factor: float) -> Rect:
        """Every coordinate times `factor` (mss units to physical pixels on a Retina Mac)."""
        if factor == 1:
            return self
        return Rect(*(round(v * factor) for v in (self.left, self.top, self.width, self.height)))

    @classmethod
    def from_mss(cls, monitor: Mapping[str, Any]) -> Rect:
        """From an mss monitor dict {"left", "top", "width", "height"}."""
        return cls(
            int(monitor["left"]), int(monitor["top"]), int(monitor["width"]), int(monitor["height"])
        )

    def __str__(self) -> str:
        return f"{self.width}x{self.height} at ({self.left}, {self.top})"


def bounding(rects: Iterable[Rect]) -> Rect:
    """The smallest rectangle holding all of `rects`."""
    rects = list(rects)
    if not rects:
        raise ValueError("no rectangles")
    left, top = min(r.left for r in rects), min(r.top for r in rects)
    right, bottom = max(r.right for r in rects), max(r.bottom for r in rects)
    return Rect(left, top, right - left, bottom - top)


@dataclass(frozen=True)
class Layout:
    """The monitors in physical pixels, numbered from 1 like mss; 0 is all of them."""

    monitors: tuple[Rect, ...]
    primary: int = 1  # 1-based

    def __post_init__(self) -> None:
        if not self.monitors:
            raise ValueError("a layout needs at least one monitor")
        if not 1 <= self.primary <= len(self.monitors):
            raise ValueError(f"primary must be 1..{len(self.monitors)}, got {self.primary}")

    @property
    def bounds(self) -> Rect:
        """The union's bounding box: what monitor 0 ("all") captures."""
        return bounding(self.monitors)

    def region(self, index: int) -> Rect:
        """Monitor `index` (1-based), or the bounds for 0; ValueError naming the choices."""
        if index == 0:
            return self.bounds
        if 1 <= index <= len(self.monitors):
            return self.monitors[index - 1]
        raise ValueError(f"there is no monitor {index}; {self.describe()}")

    def monitor_at(self, x: float, y: float) -> int | None:
        """The 1-based monitor holding physical point (x, y), or None (a gap, off screen)."""
        for index, rect in enumerate(self.monitors, start=1):
            if rect.contains(x, y):
                return index
        return None

    def describe(self) -> str:
        """'monitors: 0 = all (2304x1024 at (0, 0)), 1 = 1280x800 at (0, 224) (primary), ...'."""
        parts = [f"0 = all ({self.bounds})"]
        for index, rect in enumerate(self.monitors, start=1):
            mark = " (primary)" if index == self.primary else ""
            parts.append(f"{index} = {rect}{mark}")
        return "monitors: " + ", ".join(parts)

    @classmethod
    def from_mss(cls, monitors: Sequence[Mapping[str, Any]], units: float = 1.0) -> Layout:
        """From mss's list (entry 0 is the union, then one per monitor).

        units: physical pixels per mss unit (2 on a Retina Mac, where mss reports points).
        With only the union listed, it is the one monitor.
        """
        entries = list(monitors[1:]) or list(monitors[:1])
        rects = tuple(Rect.from_mss(m).scaled(units) for m in entries)
        primary = next((i for i, m in enumerate(entries, 1) if m.get("is_primary")), 1)
        return cls(rects, primary)


def parse_monitor(value: int | str) -> int | str:
    """0 / "all" -> 0, 2 / "2" -> 2, "primary" -> "primary"; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"monitor must be a number, 'all' or 'primary', got {value!r}")
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("all", "primary"):
            return 0 if text == "all" else "primary"
        if not text.isdigit():
            raise ValueError(f"monitor must be a number, 'all' or 'primary', got {value!r}")
        value = int(text)
    if not isinstance(value, int) or value < 0:
        raise ValueError(f"monitor must be 0 (all), 1, 2, ... or 'primary', got {value!r}")
    return value


def fit_width(size: Size, max_width: int | None) -> Size:
    """`size` shrunk (aspect kept, height rounded) so its width is at most `max_width`."""
    width, height = size
    if max_width is None or width <= max_width:
        return size
    return max_width, max(1, round_half_up(height * max_width / width))


COMMON_SCALE_FACTORS: tuple[float, ...] = (1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 3.0)


def detect_scale_factor(logical: Size, candidates: Iterable[Size]) -> float:
    """Physical pixels per logical unit: the first candidate physical size whose ratio to
    `logical` (pyautogui.size()) is the same on both axes (within 1%), snapped to a common
    factor when within 1% of one; 1.0 when none agrees.

    Candidates: the union (X11, where pyautogui.size() is the root window), then the primary
    monitor (Windows and macOS, where it is the main display).
    """
    lw, lh = logical
    if lw < 1 or lh < 1:
        return 1.0
    for width, height in candidates:
        sx, sy = width / lw, height / lh
        if sx <= 0 or abs(sx - sy) > 0.01 * sx:
            continue
        ratio = (sx + sy) / 2
        snapped = min(COMMON_SCALE_FACTORS, key=lambda f: abs(f - ratio))
        return snapped if abs(snapped - ratio) <= 0.01 * ratio else round(ratio, 3)
    return 1.0


@dataclass(frozen=True)
class ScreenMap:
    """Where the pixels of one screenshot are on the screen.

    region: the physical rectangle the screenshot shows (a monitor, or the union).
    shot_size: the screenshot's size (smaller than region when downscaled).
    scale_factor: physical pixels per logical unit.
    monitors: for a union screenshot, the physical monitors: a point in a gap between
        them (differently sized monitors) is rejected. Empty: the whole region is screen.
    physical, logical: screenshot pixel -> physical / logical (pyautogui) pixel.
    """

    region: Rect
    shot_size: Size
    scale_factor: float = 1.0
    monitors: tuple[Rect, ...] = field(default=())
    physical: PixelMap = field(init=False, repr=False)
    logical: PixelMap = field(init=False, repr=False)

    def __post_init__(self) -> None:
        region = self.region
        physical = PixelMap.spanning(self.shot_size, region.size, (region.left, region.top))
        object.__setattr__(self, "physical", physical)
        object.__setattr__(self, "logical", physical.divided_by(self.scale_factor))

    def problem(self, x: int, y: int) -> str | None:
        """Why screenshot pixel (x, y) cannot be acted on, or None when it can."""
        if not self.physical.contains(x, y):
            width, height = self.shot_size
            return f"({x}, {y}) is outside the screenshot ({width}x{height})"
        if self.monitors:
            cx, cy = self.physical.centre(x, y)
            if not any(m.contains(cx, cy) for m in self.monitors):
                return f"({x}, {y}) is in a gap between monitors (no screen there)"
        return None

    def describe(self) -> dict[str, Any]:
        """The mapping as plain data (for Screenshot.extra and run records)."""
        return {
            "region": [self.region.left, self.region.top, self.region.width, self.region.height],
            "screenshot_size": list(self.shot_size),
            "scale_factor": self.scale_factor,
        }

"""The real desktop as a `Computer`: screenshots with mss, mouse and keys with pyautogui.

    with DesktopComputer(monitor=1, max_screenshot_width=1280) as desktop:
        shot = desktop.screenshot()
        desktop.click(100, 200)

Coordinates are pixels of the latest screenshot; a `ScreenMap` (screens.py, arithmetic in
coordinates.py) maps them to physical and then logical (pyautogui) coordinates, monitor
offsets and downscaling included. Nothing touches the display until the first use (or
``__enter__``); pyautogui is imported then, because it reads $DISPLAY once, at import.

Decisions:

- Text (`type_text`, any Unicode): on X11 ``xdotool type`` (it types characters missing from
  the keyboard map by remapping a spare keycode, and works in any app); without xdotool the
  clipboard (xclip/xsel through pyperclip) and ctrl+v; macOS and Windows paste from the
  clipboard (pbcopy / the Win32 API, through pyperclip) with cmd+v / ctrl+v, which
  overwrites the clipboard. "keys" (pyautogui.write) types printable ASCII only.
- pyautogui's fail-safe stays on. It raises when the pointer sits on a corner of the screen,
  where a person puts it to stop automation: the action is refused (ok=False) with that
  explanation, and so is every action until the pointer leaves the corner. Our own target
  that lands exactly on a corner pixel is moved one pixel inward (the outcome says so), so the
  agent never trips the fail-safe itself and corner buttons (a Start menu) still get hit.
- `blocked_keys` are refused outright, whatever the agent's confirmation said: the agent asks
  before risky keys; the desktop never presses blocked ones.
- Points outside the screenshot, or in the gap between monitors of different sizes in an
  "all monitors" screenshot, are refused.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from PIL import Image

from internvl_agent.computers.base import (
    ActionOutcome,
    Computer,
    Modifier,
    MouseButton,
    Screenshot,
    ScrollDirection,
    refused_scroll,
)
from internvl_agent.computers.keys import KeySet, parse_combo, to_pyautogui
from internvl_agent.computers.screens import (
    Layout,
    Rect,
    ScreenMap,
    detect_scale_factor,
    fit_width,
    parse_monitor,
)
from internvl_agent.coordinates import Point, Size
from internvl_agent.errors import ConfigurationError

__all__ = ["DEFAULT_BLOCKED_KEYS", "DesktopComputer", "TypeMethod"]

logger = logging.getLogger("internvl_agent.desktop")

TypeMethod = Literal["auto", "xdotool", "clipboard", "keys"]
TYPE_METHODS: tuple[str, ...] = ("auto", "xdotool", "clipboard", "keys")

DEFAULT_BLOCKED_KEYS: tuple[str, ...] = (
    "ctrl+alt+delete",  # security screen / reboot
    "ctrl+alt+backspace",  # kill the X server
    "alt+f4",  # close the focused window
    "meta+l",  # lock the screen (super+l, win+l)
    "ctrl+alt+l",  # lock the screen on some desktops
    "meta+shift+q",  # macOS: log out
    *(f"ctrl+alt+f{n}" for n in range(1, 13)),  # switch virtual terminal
)
"""Key combinations the desktop refuses to press (matched as sets, any order or case)."""

MOUSE_BUTTONS = ("left", "right", "middle")
CLICK_INTERVAL_S = 0.05  # between the clicks of a double or triple click
DRAG_STEPS = 12
DRAG_STEP_S = 0.01
XDOTOOL_DELAY_MS = 12  # xdotool's default pause between typed characters
INSTALL_FIX = "install the desktop extra: pip install 'internvl-agent[desktop]'"
DISPLAY_FIX = (
    "run under a display, e.g. `xvfb-run -a <command>`, or start a virtual one with "
    "`Xvfb :99 -screen 0 1920x1080x24 &` and `export DISPLAY=:99`"
)
FAILSAFE_MESSAGE = (
    "refused: the mouse pointer is in a corner of the screen, pyautogui's fail-safe "
    "(a person puts it there to stop automation); nothing was done until it is moved away"
)


def _is_x11() -> bool:
    return sys.platform not in ("darwin", "win32", "cygwin")


def _display_problem() -> str | None:
    """Why there is no X display to use (X11 platforms only), or None."""
    if not _is_x11() or os.environ.get("DISPLAY"):
        return None
    wayland = (
        " (on Wayland, DISPLAY must name XWayland)" if os.environ.get("WAYLAND_DISPLAY") else ""
    )
    return f"no display: the DISPLAY environment variable is not set{wayland}"


def _default_xauthority() -> None:
    """Point XAUTHORITY at an empty file when neither it nor ~/.Xauthority exists.

    python-xlib (pyautogui's X11 backend) fails without an authority file even on servers
    that need none, as a bare ``Xvfb :99`` is; an empty one means "no credentials".
    """
    if os.environ.get("XAUTHORITY") or (Path.home() / ".Xauthority").exists():
        return
    os.environ["XAUTHORITY"] = os.devnull
    logger.debug("XAUTHORITY unset and ~/.Xauthority missing: using %s", os.devnull)


def _import_pyautogui() -> ModuleType:
    """pyautogui, imported now (it connects to $DISPLAY on import); ConfigurationError if
    it is missing, cannot connect, or is bound to another display than $DISPLAY."""
    if _is_x11():
        _default_xauthority()
    try:
        import pyautogui
    except ImportError as exc:
        raise ConfigurationError(f"pyautogui is not installed: {INSTALL_FIX}") from exc
    except Exception as exc:  # KeyError('DISPLAY'), Xlib connection / auth errors
        display = os.environ.get("DISPLAY")
        raise ConfigurationError(
            f"pyautogui cannot connect to display {display!r} "
            f"({type(exc).__name__}: {exc}); {DISPLAY_FIX}"
        ) from exc
    if _is_x11():
        bound = getattr(getattr(pyautogui, "platformModule", None), "_display", None)
        name = bound.get_display_name() if bound is not None else None
        wanted = os.environ.get("DISPLAY")
        if name and wanted and name != wanted:
            raise ConfigurationError(
                f"pyautogui was imported while DISPLAY was {name!r} and stays bound to it, "
                f"but DISPLAY is now {wanted!r}: set DISPLAY before pyautogui is first imported"
            )
    return pyautogui


def _open_mss() -> Any:
    """An mss screenshot instance; ConfigurationError naming the fix when it cannot open."""
    try:
        import mss
    except ImportError as exc:
        raise ConfigurationError(f"mss is not installed: {INSTALL_FIX}") from exc
    factory = getattr(mss, "MSS", None) or mss.mss  # mss >= 10.2 renamed the factory
    try:
        return factory()
    except Exception as exc:  # mss.exception.ScreenShotError: XOpenDisplay failed...
        display = os.environ.get("DISPLAY")
        raise ConfigurationError(
            f"cannot capture the screen of display {display!r} ({exc}); {DISPLAY_FIX}"
        ) from exc


def _clipboard_tool() -> bool:
    """Whether pyperclip has a clipboard program to use on this X11 system."""
    return any(shutil.which(tool) for tool in ("xclip", "xsel", "wl-copy"))


def _printable_ascii(text: str) -> bool:
    return all(" " <= c <= "~" or c in "\n\t" for c in text)


HOVER_PAUSE_S = 0.05  # between the pointer arriving and the press
PYAUTOGUI_MODIFIERS = {"ctrl": "ctrl", "shift": "shift", "alt": "alt", "meta": "win"}
if sys.platform == "darwin":
    PYAUTOGUI_MODIFIERS["meta"] = "command"


class DesktopComputer(Computer):
    """The screen of this machine (one monitor or all of them) as a `Computer`.

    monitor: 1, 2, ... as mss numbers them (1-based), "primary", or 0 / "all" for every
        monitor in one image (its bounding box).
    scale_factor: physical pixels per pyautogui unit; None detects it (1.0 on X11, 2.0 on a
        Retina Mac) by comparing the captured size with pyautogui.size().
    max_screenshot_width: downscale wider screenshots to this width (aspect kept); the
        mapping back to the screen accounts for it. None keeps full resolution.
    blocked_keys: key combinations press_key refuses (see DEFAULT_BLOCKED_KEYS).
    type_method: how type_text types: "auto" (see the module notes), "xdotool",
        "clipboard" (paste) or "keys" (pyautogui.write, printable ASCII only).
    settle: the most seconds to wait after each action for the screen to redraw: it waits
        until two captures settle_interval apart are identical, or this bound.
    """

    kind = "desktop"

    def __init__(
        self,
        *,
        monitor: int | str = 1,
        scale_factor: float | None = None,
        max_screenshot_width: int | None = None,
        blocked_keys: Iterable[str] = DEFAULT_BLOCKED_KEYS,
        type_method: TypeMethod = "auto",
        settle: float = 1.0,
        settle_interval: float = 0.05,
    ) -> None:
        try:
            self.monitor = parse_monitor(monitor)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        if scale_factor is not None and not scale_factor > 0:
            raise ConfigurationError(f"scale_factor must be > 0, got {scale_factor}")
        if max_screenshot_width is not None and max_screenshot_width < 16:
            raise ConfigurationError(
                f"max_screenshot_width must be at least 16 pixels, got {max_screenshot_width}"
            )
        if type_method not in TYPE_METHODS:
            raise ConfigurationError(
                f"type_method must be one of {', '.join(TYPE_METHODS)}, got {type_method!r}"
            )
        if settle < 0 or settle_interval <= 0:
            raise ConfigurationError(
                f"need settle >= 0 and settle_interval > 0 seconds, got {settle}, {settle_interval}"
            )
        try:
            self.blocked_keys = KeySet(blocked_keys)
        except ValueError as exc:
            raise ConfigurationError(f"invalid blocked_keys entry: {exc}") from None
        self.scale_factor_override = scale_factor
        self.max_screenshot_width = max_screenshot_width
        self.type_method: TypeMethod = type_method
        self.settle = settle
        self.settle_interval = settle_interval
        self.last_settle_s = 0.0
        self._lock = threading.RLock()
        self._sct: Any = None
        self._pyautogui: ModuleType | None = None
        self._layout: Layout | None = None
        self._index = 0
        self._grab_box: dict[str, int] = {}
        self._scale = 1.0
        self._map: ScreenMap | None = None

    # ---------------------------------------------------------------- lifecycle

    @property
    def launched(self) -> bool:
        """Whether the display is open."""
        return self._sct is not None

    def launch(self) -> None:
        """Open the display: check it, read the monitors, detect the scale factor.

        Raises ConfigurationError with the fix when there is no usable display, the desktop
        extra is missing, or the monitor does not exist.
        """
        with self._lock:
            if self._sct is not None:
                return
            problem = _display_problem()
            if problem:
                raise ConfigurationError(f"{problem}; {DISPLAY_FIX}")
            sct = _open_mss()
            try:
                self._pyautogui = _import_pyautogui()
                self._setup(sct)
            except BaseException:
                with contextlib.suppress(Exception):
                    sct.close()
                raise
            self._sct = sct

    def _setup(self, sct: Any) -> None:
        monitors = sct.monitors
        units = self._units(sct, monitors)
        layout = Layout.from_mss(monitors, units)
        index = layout.primary if self.monitor == "primary" else int(self.monitor)
        try:
            region = layout.region(index)
        except ValueError as exc:
            raise ConfigurationError(f"monitor={self.monitor!r}: {exc}") from None
        source = monitors[index] if index < len(monitors) else monitors[0]
        self._grab_box = {k: int(source[k]) for k in ("left", "top", "width", "height")}
        self._layout, self._index = layout, index
        if self.scale_factor_override is not None:
            self._scale = float(self.scale_factor_override)
        else:
            assert self._pyautogui is not None
            logical = tuple(self._pyautogui.size())
            primary = layout.region(layout.primary).size
            candidates = [layout.bounds.size] if _is_x11() else [primary]
            self._scale = detect_scale_factor((logical[0], logical[1]), candidates)
        logger.info(
            "desktop: monitor %s = %s, scale factor %g; %s",
            index,
            region,
            self._scale,
            layout.describe(),
        )

    @staticmethod
    def _units(sct: Any, monitors: list[dict[str, Any]]) -> float:
        """Physical pixels per mss unit: 2 on a Retina Mac (mss reports points), else 1."""
        first = monitors[1] if len(monitors) > 1 else monitors[0]
        side = min(4, int(first["width"]), int(first["height"]))
        probe = {
            "left": int(first["left"]),
            "top": int(first["top"]),
            "width": side,
            "height": side,
        }
        try:
            return sct.grab(probe).size[0] / side
        except Exception:  # a failing probe is no reason not to start
            return 1.0

    def close(self) -> None:
        """Release the screen capture; safe to call more than once."""
        with self._lock:
            sct, self._sct = self._sct, None
            self._map = None
        if sct is not None:
            with contextlib.suppress(Exception):
                sct.close()

    def __enter__(self) -> DesktopComputer:
        self.launch()
        return self

    # ---------------------------------------------------------------- geometry

    @property
    def layout(self) -> Layout:
        """The monitors in physical pixels (opens the display when needed)."""
        self.launch()
        assert self._layout is not None
        return self._layout

    @property
    def monitor_index(self) -> int:
        """The monitor captured: 0 = all, else 1-based."""
        self.launch()
        return self._index

    @property
    def scale_factor(self) -> float:
        """Physical pixels per pyautogui unit, detected or given."""
        self.launch()
        return self._scale

    @property
    def region(self) -> Rect:
        """The physical rectangle the screenshots show."""
        return self.layout.region(self._index)

    def screen_map(self) -> ScreenMap:
        """The mapping of the latest screenshot (or of the one the next would give)."""
        if self._map is not None:
            return self._map
        region = self.region
        return self._make_map(region, fit_width(region.size, self.max_screenshot_width))

    def _make_map(self, region: Rect, shot_size: Size) -> ScreenMap:
        monitors = (
            self.layout.monitors if self._index == 0 and len(self.layout.monitors) > 1 else ()
        )
        return ScreenMap(region, shot_size, self._scale, monitors)

    def screenshot(self) -> Screenshot:
        """The chosen monitor (or all of them), downscaled to max_screenshot_width."""
        self.launch()
        with self._lock:
            grab = self._sct.grab(self._grab_box)
        image = Image.frombytes("RGB", grab.size, grab.raw, "raw", "BGRX")
        physical = self.region
        region = Rect(physical.left, physical.top, *image.size)  # the pixels really captured
        size = fit_width(image.size, self.max_screenshot_width)
        if size != image.size:
            image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        self._map = self._make_map(region, image.size)
        extra: dict[str, object] = {"monitor": self._index, **self._map.describe()}
        if self._index == 0:
            extra["monitors"] = [[m.left, m.top, m.width, m.height] for m in self.layout.monitors]
        return Screenshot(image=image, extra=extra)

    def _target(self, x: int, y: int) -> tuple[int, int, str] | ActionOutcome:
        """Screenshot pixel -> pyautogui point (+ a note when moved off a fail-safe corner)."""
        screen_map = self.screen_map()
        problem = screen_map.problem(x, y)
        if problem:
            return ActionOutcome(
                False, f"{problem}; nothing was done. Use coordinates inside the image."
            )
        lx, ly = screen_map.logical.to_grid(x, y)
        nx, ny = self._off_corner(lx, ly)
        note = (
            ""
            if (nx, ny) == (lx, ly)
            else " (moved 1 px off the screen corner, pyautogui's fail-safe)"
        )
        return nx, ny, note

    def _off_corner(self, lx: int, ly: int) -> Point:
        """A logical point on a fail-safe corner moved one pixel towards the screen."""
        pg = self._pyautogui
        if pg is None or not getattr(pg, "FAILSAFE", False):
            return lx, ly
        corners = [tuple(p) for p in getattr(pg, "FAILSAFE_POINTS", [])]
        if (lx, ly) not in corners:
            return lx, ly
        mid_x = sum(c[0] for c in corners) / len(corners)
        mid_y = sum(c[1] for c in corners) / len(corners)
        return lx + (1 if lx <= mid_x else -1), ly + (1 if ly <= mid_y else -1)

    # ---------------------------------------------------------------- running input

    @property
    def pyautogui(self) -> ModuleType:
        """The pyautogui module (opens the display when needed)."""
        self.launch()
        assert self._pyautogui is not None
        return self._pyautogui

    def _act(self, what: str, action: Callable[[], str]) -> ActionOutcome:
        """Run an input action, let the screen settle; failures become ok=False outcomes."""
        pg = self.pyautogui
        try:
            with self._lock:
                message = action()
        except pg.FailSafeException:
            return ActionOutcome(False, FAILSAFE_MESSAGE, abort=True)
        except Exception as exc:
            # The type only: an exception's text can carry what was being typed.
            logger.warning("desktop %s failed: %s", what, type(exc).__name__)
            return ActionOutcome(False, f"{what} failed: {type(exc).__name__}: {exc}")
        with self.settling():
            self.wait_until_still()
        return ActionOutcome(True, message)

    def _grab_bytes(self) -> bytes:
        with self._lock:
            return bytes(self._sct.grab(self._grab_box).raw)

    def wait_until_still(self) -> float:
        """Wait until two captures settle_interval apart are identical (at most `settle`
        seconds); returns (and keeps in last_settle_s) the seconds waited."""
        started = time.monotonic()
        deadline = started + self.settle
        if self.settle > 0:
            previous = self._grab_bytes()
            while time.monotonic() < deadline:
                time.sleep(min(self.settle_interval, max(0.0, deadline - time.monotonic())))
                current = self._grab_bytes()
                if current == previous:
                    break
                previous = current
        self.last_settle_s = time.monotonic() - started
        return self.last_settle_s

    # ---------------------------------------------------------------- actions

    def click(
        self,
        x: int,
        y: int,
        *,
        button: MouseButton = "left",
        clicks: int = 1,
        modifiers: Sequence[Modifier] = (),
    ) -> ActionOutcome:
        """Click (1), double-click (2) or triple-click (3) at screenshot pixel (x, y), holding
        `modifiers`; the pointer arrives and pauses first (hover effects apply)."""
        if button not in MOUSE_BUTTONS:
            return ActionOutcome(False, f"unknown mouse button {button!r}; use left/right/middle")
        if clicks not in (1, 2, 3):
            return ActionOutcome(False, f"clicks must be 1, 2 or 3, got {clicks}")
        unknown = [m for m in modifiers if m not in PYAUTOGUI_MODIFIERS]
        if unknown:
            return ActionOutcome(False, f"unknown modifier keys {unknown}; use ctrl/shift/alt/meta")
        target = self._target(x, y)
        if isinstance(target, ActionOutcome):
            return target
        lx, ly, note = target
        keys = [PYAUTOGUI_MODIFIERS[m] for m in dict.fromkeys(modifiers)]

        def run() -> str:
            pg = self.pyautogui
            pg.moveTo(lx, ly, _pause=False)
            with self.settling():  # the app reacting to the pointer, not our overhead
                time.sleep(HOVER_PAUSE_S)
            pressed: list[str] = []
            try:
                for key in keys:
                    pg.keyDown(key, _pause=False)
                    pressed.append(key)
                pg.click(
                    lx, ly, clicks=clicks, interval=CLICK_INTERVAL_S, button=button, _pause=False
                )
            finally:
                for key in reversed(pressed):
                    pg.keyUp(key, _pause=False)
            kind = {1: "clicked", 2: "double-clicked", 3: "triple-clicked"}[clicks]
            side = "" if button == "left" else f" ({button} button)"
            held = f" holding {'+'.join(dict.fromkeys(modifiers))}" if keys else ""
            return f"{kind} at ({x}, {y}){side}{held}{note}"

        return self._act("click", run)

    def hover(self, x: int, y: int) -> ActionOutcome:
        """Move the pointer to screenshot pixel (x, y) without clicking."""
        target = self._target(x, y)
        if isinstance(target, ActionOutcome):
            return target
        lx, ly, note = target

        def run() -> str:
            self.pyautogui.moveTo(lx, ly, _pause=False)
            return f"moved the mouse to ({x}, {y}){note}"

        return self._act("hover", run)

    def type_text(self, text: str) -> ActionOutcome:
        """Type any Unicode text into the focused window (see the module notes for how)."""
        if not text:
            return ActionOutcome(False, "nothing to type: the text is empty")
        method = self._type_method_for(text)
        if isinstance(method, ActionOutcome):
            return method
        typist = {"xdotool": self._type_xdotool, "clipboard": self._paste, "keys": self._type_keys}

        def run() -> str:
            typist[method](text)
            shown = text if len(text) <= 60 else text[:57] + "..."
            return f"typed {shown!r}"

        return self._act("typing", run)

    def _type_method_for(self, text: str) -> str | ActionOutcome:
        """The typing path for `text`, or a refusal that names the fix."""
        method = self.type_method
        if method == "auto":
            if not _is_x11():
                method = "clipboard"
            elif shutil.which("xdotool"):
                method = "xdotool"
            elif _clipboard_tool():
                method = "clipboard"
            else:
                method = "keys"
        if method == "xdotool" and not shutil.which("xdotool"):
            return ActionOutcome(False, "xdotool is not installed (apt-get install xdotool)")
        if method == "keys" and not _printable_ascii(text):
            fix = "install xdotool (apt-get install xdotool)" if _is_x11() else "use the clipboard"
            return ActionOutcome(
                False,
                "cannot type non-ASCII text with key presses (pyautogui.write); "
                f"{fix} or set type_method='clipboard'",
            )
        return method

    def _type_xdotool(self, text: str) -> None:
        timeout = 10 + len(text) * XDOTOOL_DELAY_MS / 1000 * 4
        # The text goes through stdin, never argv: other users can read a process's argv.
        done = subprocess.run(
            ["xdotool", "type", "--delay", str(XDOTOOL_DELAY_MS), "--file", "-"],
            input=text,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"xdotool type exited with {done.returncode}: {done.stderr.strip()}")

    def _paste(self, text: str) -> None:
        try:
            import pyperclip
        except ImportError as exc:
            raise RuntimeError(f"pyperclip is missing: {INSTALL_FIX}") from exc
        pyperclip.copy(text)
        paste = ["command", "v"] if sys.platform == "darwin" else ["ctrl", "v"]
        self.pyautogui.hotkey(*paste, _pause=False)

    def _type_keys(self, text: str) -> None:
        self.pyautogui.write(text, interval=0.01, _pause=False)

    def is_blocked(self, keys: str) -> bool:
        """Whether press_key would refuse `keys` as a blocked combination."""
        try:
            return self.blocked_keys.matches(parse_combo(keys))
        except ValueError:
            return False

    def press_key(self, keys: str) -> ActionOutcome:
        """Press a key or combination ("Enter", "ctrl+a", "shift+Tab"); blocked ones are refused."""
        try:
            combo = parse_combo(keys)
        except ValueError as exc:
            return ActionOutcome(False, str(exc))
        if self.blocked_keys.matches(combo):
            return ActionOutcome(
                False,
                f"blocked: {keys} ({combo}) is on this desktop's blocked_keys list; nothing "
                "was pressed. Do it another way (menus, buttons) or ask the user.",
            )
        names = to_pyautogui(combo)
        unknown = [n for n in names if not self.pyautogui.isValidKey(n)]
        if unknown:
            return ActionOutcome(
                False,
                f"{unknown[0]!r} cannot be pressed as a key here; use type_text to enter text",
            )

        def run() -> str:
            self.pyautogui.hotkey(*names, _pause=False)
            return f"pressed {combo}"

        return self._act("key press", run)

    def scroll(
        self,
        direction: ScrollDirection,
        amount: int = 3,
        x: int | None = None,
        y: int | None = None,
    ) -> ActionOutcome:
        """Scroll `amount` wheel notches at (x, y), or at the centre of the screenshot."""
        if refused := refused_scroll(direction, amount, x, y):
            return refused
        where = f"at ({x}, {y})"
        if x is None or y is None:
            x, y, where = *self._centre(), "at the centre"
        target = self._target(x, y)
        if isinstance(target, ActionOutcome):
            return target
        lx, ly, _ = target
        sign = 1 if direction in ("up", "right") else -1

        def run() -> str:
            wheel = self.pyautogui.scroll if direction in ("up", "down") else self.pyautogui.hscroll
            wheel(sign * amount, x=lx, y=ly, _pause=False)
            return f"scrolled {direction} {amount} {where}"

        return self._act("scroll", run)

    def _centre(self) -> Point:
        """The screenshot's centre, or the centre of the first monitor when that is a gap."""
        screen_map = self.screen_map()
        width, height = screen_map.shot_size
        if screen_map.problem(width // 2, height // 2) is None:
            return width // 2, height // 2
        first = self.layout.monitors[0]
        return screen_map.physical.from_grid(
            first.left + first.width // 2, first.top + first.height // 2
        )

    def drag(self, from_x: int, from_y: int, to_x: int, to_y: int) -> ActionOutcome:
        """Press the left button at one screenshot pixel, move in steps to another, release."""
        start, end = self._target(from_x, from_y), self._target(to_x, to_y)
        for target in (start, end):
            if isinstance(target, ActionOutcome):
                return target
        assert not isinstance(start, ActionOutcome) and not isinstance(end, ActionOutcome)
        (sx, sy, _), (ex, ey, _) = start, end

        def run() -> str:
            pg = self.pyautogui
            pg.moveTo(sx, sy, _pause=False)
            pg.mouseDown(button="left", _pause=False)
            try:
                for step in range(1, DRAG_STEPS + 1):
                    px = round(sx + (ex - sx) * step / DRAG_STEPS)
                    py = round(sy + (ey - sy) * step / DRAG_STEPS)
                    pg.moveTo(*self._off_corner(px, py), _pause=False)
                    time.sleep(DRAG_STEP_S)
            finally:
                pg.mouseUp(button="left", _pause=False)
            return f"dragged from ({from_x}, {from_y}) to ({to_x}, {to_y})"

        return self._act("drag", run)

    def navigate(self, url: str) -> ActionOutcome:
        """Refused: the desktop has no address bar of its own."""
        return ActionOutcome(
            False,
            f"navigate is not available on the desktop, so {url} was not opened: open a "
            "browser window (click its icon), focus its address bar (ctrl+l), type the URL "
            "with type_text and submit",
        )

    def go_back(self) -> ActionOutcome:
        """Refused: there is no page history on the desktop."""
        return ActionOutcome(
            False,
            "go_back is not available on the desktop: use the app's own back button, or "
            "press_key 'alt+left' in a browser window",
        )

"""DesktopComputer on a real X server: Xvfb with two monitors, the Tk app of
examples/desktop_app.py, and the GUIAgent driven by a scripted model.

The X server is one Xvfb (2304x1024, +xinerama) split into two RandR 1.5 monitors of
different sizes, which mss lists like real ones:

    monitor 1 (primary): 1280x800 at (0, 224)      monitor 2: 1024x768 at (1280, 0)

so the union has gaps (above monitor 1, below monitor 2) and its bottom-left pixel is a
corner of the screen (pyautogui's fail-safe). Client-defined monitors live as long as the
connection that made them, so the fixture keeps that connection open.

pyautogui reads DISPLAY once, when first imported: the fixture sets DISPLAY before any
DesktopComputer imports it. Everything here skips when Xvfb, Tk, mss or pyautogui is missing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from internvl_agent.agent import GUIAgent
from internvl_agent.computers.desktop import (
    DEFAULT_BLOCKED_KEYS,
    FAILSAFE_MESSAGE,
    DesktopComputer,
)
from internvl_agent.computers.screens import Rect
from internvl_agent.errors import ConfigurationError
from tests.support.scripted_model import ScriptedModel, Step, click, done, type_into

APP = Path(__file__).resolve().parents[2] / "examples" / "desktop_app.py"
ROOT_SIZE = (2304, 1024)
MONITOR_1 = Rect(0, 224, 1280, 800)
MONITOR_2 = Rect(1280, 0, 1024, 768)
UNICODE_TEXT = "héllo wörld — 你好 ✓"
BUTTONS = ("top_left", "top_right", "bottom_left", "bottom_right", "centre")
BLUE, GREY = (0x1F, 0x5F, 0xBF), (0xEE, 0xEE, 0xEE)  # the app's buttons and background


def _missing() -> str | None:
    if shutil.which("Xvfb") is None:
        return "Xvfb is not installed (apt-get install xvfb)"
    for module in ("tkinter", "mss", "pyautogui"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install 'internvl-agent[desktop]')"
    return None


MISSING = _missing()
needs_x = pytest.mark.skipif(MISSING is not None, reason=f"no desktop: {MISSING}")
needs_xdotool = pytest.mark.skipif(
    shutil.which("xdotool") is None, reason="xdotool is not installed (apt-get install xdotool)"
)


# --------------------------------------------------------------------------- X server


class _MonitorInfo(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_ulong),
        ("primary", ctypes.c_int),
        ("automatic", ctypes.c_int),
        ("noutput", ctypes.c_int),
        ("x", ctypes.c_int),
        ("y", ctypes.c_int),
        ("width", ctypes.c_int),
        ("height", ctypes.c_int),
        ("mwidth", ctypes.c_int),
        ("mheight", ctypes.c_int),
        ("outputs", ctypes.POINTER(ctypes.c_ulong)),
    ]


class _ScreenResources(ctypes.Structure):
    _fields_ = [
        ("timestamp", ctypes.c_ulong),
        ("config_timestamp", ctypes.c_ulong),
        ("ncrtc", ctypes.c_int),
        ("crtcs", ctypes.POINTER(ctypes.c_ulong)),
        ("noutput", ctypes.c_int),
        ("outputs", ctypes.POINTER(ctypes.c_ulong)),
    ]


class VirtualMonitors:
    """RandR 1.5 monitors defined over one Xvfb screen, alive while this connection is."""

    def __init__(self, display: str, monitors: list[Rect]) -> None:
        x11 = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
        xrandr = ctypes.CDLL(ctypes.util.find_library("Xrandr") or "libXrandr.so.2")
        x11.XOpenDisplay.restype = ctypes.c_void_p
        x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
        x11.XDefaultRootWindow.restype = ctypes.c_ulong
        x11.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
        x11.XInternAtom.restype = ctypes.c_ulong
        x11.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        x11.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]
        x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
        xrandr.XRRAllocateMonitor.restype = ctypes.POINTER(_MonitorInfo)
        xrandr.XRRAllocateMonitor.argtypes = [ctypes.c_void_p, ctypes.c_int]
        xrandr.XRRSetMonitor.argtypes = [
            ctypes.c_void_p,
            ctypes.c_ulong,
            ctypes.POINTER(_MonitorInfo),
        ]
        xrandr.XRRGetScreenResourcesCurrent.restype = ctypes.POINTER(_ScreenResources)
        xrandr.XRRGetScreenResourcesCurrent.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
        self._x11 = x11
        self._dpy = x11.XOpenDisplay(display.encode())
        if not self._dpy:
            raise RuntimeError(f"cannot open {display}")
        root = x11.XDefaultRootWindow(self._dpy)
        resources = xrandr.XRRGetScreenResourcesCurrent(self._dpy, root).contents
        output = resources.outputs[0] if resources.noutput else 0
        for index, rect in enumerate(monitors):
            # the first monitor takes the screen's output, so RandR lists no automatic one
            info = xrandr.XRRAllocateMonitor(self._dpy, 1 if index == 0 and output else 0)
            info.contents.name = x11.XInternAtom(self._dpy, f"TEST-{index + 1}".encode(), 0)
            info.contents.primary = int(index == 0)
            info.contents.x, info.contents.y = rect.left, rect.top
            info.contents.width, info.contents.height = rect.width, rect.height
            info.contents.mwidth, info.contents.mheight = rect.width // 4, rect.height // 4
            if index == 0 and output:
                info.contents.outputs[0] = output
            xrandr.XRRSetMonitor(self._dpy, root, info)
        x11.XSync(self._dpy, 0)

    def close(self) -> None:
        if self._dpy:
            self._x11.XCloseDisplay(self._dpy)
            self._dpy = None


def _start_xvfb(size: tuple[int, int]) -> tuple[subprocess.Popen[bytes], str]:
    """Xvfb on a free display number (it picks one: -displayfd), ready when this returns."""
    read_fd, write_fd = os.pipe()
    process = subprocess.Popen(
        [
            "Xvfb",
            "-displayfd",
            str(write_fd),
            "-screen",
            "0",
            f"{size[0]}x{size[1]}x24",
            "+xinerama",
            "-nolisten",
            "tcp",
        ],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    number = b""
    deadline = time.monotonic() + 15
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        while not number.endswith(b"\n") and time.monotonic() < deadline:
            chunk = pipe.read(16)
            if not chunk:
                break
            number += chunk
    if not number.strip().isdigit():
        process.kill()
        process.wait()
        raise RuntimeError(f"Xvfb did not report a display number (got {number!r})")
    return process, f":{number.decode().strip()}"


@dataclass
class XServer:
    display: str
    monitors: bool  # whether the two virtual monitors could be defined


@pytest.fixture(scope="module")
def xserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XServer]:
    """A two-monitor Xvfb; DISPLAY and XAUTHORITY point at it for the whole module."""
    if MISSING is not None:
        pytest.skip(f"no desktop: {MISSING}")
    process, display = _start_xvfb(ROOT_SIZE)
    saved = {name: os.environ.get(name) for name in ("DISPLAY", "XAUTHORITY")}
    xauthority = tmp_path_factory.mktemp("x11") / "Xauthority"
    xauthority.touch()  # an empty authority file: python-xlib needs one to exist
    os.environ["DISPLAY"], os.environ["XAUTHORITY"] = display, str(xauthority)
    try:
        monitors: VirtualMonitors | None = VirtualMonitors(display, [MONITOR_1, MONITOR_2])
    except (OSError, RuntimeError, AttributeError):
        monitors = None
    try:
        yield XServer(display, monitors is not None)
    finally:
        if monitors is not None:
            monitors.close()
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture
def two_monitors(xserver: XServer) -> XServer:
    if not xserver.monitors:
        pytest.skip("could not define RandR monitors on Xvfb (libXrandr missing?)")
    return xserver


# --------------------------------------------------------------------------- the app


class App:
    """examples/desktop_app.py running in a window; reads its JSON-lines log."""

    def __init__(self, log: Path, rect: Rect, name: str) -> None:
        self.log, self.rect, self.name = log, rect, name
        geometry = f"{rect.width}x{rect.height}+{rect.left}+{rect.top}"
        self.process = subprocess.Popen(
            [sys.executable, str(APP), str(log), "--geometry", geometry, "--name", name],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        ready = self.wait_for(lambda e: e["event"] == "ready", timeout=15)
        self.widgets: dict[str, Rect] = {k: Rect(*v) for k, v in ready["widgets"].items()}
        self.mark = len(self.events())

    def events(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text("utf-8").splitlines() if line]

    def since_mark(self) -> list[dict[str, Any]]:
        return self.events()[self.mark :]

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> dict[str, Any]:
        """The first event (after the mark) matching `predicate`, waiting for it."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events()[getattr(self, "mark", 0) :]:
                if predicate(event):
                    return event
            if self.process.poll() is not None:
                stderr = self.process.stderr.read().decode() if self.process.stderr else ""
                raise AssertionError(f"the app exited ({self.process.returncode}): {stderr}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching event; got {self.since_mark()}")
            time.sleep(0.02)

    def wait_press(self, widget: str, num: int = 1) -> dict[str, Any]:
        return self.wait_for(
            lambda e: e["event"] == "press" and e["widget"] == widget and e["num"] == num
        )

    def text(self) -> str:
        texts = [e["text"] for e in self.events() if e["event"] == "text"]
        return texts[-1] if texts else ""

    def centre(self, widget: str) -> tuple[int, int]:
        """Centre of a widget in physical (root) pixels."""
        box = self.widgets[widget]
        return box.left + box.width // 2, box.top + box.height // 2

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr:
            self.process.stderr.close()


@pytest.fixture
def app(xserver: XServer, tmp_path: Path) -> Iterator[App]:
    """The test app filling monitor 1 (or the top-left 1280x800 without monitors)."""
    rect = MONITOR_1 if xserver.monitors else Rect(0, 0, 1280, 800)
    running = App(tmp_path / "main.jsonl", rect, "main")
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def side_app(two_monitors: XServer, tmp_path: Path) -> Iterator[App]:
    """A second app filling monitor 2."""
    running = App(tmp_path / "side.jsonl", MONITOR_2, "side")
    try:
        yield running
    finally:
        running.close()


def _shot_pixel(physical: tuple[int, int], region: Rect, shot: tuple[int, int]) -> tuple[int, int]:
    """Where a physical point is in a screenshot of `region` resized to `shot` (test-side)."""
    return (
        int((physical[0] - region.left) * shot[0] / region.width),
        int((physical[1] - region.top) * shot[1] / region.height),
    )


def _inside(event: dict[str, Any], box: Rect) -> bool:
    return box.contains(event["x_root"], event["y_root"])


def _pointer() -> tuple[int, int]:
    import pyautogui

    x, y = pyautogui.position()
    return int(x), int(y)


# --------------------------------------------------------------------------- scripted model


class DesktopScriptedModel(ScriptedModel):
    """ScriptedModel whose "selectors" are widget IDs of the app, located from its own
    geometry log and expressed in 0..1000 of the screenshot the model received."""

    app: Any = None  # App
    region: Any = None  # Rect the screenshots show, physical pixels

    def _box_norm(self, selector: str, size: tuple[int, int]) -> tuple[int, int, int, int]:
        box = self.app.widgets[selector]
        region = self.region

        def norm(value: float, start: int, extent: int) -> int:
            return int((value - start) / extent * 1000 + 0.5)

        return (
            norm(box.left, region.left, region.width),
            norm(box.top, region.top, region.height),
            norm(box.right, region.left, region.width),
            norm(box.bottom, region.top, region.height),
        )

    def _point(self, selector: str, size: tuple[int, int]) -> tuple[int, int]:
        x1, y1, x2, y2 = self._box_norm(selector, size)
        return (x1 + x2) // 2, (y1 + y2) // 2


# --------------------------------------------------------------------------- tests: no X


def test_no_display_raises_configuration_error_with_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    with pytest.raises(ConfigurationError) as info:
        DesktopComputer().screenshot()
    message = str(info.value)
    assert "DISPLAY" in message
    assert "xvfb-run" in message and "Xvfb :99" in message and "export DISPLAY=:99" in message


@pytest.mark.skipif(importlib.util.find_spec("mss") is None, reason="mss is not installed")
def test_unreachable_display_raises_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPLAY", ":4093")  # nothing listens there
    with pytest.raises(ConfigurationError, match=r"display ':4093'.*xvfb-run"):
        DesktopComputer().screenshot()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"monitor": "left"}, "monitor must be"),
        ({"monitor": -1}, "monitor must be"),
        ({"scale_factor": 0}, "scale_factor must be > 0"),
        ({"max_screenshot_width": 4}, "max_screenshot_width"),
        ({"type_method": "telepathy"}, "type_method must be one of"),
        ({"blocked_keys": ["ctrl+alt+deleet"]}, "invalid blocked_keys entry"),
        ({"settle": -1}, "settle"),
    ],
)
def test_bad_options_are_configuration_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        DesktopComputer(**kwargs)


def test_browser_only_actions_are_refused_without_a_display() -> None:
    desktop = DesktopComputer()
    assert desktop.kind == "desktop"
    navigated = desktop.navigate("example.com")
    assert not navigated.ok and "not available on the desktop" in navigated.message
    assert "type_text" in navigated.message
    back = desktop.go_back()
    assert not back.ok and "not available on the desktop" in back.message
    assert not desktop.launched  # refusing needs no display


def test_blocked_keys_are_checked_before_touching_the_display() -> None:
    desktop = DesktopComputer(blocked_keys=[*DEFAULT_BLOCKED_KEYS, "ctrl+shift+escape"])
    for keys in ("ctrl+alt+Delete", "alt+F4", "super+L", "Win+l", "ctrl+alt+F2", "ctrl+shift+esc"):
        assert desktop.is_blocked(keys), keys
        outcome = desktop.press_key(keys)
        assert not outcome.ok and outcome.message.startswith("blocked:"), keys
    assert not desktop.is_blocked("ctrl+a")
    assert not desktop.launched


# --------------------------------------------------------------------------- tests: real X


@needs_x
@needs_xdotool
def test_agent_clicks_every_button_and_types_unicode(app: App, tmp_path: Path) -> None:
    """The GUIAgent, a scripted model answering in 0..1000 and the real desktop."""
    desktop = DesktopComputer(monitor=1, settle=0.05)
    script: list[Step] = [click(name) for name in BUTTONS if name != "centre"]
    script += [
        click(None, element="the centre button"),  # grounded by the model, InternVL style
        type_into("field", UNICODE_TEXT),
        done("all clicked"),
    ]
    with desktop:
        model = DesktopScriptedModel(
            script=script, elements={"the centre button": "centre"}, app=app, region=desktop.region
        )
        result = GUIAgent(model, desktop, record_dir=tmp_path / "runs", max_steps=10).run(
            "Click every button, then type the text into the field"
        )
    assert result.status == "done", (result.error, result.history)
    tools = model.bind_log[0]["tools"]
    assert "click" in tools and "type_text" in tools and "navigate" not in tools
    assert model.grounding_calls == ["the centre button"]
    for name in BUTTONS:
        hit = app.wait_press(name)
        assert _inside(hit, app.widgets[name]), (name, hit)
    app.wait_for(lambda e: e["event"] == "text" and e["text"] == UNICODE_TEXT)
    field_hit = app.wait_press("field")
    assert _inside(field_hit, app.widgets["field"])
    shots = sorted((result.record_path or tmp_path).rglob("*.png"))
    assert shots, "the run record keeps the screenshots"


@needs_x
async def test_agent_arun_drives_the_desktop_from_its_worker_thread(
    app: App, tmp_path: Path
) -> None:
    """Opened on this thread, used from the agent's computer executor."""
    with DesktopComputer(monitor=1, settle=0.02) as desktop:
        model = DesktopScriptedModel(
            script=[click("centre"), done("ok")], app=app, region=desktop.region
        )
        agent = GUIAgent(model, desktop, record_dir=tmp_path / "runs", max_steps=4)
        try:
            result = await agent.arun("Click the centre button")
        finally:
            agent.close()
    assert result.status == "done", (result.error, result.history)
    assert _inside(app.wait_press("centre"), app.widgets["centre"])


@needs_x
def test_screenshot_shows_the_chosen_monitor(two_monitors: XServer, app: App) -> None:
    """The app fills monitor 1: its blue buttons are where its own geometry says."""
    with DesktopComputer(monitor=1) as desktop:
        assert desktop.scale_factor == 1.0  # X11: detected from pyautogui.size()
        shot = desktop.screenshot()
        assert shot.size == MONITOR_1.size
        assert shot.extra["region"] == [0, 224, 1280, 800]
        assert shot.extra["monitor"] == 1 and shot.url is None
        for name in BUTTONS:
            box = app.widgets[name]
            inside = (box.left + 5 - MONITOR_1.left, box.top + 5 - MONITOR_1.top)
            assert shot.image.getpixel(inside) == BLUE, name
        centre = app.widgets["centre"]
        above = (centre.left + 5 - MONITOR_1.left, centre.top - 5 - MONITOR_1.top)
        assert shot.image.getpixel(above) == GREY
        small = DesktopComputer(monitor=1, max_screenshot_width=640).screenshot()
        assert small.size == (640, 400)
        box = app.widgets["bottom_right"]  # left of its label, in the half-size image
        point = ((box.left + 12) // 2, (box.top - 224 + box.height // 2) // 2)
        colour = small.image.getpixel(point)
        assert all(abs(a - b) <= 2 for a, b in zip(colour, BLUE, strict=True)), colour
    assert not desktop.launched


@needs_x
def test_click_kinds_and_buttons(app: App) -> None:
    with DesktopComputer(monitor=1, settle=0.02) as desktop:
        shot = desktop.screenshot()
        x, y = _shot_pixel(app.centre("top_right"), desktop.region, shot.size)
        assert (
            desktop.click(x, y, button="right").message == f"clicked at ({x}, {y}) (right button)"
        )
        app.wait_press("top_right", num=3)
        assert desktop.click(x, y, clicks=2).ok
        app.wait_for(lambda e: e["event"] == "double" and e["widget"] == "top_right")
        time.sleep(0.6)  # let the double-click time pass before the next series
        assert desktop.click(x, y, clicks=3).message.startswith("triple-clicked")
        app.wait_for(lambda e: e["event"] == "triple" and e["widget"] == "top_right")
        assert not desktop.click(x, y, button="side").ok  # type: ignore[arg-type]
        assert not desktop.click(x, y, clicks=4).ok


@needs_x
def test_points_outside_the_monitor_are_refused(app: App) -> None:
    with DesktopComputer(monitor=1, settle=0) as desktop:
        width, height = desktop.screenshot().size
        for x, y in ((-1, 10), (10, -1), (width, 10), (10, height)):
            outcome = desktop.click(x, y)
            assert not outcome.ok and "outside the screenshot" in outcome.message
        assert not desktop.drag(10, 10, width + 5, 10).ok
        assert not desktop.scroll("down", 1, -3, 4).ok
    time.sleep(0.2)
    assert not [e for e in app.since_mark() if e["event"] == "press"]


@needs_x
def test_corner_click_is_moved_off_the_fail_safe(two_monitors: XServer, app: App) -> None:
    """Monitor 1's bottom-left pixel is the screen's corner: pyautogui's fail-safe point."""
    with DesktopComputer(monitor=1, settle=0.02) as desktop:
        shot = desktop.screenshot()
        outcome = desktop.click(0, shot.size[1] - 1)
        assert outcome.ok and "fail-safe" in outcome.message
        hit = app.wait_press("bottom_left")
        assert (hit["x_root"], hit["y_root"]) == (1, ROOT_SIZE[1] - 2)
        assert desktop.pyautogui.FAILSAFE is True


@needs_x
@needs_xdotool
def test_pointer_in_a_corner_stops_every_action(app: App) -> None:
    """A person parks the pointer in a corner: actions are refused until it leaves."""
    with DesktopComputer(monitor=1, settle=0.02) as desktop:
        shot = desktop.screenshot()
        x, y = _shot_pixel(app.centre("centre"), desktop.region, shot.size)
        subprocess.run(["xdotool", "mousemove", "0", "0"], check=True)  # the person
        try:
            for outcome in (
                desktop.click(x, y),
                desktop.press_key("Tab"),
                desktop.scroll("down", 1, x, y),
                desktop.drag(x, y, x + 5, y),
            ):
                assert (outcome.ok, outcome.message) == (False, FAILSAFE_MESSAGE)
            assert _pointer() == (0, 0)
        finally:
            subprocess.run(["xdotool", "mousemove", "300", "300"], check=True)
        assert desktop.click(x, y).ok
        app.wait_press("centre")


@needs_x
def test_keys_combos_and_blocked_keys(app: App) -> None:
    with DesktopComputer(monitor=1, settle=0.02) as desktop:
        shot = desktop.screenshot()
        outcome = desktop.click(*_shot_pixel(app.centre("field"), desktop.region, shot.size))
        assert outcome.ok
        assert desktop.type_text("abc").ok
        app.wait_for(lambda e: e["event"] == "text" and e["text"] == "abc")
        assert desktop.press_key("BackSpace").ok
        app.wait_for(lambda e: e["event"] == "text" and e["text"] == "ab")
        assert desktop.press_key("ctrl+a").message == "pressed ctrl+a"
        app.wait_for(lambda e: e["event"] == "key" and e["keysym"] == "a" and e["state"] & 4)
        assert desktop.press_key("shift+Tab").ok
        app.wait_for(lambda e: e["event"] == "key" and e["keysym"] == "ISO_Left_Tab")
        assert desktop.press_key("Enter").ok
        app.wait_for(lambda e: e["event"] == "key" and e["keysym"] == "Return")
        mark = len(app.events())
        blocked = desktop.press_key("alt+F4")
        assert not blocked.ok and blocked.message.startswith("blocked: alt+F4")
        unknown = desktop.press_key("ctrl+é")
        assert not unknown.ok and "type_text" in unknown.message
        bad = desktop.press_key("ctrl+banana")
        assert not bad.ok and "unknown key 'banana'" in bad.message
        time.sleep(0.2)
        assert app.events()[mark:] == []  # nothing reached the app
        assert app.process.poll() is None


@needs_x
def test_type_text_methods(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    with DesktopComputer(monitor=1, settle=0.02, type_method="keys") as desktop:
        shot = desktop.screenshot()
        assert desktop.click(*_shot_pixel(app.centre("field"), desktop.region, shot.size)).ok
        assert desktop.type_text("Plain ASCII!").ok
        app.wait_for(lambda e: e["event"] == "text" and e["text"] == "Plain ASCII!")
        refused = desktop.type_text(UNICODE_TEXT)
        assert not refused.ok and "non-ASCII" in refused.message
        assert not desktop.type_text("").ok
    monkeypatch.setattr(shutil, "which", lambda name: None)
    missing = DesktopComputer(type_method="xdotool")
    outcome = missing.type_text("x")
    assert not outcome.ok and "xdotool is not installed" in outcome.message


@needs_x
def test_scroll_and_drag(app: App) -> None:
    with DesktopComputer(monitor=1, settle=0.02) as desktop:
        shot = desktop.screenshot()
        x, y = _shot_pixel(app.centre("top_left"), desktop.region, shot.size)
        assert desktop.scroll("down", 2, x, y).message == f"scrolled down 2 at ({x}, {y})"
        app.wait_press("top_left", num=5)
        assert desktop.scroll("up", 1, x, y).ok
        app.wait_press("top_left", num=4)
        # Tk reports the horizontal wheel (X buttons 6/7) as 4/5 with Shift held
        assert desktop.scroll("left", 1).message == "scrolled left 1 at the centre"
        app.wait_for(lambda e: e.get("num") == 4 and e["state"] & 1 and e["widget"] == "centre")
        assert desktop.scroll("right", 1).ok
        app.wait_for(lambda e: e.get("num") == 5 and e["state"] & 1 and e["widget"] == "centre")
        assert not desktop.scroll("sideways", 1).ok  # type: ignore[arg-type]
        assert not desktop.scroll("down", 0).ok
        assert not desktop.scroll("down", 1, x, None).ok

        end = _shot_pixel(app.centre("centre"), desktop.region, shot.size)
        assert desktop.drag(x, y, *end).ok
        release = app.wait_for(lambda e: e["event"] == "release" and e["num"] == 1)
        assert release["widget"] == "top_left"  # the pressed widget gets the release...
        assert _inside(release, app.widgets["centre"])  # ...where the pointer ended


@needs_x
def test_second_monitor(two_monitors: XServer, side_app: App) -> None:
    with DesktopComputer(monitor=2, settle=0.02) as desktop:
        assert desktop.layout.monitors == (MONITOR_1, MONITOR_2)
        assert desktop.layout.primary == 1
        shot = desktop.screenshot()
        assert shot.size == MONITOR_2.size
        assert shot.extra["region"] == [1280, 0, 1024, 768]
        for name in BUTTONS:
            assert desktop.click(*_shot_pixel(side_app.centre(name), MONITOR_2, shot.size)).ok
            hit = side_app.wait_press(name)
            assert _inside(hit, side_app.widgets[name]) and hit["x_root"] >= 1280
    with DesktopComputer(monitor="primary") as primary:
        assert primary.monitor_index == 1
    with pytest.raises(ConfigurationError, match=r"no monitor 3.*2 = 1024x768 at \(1280, 0\)"):
        DesktopComputer(monitor=3).launch()


@needs_x
def test_all_monitors_downscaled(two_monitors: XServer, app: App, side_app: App) -> None:
    """monitor=0 at half size: clicks land on both monitors; the gaps are refused."""
    with DesktopComputer(monitor="all", max_screenshot_width=1152, settle=0.02) as desktop:
        shot = desktop.screenshot()
        assert shot.size == (1152, 512)
        assert shot.extra["monitors"] == [[0, 224, 1280, 800], [1280, 0, 1024, 768]]
        union = Rect(0, 0, *ROOT_SIZE)
        for running in (app, side_app):
            for name in ("top_left", "centre", "bottom_right"):
                point = _shot_pixel(running.centre(name), union, shot.size)
                assert desktop.click(*point).ok
                hit = running.wait_press(name)
                assert _inside(hit, running.widgets[name])
        for gap in ((100, 50), (1000, 450)):  # above monitor 1, below monitor 2
            outcome = desktop.click(*gap)
            assert not outcome.ok and "gap between monitors" in outcome.message


@needs_x
def test_scale_factor_override_with_a_resized_screenshot(two_monitors: XServer) -> None:
    """scale_factor=1.25 on monitor 2 shown at 640 wide: the pointer goes to
    floor((left + (x + 0.5) * 1.6) / 1.25), computed here independently."""
    with DesktopComputer(
        monitor=2, scale_factor=1.25, max_screenshot_width=640, settle=0
    ) as desktop:
        assert desktop.scale_factor == 1.25
        shot = desktop.screenshot()
        assert shot.size == (640, 480)
        for x, y in ((0, 0), (100, 200), (639, 479), (321, 17)):
            assert desktop.scroll("down", 1, x, y).ok  # moves the pointer, clicks nothing
            expected_x = int((1280 + (x + 0.5) * 1024 / 640) / 1.25)
            expected_y = int((0 + (y + 0.5) * 768 / 480) / 1.25)
            assert _pointer() == (expected_x, expected_y), (x, y)
    with DesktopComputer(monitor=1, scale_factor=2.0, settle=0) as doubled:
        doubled.screenshot()
        assert doubled.scroll("down", 1, 801, 600).ok
        assert _pointer() == (400, 412)  # (801.5 / 2, (224 + 600.5) / 2)


@needs_x
def test_pyautogui_bound_to_another_display_is_a_configuration_error(
    xserver: XServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pyautogui connects once, at import: a later DISPLAY change cannot be followed."""
    DesktopComputer().launch()  # pyautogui is now bound to the fixture's display
    other, display = _start_xvfb((640, 480))
    try:
        monkeypatch.setenv("DISPLAY", display)
        with pytest.raises(ConfigurationError, match="set DISPLAY before pyautogui is first"):
            DesktopComputer().launch()
    finally:
        other.terminate()
        other.wait()


@needs_x
def test_hover_and_clicks_holding_keys(app: App) -> None:
    """hover moves the pointer only; ctrl/shift are held during the press (X state bits
    4 and 1) and released after it."""
    with DesktopComputer(monitor=1, settle=0.02) as desktop:
        shot = desktop.screenshot()
        x, y = _shot_pixel(app.centre("top_right"), desktop.region, shot.size)
        before = len(app.events())
        outcome = desktop.hover(x, y)
        assert outcome.ok and outcome.message == f"moved the mouse to ({x}, {y})"
        assert _inside({"x_root": _pointer()[0], "y_root": _pointer()[1]}, app.widgets["top_right"])
        time.sleep(0.2)
        assert [e for e in app.events()[before:] if e["event"] == "press"] == []
        held = desktop.click(x, y, modifiers=["ctrl", "shift"])
        assert held.ok and "holding ctrl+shift" in held.message
        press = app.wait_for(lambda e: e["event"] == "press" and e["widget"] == "top_right")
        assert press["state"] & 4 and press["state"] & 1
        time.sleep(0.6)
        app.mark = len(app.events())
        assert desktop.click(x, y).ok
        plain = app.wait_for(lambda e: e["event"] == "press" and e["widget"] == "top_right")
        assert not plain["state"] & 5  # the keys were released


@needs_x
def test_settle_waits_for_a_still_screen(app: App) -> None:
    """After an action the desktop captures until two captures match; on a still screen
    that is one interval, and it never waits past the bound."""
    with DesktopComputer(monitor=1, settle=1.0, settle_interval=0.05) as desktop:
        desktop.screenshot()
        waited = desktop.wait_until_still()
        assert 0.04 <= waited < 0.5
        assert desktop.last_settle_s == waited
    with DesktopComputer(monitor=1, settle=0.0) as desktop:
        assert desktop.wait_until_still() < 0.01

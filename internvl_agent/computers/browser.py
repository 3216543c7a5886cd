"""A Chromium page driven through Playwright's sync API, as a `Computer`.

Screenshots are in device pixels (viewport * device_scale_factor); Playwright's mouse works in
CSS pixels; `coordinates.css_map` converts between them.

The sync API is bound to the thread that launched the browser and refuses to start inside a
running asyncio loop: use a BrowserComputer from the thread that created it, off the event
loop. Computers on one thread share one Playwright driver (see `chromium.acquire_playwright`).
"""

from __future__ import annotations

import base64
import contextlib
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from internvl_agent.computers.base import (
    ActionOutcome,
    Computer,
    MouseButton,
    Screenshot,
    ScrollDirection,
)
from internvl_agent.computers.chromium import acquire_playwright, find_browser, release_playwright
from internvl_agent.computers.keys import to_playwright_keys
from internvl_agent.coordinates import PixelMap, Point, Size, css_map, expected_shot_size
from internvl_agent.errors import ConfigurationError, InternVLAgentError
from internvl_agent.urls import normalize_url

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, CDPSession, Dialog, Page, Playwright

DEFAULT_LAUNCH_ARGS: tuple[str, ...] = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-smooth-scrolling",
)
SCROLL_NOTCH_CSS = 100
DRAG_STEPS = 12
ACTION_PAUSE_S = 0.05  # lets a click start its navigation or popup before we wait on it
MOUSE_BUTTONS = ("left", "right", "middle")
# Chromium's own capture of the viewport, PNG from its fast encoder (still lossless): about
# half the time of Playwright's page.screenshot(type="png") at 1920x1080 (tools/bench_capture.py).
CAPTURE_PARAMS: dict[str, Any] = {
    "format": "png",
    "optimizeForSpeed": True,
    "captureBeyondViewport": False,
    "fromSurface": True,
}


# --------------------------------------------------------------------------- urls


def _first_line(exc: BaseException) -> str:
    """A Playwright error without its call log: "net::ERR_CONNECTION_REFUSED at ..."."""
    line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    head, sep, rest = line.partition(": ")
    return rest if sep and "." in head and " " not in head else line


# --------------------------------------------------------------------------- computer


class BrowserComputer(Computer):
    """A Chromium tab the agent sees through screenshots and drives with mouse and keys.

    Constructing is cheap; the browser launches on first use or in ``__enter__``. New tabs
    and popups become the active page; when it closes, the previous one is active again.
    """

    kind = "browser"

    def __init__(
        self,
        start_url: str | None = None,
        *,
        headless: bool = True,
        viewport: tuple[int, int] = (1280, 800),
        device_scale_factor: float = 1.0,
        browser_path: str | None = None,
        settle_timeout: float = 5.0,
        navigation_timeout: float = 30.0,
        launch_args: Sequence[str] = (),
    ) -> None:
        if viewport[0] < 1 or viewport[1] < 1:
            raise ConfigurationError(f"viewport must be positive (width, height), got {viewport}")
        if device_scale_factor <= 0:
            raise ConfigurationError(f"device_scale_factor must be > 0, got {device_scale_factor}")
        self.start_url = start_url
        self.headless = headless
        self.viewport = (int(viewport[0]), int(viewport[1]))
        self.device_scale_factor = float(device_scale_factor)
        self.browser_path = browser_path
        self.settle_timeout = settle_timeout
        self.navigation_timeout = navigation_timeout
        self.launch_args = tuple(launch_args)
        self.executable: str | None = None
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._context: BrowserContext | None = None
        self._pages: list[Page] = []
        self._front: Page | None = None
        self._last_map: PixelMap | None = None
        self._notes: list[str] = []  # things the model should hear about after an action
        self._cdp: weakref.WeakKeyDictionary[Page, CDPSession] = weakref.WeakKeyDictionary()

    # ---------------------------------------------------------------- lifecycle

    @property
    def launched(self) -> bool:
        """Whether the browser is running."""
        return self._context is not None

    def launch(self) -> None:
        """Start Playwright and the browser (no-op when already running)."""
        if self.launched:
            return
        playwright = acquire_playwright()
        from playwright.sync_api import Error as PlaywrightError

        try:
            self.executable = find_browser(
                self.browser_path, playwright_executable=_playwright_chromium(playwright)
            )
            self._browser = playwright.chromium.launch(
                executable_path=self.executable,
                headless=self.headless,
                args=[*DEFAULT_LAUNCH_ARGS, *self.launch_args],
            )
            self._context = self._browser.new_context(
                viewport={"width": self.viewport[0], "height": self.viewport[1]},
                device_scale_factor=self.device_scale_factor,
            )
        except BaseException as exc:
            self._playwright = playwright
            self.close()
            if isinstance(exc, PlaywrightError):
                raise ConfigurationError(
                    f"Could not launch the browser at {self.executable}: {_launch_problem(exc)}"
                ) from exc
            raise
        self._playwright = playwright
        self._context.set_default_timeout(self.navigation_timeout * 1000)
        self._context.on("page", self._track)
        self._track(self._context.new_page())
        if self.start_url:
            self.navigate(self.start_url)

    def close(self) -> None:
        """Close the browser and release Playwright; safe to call more than once."""
        context, browser, playwright = self._context, self._browser, self._playwright
        self._context = self._browser = self._playwright = None
        self._pages.clear()
        self._front = self._last_map = None
        with contextlib.suppress(Exception):  # already gone: nothing to report to
            if context:
                context.close()
        with contextlib.suppress(Exception):
            if browser:
                browser.close()
        if playwright:
            release_playwright(playwright)

    def __enter__(self) -> BrowserComputer:
        self.launch()
        return self

    # ---------------------------------------------------------------- pages

    def _track(self, page: Page) -> None:
        if page in self._pages:
            return
        self._pages.append(page)
        page.on("close", self._untrack)
        page.on("dialog", self._on_dialog)

    def _on_dialog(self, dialog: Dialog) -> None:
        """Dismiss alerts and confirms (never agree on the model's behalf); allow leaving."""
        with contextlib.suppress(Exception):
            if dialog.type == "beforeunload":
                dialog.accept()
            else:
                dialog.dismiss()
                self._notes.append(f"a {dialog.type} dialog said {dialog.message!r} (dismissed)")

    def _untrack(self, page: Page) -> None:
        if page in self._pages:
            self._pages.remove(page)

    @property
    def page(self) -> Page:
        """The active page: the newest open tab (launching the browser if needed)."""
        self.launch()
        assert self._context is not None
        if not self._pages:
            self._track(self._context.new_page())
        page = self._pages[-1]
        if page is not self._front:
            self._front = page
            with contextlib.suppress(Exception):  # a tab closing under us: handled on next use
                page.bring_to_front()
        return page

    @property
    def tab_count(self) -> int:
        """How many tabs are open."""
        return len(self._pages)

    def current_url(self) -> str | None:
        """The active page's URL, or None before the browser starts."""
        return self._pages[-1].url if self._pages else None

    def page_state(self) -> dict[str, Any]:
        """URL, title, tab count and scroll position of the active page."""
        page = self.page
        scroll = page.evaluate("[window.scrollX, window.scrollY]")
        return {
            "url": page.url,
            "title": page.title(),
            "tabs": self.tab_count,
            "scroll": (scroll[0], scroll[1]),
        }

    def _settle(self) -> None:
        """Wait for DOMContentLoaded, then briefly for network idle, within settle_timeout."""
        from playwright.sync_api import Error as PlaywrightError

        with self.settling():  # the step's "settle" phase, not framework overhead
            deadline = time.monotonic() + self.settle_timeout
            with contextlib.suppress(PlaywrightError):  # a closed page: self.page falls back
                self.page.wait_for_timeout(ACTION_PAUSE_S * 1000)
            for state in ("domcontentloaded", "networkidle"):
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                with contextlib.suppress(PlaywrightError):  # never idle (polling): good enough
                    self.page.wait_for_load_state(state, timeout=left * 1000)

    def _act(self, what: str, action: Callable[[], str]) -> ActionOutcome:
        """Run an action, settle, and report; Playwright errors become ok=False outcomes."""
        from playwright.sync_api import Error as PlaywrightError

        before = self._pages[-1] if self._pages else None
        try:
            message = action()
            self._settle()
        except PlaywrightError as exc:
            message = f"{what} failed: {_first_line(exc)}{self._news(before)}"
            return ActionOutcome(False, message, self.current_url())
        return ActionOutcome(True, message + self._news(before), self.current_url())

    def _news(self, before: Page | None) -> str:
        """Dialogs seen and tab switches since `before` was active, as "; ..." notes."""
        notes, self._notes = self._notes, []
        active = self._pages[-1] if self._pages else None
        if active is not None and active is not before:
            if before in self._pages:
                notes.append(f"a new tab opened and is now active: {active.url}")
            else:
                notes.append(f"the tab closed; back to {active.url}")
        return "".join(f"; {note}" for note in notes)

    # ---------------------------------------------------------------- screen

    def _map(self) -> PixelMap:
        if self._last_map is not None:
            return self._last_map
        css = self._css_size(self.page)
        dsf = self.device_scale_factor
        return css_map(expected_shot_size(css, dsf), css, dsf)

    def _css_size(self, page: Page) -> Size:
        size = page.viewport_size
        if size:
            return size["width"], size["height"]
        width, height = page.evaluate("[window.innerWidth, window.innerHeight]")
        return int(width), int(height)

    def _capture_png(self, page: Page) -> bytes:
        """The viewport in device pixels as PNG, straight from Chromium over CDP
        (``Page.captureScreenshot``, fast lossless encoder); Playwright's screenshot where
        no CDP session can be had."""
        from playwright.sync_api import Error as PlaywrightError

        session = self._cdp.get(page)
        if session is None:
            try:
                session = self._cdp[page] = page.context.new_cdp_session(page)
            except PlaywrightError:
                return page.screenshot(type="png", caret="initial")
        # The visual viewport in CSS pixels of the page, scaled to device pixels: exactly
        # the region and size Playwright's viewport screenshot has.
        view = session.send("Page.getLayoutMetrics")["cssVisualViewport"]
        width, height = self._css_size(page)
        scale = float(view.get("scale") or 1.0)  # pinch zoom
        clip = {
            "x": view["pageX"],
            "y": view["pageY"],
            "width": int(width / scale + 1e-3),
            "height": int(height / scale + 1e-3),
            "scale": scale * self.device_scale_factor,
        }
        result = session.send("Page.captureScreenshot", {**CAPTURE_PARAMS, "clip": clip})
        return base64.b64decode(result["data"])

    def screenshot(self) -> Screenshot:
        """PNG of the active page's viewport in device pixels, with its URL and title.

        The PNG bytes are Chromium's, kept in the Screenshot for the model (data URL) and the
        record as they are; the PIL image is decoded from them once, when first needed."""
        from playwright.sync_api import Error as PlaywrightError

        page = self.page
        try:
            png = self._capture_png(page)
            title = page.title()
        except PlaywrightError as exc:
            message = f"screenshot of {page.url} failed: {_first_line(exc)}"
            raise InternVLAgentError(message) from exc
        css = self._css_size(page)
        shot = Screenshot(
            png=png,
            url=page.url,
            title=title,
            extra={
                "css_size": css,
                "device_scale_factor": self.device_scale_factor,
                "tabs": self.tab_count,
            },
        )
        self._last_map = css_map(shot.size, css, self.device_scale_factor)
        return shot

    def _outside(self, *points: Point) -> ActionOutcome | None:
        """An ok=False outcome when a point is not on the last screenshot."""
        pixel_map = self._map()
        for x, y in points:
            if not pixel_map.contains(x, y):
                width, height = pixel_map.shot_size
                return ActionOutcome(
                    False,
                    f"({x}, {y}) is outside the screenshot ({width}x{height}); "
                    "nothing was done. Use coordinates inside the image.",
                    self.current_url(),
                )
        return None

    # ---------------------------------------------------------------- actions

    def click(
        self, x: int, y: int, *, button: MouseButton = "left", clicks: int = 1
    ) -> ActionOutcome:
        """Click at screenshot pixel (x, y)."""
        if button not in MOUSE_BUTTONS:
            return ActionOutcome(False, f"unknown mouse button {button!r}; use left/right/middle")
        if clicks not in (1, 2, 3):
            return ActionOutcome(False, f"clicks must be 1, 2 or 3, got {clicks}")
        if rejected := self._outside((x, y)):
            return rejected
        css_x, css_y = self._map().to_grid(x, y)

        def run() -> str:
            self.page.mouse.click(css_x, css_y, button=button, click_count=clicks)
            kind = {1: "clicked", 2: "double-clicked", 3: "triple-clicked"}[clicks]
            side = "" if button == "left" else f" ({button} button)"
            return f"{kind} at ({x}, {y}){side}"

        return self._act("click", run)

    def type_text(self, text: str) -> ActionOutcome:
        """Type text into the focused element (any Unicode; newlines press Enter)."""

        def run() -> str:
            page = self.page
            focused = page.evaluate(
                "(() => { const e = document.activeElement;"
                " return !!e && e !== document.body && e !== document.documentElement; })()"
            )
            page.keyboard.type(text)
            shown = text if len(text) <= 60 else text[:57] + "..."
            note = "" if focused else " (nothing had focus, so the keys went to the page)"
            return f"typed {shown!r}{note}"

        return self._act("type", run)

    def press_key(self, keys: str) -> ActionOutcome:
        """Press a key or combination: "Enter", "ctrl+a", "shift+Tab", "pagedown"..."""
        try:
            combo = to_playwright_keys(keys)
        except ValueError as exc:
            return ActionOutcome(False, str(exc), self.current_url())

        def run() -> str:
            self.page.keyboard.press(combo)
            return f"pressed {combo}"

        return self._act("key press", run)

    def scroll(
        self,
        direction: ScrollDirection,
        amount: int = 3,
        x: int | None = None,
        y: int | None = None,
    ) -> ActionOutcome:
        """Scroll `amount` notches of 100 CSS px at (x, y), or at the viewport centre."""
        steps = {"up": (0, -1), "down": (0, 1), "left": (-1, 0), "right": (1, 0)}
        if direction not in steps:
            return ActionOutcome(False, f"unknown direction {direction!r}; use up/down/left/right")
        if amount < 1:
            return ActionOutcome(False, f"amount must be at least 1 notch, got {amount}")
        if (x is None) != (y is None):
            return ActionOutcome(False, "give both x and y, or neither to scroll at the centre")
        if x is not None and y is not None:
            if rejected := self._outside((x, y)):
                return rejected
            css_x, css_y = self._map().to_grid(x, y)
            where = f"at ({x}, {y})"
        else:
            viewport = self._map().bounds
            assert viewport is not None  # css_map always sets it
            css_w, css_h = viewport
            css_x, css_y = css_w // 2, css_h // 2
            where = "at the centre"
        dx, dy = steps[direction]

        def run() -> str:
            mouse = self.page.mouse
            mouse.move(css_x, css_y)
            mouse.wheel(dx * amount * SCROLL_NOTCH_CSS, dy * amount * SCROLL_NOTCH_CSS)
            return f"scrolled {direction} {amount} {where}"

        return self._act("scroll", run)

    def drag(self, from_x: int, from_y: int, to_x: int, to_y: int) -> ActionOutcome:
        """Press at (from_x, from_y), move in small steps to (to_x, to_y), release."""
        if rejected := self._outside((from_x, from_y), (to_x, to_y)):
            return rejected
        start = self._map().to_grid(from_x, from_y)
        end = self._map().to_grid(to_x, to_y)

        def run() -> str:
            mouse = self.page.mouse
            mouse.move(*start)
            mouse.down()
            mouse.move(*end, steps=DRAG_STEPS)
            mouse.up()
            return f"dragged from ({from_x}, {from_y}) to ({to_x}, {to_y})"

        return self._act("drag", run)

    def navigate(self, url: str) -> ActionOutcome:
        """Open a URL in the active tab (http:// added for local hosts, else https://)."""
        from playwright.sync_api import Error as PlaywrightError

        target = normalize_url(url)
        if not target:
            return ActionOutcome(False, "no URL given", self.current_url())
        page = self.page
        for attempt in range(2):
            try:
                response = page.goto(
                    target, wait_until="domcontentloaded", timeout=self.navigation_timeout * 1000
                )
                break
            except PlaywrightError as exc:
                # A failed load commits its error page a moment later; that (or a late
                # redirect) can interrupt this navigation: let it land, then try once more.
                self._settle()
                if attempt == 0 and "interrupted by another navigation" in str(exc):
                    continue
                message = f"could not open {target}: {_first_line(exc)}"
                return ActionOutcome(False, message, self.current_url())
        self._settle()
        title = self._title()
        news, now = self._news(page), self.current_url()
        if response is not None and response.status >= 400:
            status = f"HTTP {response.status} {response.status_text}".rstrip()
            return ActionOutcome(False, f"{target} answered {status} ({title}){news}", now)
        return ActionOutcome(True, f"navigated to {now} ({title}){news}", now)

    def go_back(self) -> ActionOutcome:
        """Go back one entry in the active tab's history."""
        from playwright.sync_api import Error as PlaywrightError

        page = self.page
        before = page.url
        try:
            response = page.go_back(
                wait_until="domcontentloaded", timeout=self.navigation_timeout * 1000
            )
        except PlaywrightError as exc:
            return ActionOutcome(False, f"go back failed: {_first_line(exc)}", self.current_url())
        if response is None and page.url == before:
            return ActionOutcome(False, "no previous page in this tab", self.current_url())
        self._settle()
        news, url = self._news(page), self.current_url()
        return ActionOutcome(True, f"went back to {url} ({self._title()}){news}", url)

    def _title(self) -> str:
        try:
            return self.page.title() or "untitled"
        except Exception:
            return "untitled"


def _launch_problem(exc: BaseException) -> str:
    """The likely cause of a failed launch, from Playwright's browser log."""
    text = str(exc)
    if "X server" in text or "XServer" in text:
        return "a headed browser needs a display: use headless=True or run under xvfb-run."
    if "No usable sandbox" in text:
        return "Chromium's sandbox is unavailable: pass launch_args=['--no-sandbox']."
    return f"{_first_line(exc)}. Try another browser_path (the browser log is chained below)."


def _playwright_chromium(playwright: Playwright) -> str | None:
    """Where Playwright keeps its own Chromium (the file may not exist)."""
    try:
        return playwright.chromium.executable_path
    except Exception:
        return None

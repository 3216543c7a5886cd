"""A Chromium page driven through Playwright's sync API, as a `Computer`.

Screenshots are in device pixels (viewport * device_scale_factor); Playwright's mouse works in
CSS pixels; `coordinates.css_map` converts between them.

The sync API is bound to the thread that launched the browser and refuses to start inside a
running asyncio loop: use a BrowserComputer from the thread that created it, off the event
loop. Computers on one thread share one Playwright driver (see `chromium.acquire_playwright`).

Request filtering (`restrict_requests`, which GUIAgent sets from allowed_domains): every request
the browser makes pauses in Chromium's network stack (CDP ``Fetch`` on the browser target, so
every tab, popup, frame, out-of-process frame and redirect hop is covered) until the filter has
judged its URL; a refused one is failed there and never reaches the network. Service workers
are blocked in a filtered browser (their fetches would bypass a page's filtering). Paused
requests are answered while a Playwright call is running (the sync API dispatches events then):
a page acting between two actions waits, it is never let through unchecked.
"""

from __future__ import annotations

import base64
import contextlib
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from internvl_agent.computers.base import (
    ActionOutcome,
    Computer,
    Modifier,
    MouseButton,
    RequestFilter,
    Screenshot,
    ScrollDirection,
    refused_scroll,
)
from internvl_agent.computers.chromium import acquire_playwright, find_browser, release_playwright
from internvl_agent.computers.files import UploadRefused, allowed_upload, unique_path
from internvl_agent.computers.keys import to_playwright_keys
from internvl_agent.coordinates import PixelMap, Point, Size, css_map, expected_shot_size
from internvl_agent.errors import ConfigurationError, InternVLAgentError
from internvl_agent.urls import normalize_url

if TYPE_CHECKING:
    from playwright.sync_api import (
        Browser,
        BrowserContext,
        CDPSession,
        Dialog,
        Download,
        FileChooser,
        Frame,
        Page,
        Playwright,
        Request,
        WebSocketRoute,
    )

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
_BLANK_URLS = ("", "about:blank", "chrome-error://chromewebdata/")
HOVER_PAUSE_S = 0.05  # between arriving and pressing: hover styles and swapped icons apply
SETTLE_QUIET_S = 0.1  # default quiet window (docs/benchmarks.md: the settle's cost)
SETTLE_MAX_S = 3.0  # default bound on one settle
SETTLE_POLL_S = 0.025
LEAVING_S = 1.0  # how long a sent form or a page being left counts as busy (when no page comes)
MAX_DOWNLOAD_BYTES = 100 * 1024 * 1024
PLAYWRIGHT_MODIFIERS: dict[str, str] = {
    "ctrl": "Control",
    "shift": "Shift",
    "alt": "Alt",
    "meta": "Meta",
}
# Requests a page waits on; others (images, fonts, beacons) do not change what it shows next.
WATCHED_REQUESTS = ("document", "fetch", "xhr", "script", "stylesheet")

# Installed in every frame before its scripts run: the time of the last DOM change, and the
# short timers (setTimeout up to TIMER_LIMIT_MS: debounces, delayed menus) still pending.
SETTLE_SCRIPT = """
(() => {
  if (window.__ivaSettle) return;
  const TIMER_LIMIT_MS = %d;
  const s = window.__ivaSettle = {last: performance.now(), timers: new Set(), leaving: -1e9};
  const mark = () => { s.last = performance.now(); };
  // a form sent or a page being left: the next document is on its way (its request may
  // not have started yet on a busy machine)
  const leave = () => { s.leaving = performance.now(); };
  window.addEventListener('beforeunload', leave);
  window.addEventListener('submit', e => { if (!e.defaultPrevented) leave(); });
  new MutationObserver(mark).observe(document, {
    subtree: true, childList: true, attributes: true, characterData: true});
  const set = window.setTimeout, clear = window.clearTimeout;
  window.setTimeout = function (fn, delay, ...args) {
    const ms = Number(delay) || 0;
    let id;
    const run = typeof fn === 'function'
      ? function () { s.timers.delete(id); return fn.apply(this, arguments); }
      : fn;
    id = set.call(window, run, delay, ...args);
    if (ms <= TIMER_LIMIT_MS && typeof fn === 'function') s.timers.add(id);
    return id;
  };
  window.clearTimeout = function (id) { s.timers.delete(id); return clear.call(window, id); };
})();
"""
# How long this frame has been quiet (ms): 0 while loading, animating or a short timer waits.
QUIET_PROBE = """
(() => {
  const s = window.__ivaSettle;
  if (document.readyState === 'loading') return 0;
  const busy = document.getAnimations().some(a => a.playState === 'running'
    && a.effect && a.effect.getComputedTiming().iterations !== Infinity);
  if (busy || (s && (s.timers.size || performance.now() - s.leaving < %d))) return 0;
  return s ? performance.now() - s.last : 1e9;
})()
"""
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
    file_chooser_timeout_s = 5.0  # how long upload_file waits for a clicked button's chooser

    def __init__(
        self,
        start_url: str | None = None,
        *,
        headless: bool = True,
        viewport: tuple[int, int] = (1280, 800),
        device_scale_factor: float = 1.0,
        browser_path: str | None = None,
        settle_timeout: float = SETTLE_MAX_S,
        settle_quiet: float = SETTLE_QUIET_S,
        navigation_timeout: float = 30.0,
        launch_args: Sequence[str] = (),
        cdp_url: str | None = None,
        user_data_dir: str | Path | None = None,
        storage_state: str | Path | None = None,
        upload_dirs: Sequence[str | Path] = (),
        max_download_bytes: int = MAX_DOWNLOAD_BYTES,
    ) -> None:
        """settle_quiet / settle_timeout: after each action wait until every frame has been
        quiet (no DOM change, finite animation, short timer or page request) for settle_quiet
        seconds, at most settle_timeout seconds. cdp_url attaches to a running Chrome
        (``http://127.0.0.1:9222``): the agent works in a tab of its own, leaves the user's
        tabs alone and closes only what it opened; its viewport and device scale factor are
        read from the page. user_data_dir: a persistent profile. storage_state: cookies and
        localStorage saved by `save_storage_state`. upload_dirs: the only folders upload_file
        takes files from. Downloads are saved in the folder `use_download_dir` names (the
        agent gives the run's record folder), each at most max_download_bytes."""
        if viewport[0] < 1 or viewport[1] < 1:
            raise ConfigurationError(f"viewport must be positive (width, height), got {viewport}")
        if device_scale_factor <= 0:
            raise ConfigurationError(f"device_scale_factor must be > 0, got {device_scale_factor}")
        if settle_quiet < 0 or settle_timeout < settle_quiet:
            raise ConfigurationError(
                f"need 0 <= settle_quiet <= settle_timeout, got {settle_quiet} and {settle_timeout}"
            )
        if sum(x is not None for x in (cdp_url, user_data_dir)) > 1:
            raise ConfigurationError("give cdp_url or user_data_dir, not both")
        if storage_state is not None:
            if cdp_url is not None or user_data_dir is not None:
                raise ConfigurationError(
                    "storage_state loads into a fresh browser; an attached browser or a "
                    "user_data_dir profile keeps its own cookies"
                )
            if not Path(storage_state).is_file():
                raise ConfigurationError(
                    f"storage_state {storage_state} does not exist; save one with "
                    "save_storage_state(path) (CLI: --save-storage-state)"
                )
        self.start_url = start_url
        self.headless = headless
        self.viewport = (int(viewport[0]), int(viewport[1]))
        self.device_scale_factor = float(device_scale_factor)
        self.browser_path = browser_path
        self.settle_timeout = settle_timeout
        self.settle_quiet = settle_quiet
        self.navigation_timeout = navigation_timeout
        self.launch_args = tuple(launch_args)
        self.cdp_url = cdp_url
        self.user_data_dir = None if user_data_dir is None else Path(user_data_dir)
        self.storage_state = None if storage_state is None else Path(storage_state)
        self.upload_dirs = tuple(Path(d).expanduser() for d in upload_dirs)
        for folder in self.upload_dirs:
            if not folder.is_dir():
                raise ConfigurationError(f"upload folder {folder} is not a directory")
        self.max_download_bytes = max_download_bytes
        self.download_dir: Path | None = None
        self.executable: str | None = None
        self.last_settle_s: float = 0.0  # how long the last settle waited
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._context: BrowserContext | None = None
        self._pages: list[Page] = []
        self._opened: list[Page] = []  # pages this computer opened (attached: the only ones closed)
        self._front: Page | None = None
        self._last_map: PixelMap | None = None
        self._notes: list[str] = []  # things the model should hear about after an action
        self._choosers: list[FileChooser] = []  # file choosers opened since the last action
        self._request_filter: RequestFilter | None = None
        self._filter_subresources = False
        self._cdp: CDPSession | None = None
        self._sockets_routed = False
        self._blocked_documents: list[str] = []  # refused document URLs, not yet reported
        self._blocked_other = 0  # refused subresource requests, not yet reported
        self._pending: set[Request] = set()
        self._network_quiet_since = time.monotonic()
        self._downloads: list[Download] = []
        self._quiet_probe = QUIET_PROBE % int(LEAVING_S * 1000)
        self._capture_sessions: weakref.WeakKeyDictionary[Page, CDPSession] = (
            weakref.WeakKeyDictionary()
        )

    # ---------------------------------------------------------------- lifecycle

    @property
    def launched(self) -> bool:
        """Whether the browser is running."""
        return self._context is not None

    @property
    def attached(self) -> bool:
        """Whether this computer works in a browser it did not start (cdp_url)."""
        return self.cdp_url is not None

    def launch(self) -> None:
        """Start Playwright and get a browser context (no-op when already running): attach to
        cdp_url, open the user_data_dir profile, or launch a fresh browser."""
        if self.launched:
            return
        playwright = acquire_playwright()
        from playwright.sync_api import Error as PlaywrightError

        self._playwright = playwright
        try:
            if self.cdp_url is not None:
                context = self._attach_context(playwright, self.cdp_url)
            elif self.user_data_dir is not None:
                context = self._persistent_context(playwright, self.user_data_dir)
            else:
                context = self._fresh_context(playwright)
        except BaseException as exc:
            self.close()
            if isinstance(exc, PlaywrightError):
                what = (
                    f"attach to the browser at {self.cdp_url}"
                    if self.attached
                    else (f"launch the browser at {self.executable}")
                )
                raise ConfigurationError(f"Could not {what}: {_launch_problem(exc)}") from exc
            raise
        self._context = context
        self._prepare(context)
        if self._request_filter is not None:
            self._route_sockets()
        first = context.new_page()
        self._opened.append(first)
        self._track(first)
        if self.start_url:
            self.navigate(self.start_url)

    def _launch_options(self, playwright: Playwright) -> dict[str, Any]:
        self.executable = find_browser(
            self.browser_path, playwright_executable=_playwright_chromium(playwright)
        )
        return {
            "executable_path": self.executable,
            "headless": self.headless,
            "args": [*DEFAULT_LAUNCH_ARGS, *self.launch_args],
        }

    def _context_options(self) -> dict[str, Any]:
        return {
            "viewport": {"width": self.viewport[0], "height": self.viewport[1]},
            "device_scale_factor": self.device_scale_factor,
            "accept_downloads": True,
        }

    def _fresh_context(self, playwright: Playwright) -> BrowserContext:
        """A new browser and a new context (storage_state loaded when given)."""
        self._browser = playwright.chromium.launch(**self._launch_options(playwright))
        if self._request_filter is not None:
            self._install_filter()
        state = None if self.storage_state is None else str(self.storage_state)
        return self._browser.new_context(
            **self._context_options(),
            storage_state=state,
            # a service worker's fetches would not pass the filter of the page it serves
            service_workers="block" if self._request_filter is not None else "allow",
        )

    def _persistent_context(self, playwright: Playwright, folder: Path) -> BrowserContext:
        """A browser on the persistent profile in `folder` (created when missing)."""
        if self._request_filter is not None:
            # fail closed: a persistent context has no browser-wide handle for the filter
            raise ConfigurationError(
                "allowed_domains cannot be enforced on a persistent profile (user_data_dir): "
                "Playwright gives no browser-wide handle to filter its requests. Carry the "
                "login into a fresh browser with storage_state= instead, or drop "
                "allowed_domains."
            )
        folder.mkdir(parents=True, exist_ok=True)
        return playwright.chromium.launch_persistent_context(
            str(folder), **self._launch_options(playwright), **self._context_options()
        )

    def _attach_context(self, playwright: Playwright, url: str) -> BrowserContext:
        """The default context of the Chrome at `url` (its cookies, its tabs left alone)."""
        self._browser = playwright.chromium.connect_over_cdp(
            url, timeout=self.navigation_timeout * 1000
        )
        if self._request_filter is not None:
            self._install_filter()  # browser-wide: the user's other tabs are filtered too
        contexts = self._browser.contexts
        return contexts[0] if contexts else self._browser.new_context()

    def _prepare(self, context: BrowserContext) -> None:
        """Timeouts, the settle observer and the network watch on a context."""
        context.set_default_timeout(self.navigation_timeout * 1000)
        context.add_init_script(SETTLE_SCRIPT % int(self.settle_timeout * 1000))
        context.on("request", self._request_started)
        context.on("requestfinished", self._request_ended)
        context.on("requestfailed", self._request_ended)
        if not self.attached:  # attached: only popups of our own pages are ours
            context.on("page", self._track)

    def save_storage_state(self, path: str | Path) -> Path:
        """Save cookies and localStorage of the browser to `path` (JSON) for storage_state."""
        self.launch()
        assert self._context is not None
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        self._context.storage_state(path=str(target))
        return target

    def close(self) -> None:
        """Close what this computer opened and release Playwright; safe to call twice.

        Attached (cdp_url): only the tabs it opened are closed, then it disconnects; the
        user's browser, context and tabs stay as they are."""
        context, browser, playwright = self._context, self._browser, self._playwright
        opened = list(self._opened)
        self._context = self._browser = self._playwright = None
        self._cdp = None
        self._sockets_routed = False
        self._pages.clear()
        self._opened.clear()
        self._pending.clear()
        self._front = self._last_map = None
        if self.attached:
            for page in opened:
                with contextlib.suppress(Exception):
                    page.close()
        else:
            with contextlib.suppress(Exception):  # already gone: nothing to report to
                if context:
                    context.close()
        with contextlib.suppress(Exception):
            if browser:
                browser.close()  # attached: disconnects only
        if playwright:
            release_playwright(playwright)

    def __enter__(self) -> BrowserComputer:
        self.launch()
        return self

    # ---------------------------------------------------------------- request filter

    def restrict_requests(
        self, allows: RequestFilter | None, *, subresources: bool = False
    ) -> None:
        """Refuse, before they are sent, the documents (and with `subresources`, all
        requests) whose URL `allows` refuses; see the module docstring. Set it before the
        browser launches so that service workers are blocked too."""
        self._request_filter = allows
        self._filter_subresources = bool(subresources)
        if allows is not None and self._browser is not None:
            self._install_filter()
            self._route_sockets()

    def _install_filter(self) -> None:
        """Pause every request of the browser (all contexts, tabs and frames) for `_on_request`."""
        if self._cdp is not None or self._browser is None:
            return
        cdp = self._browser.new_browser_cdp_session()
        cdp.on("Fetch.requestPaused", self._on_request)
        cdp.send("Fetch.enable", {"patterns": [{"urlPattern": "*", "requestStage": "Request"}]})
        self._cdp = cdp

    def _on_request(self, event: dict[str, Any]) -> None:
        """Let a paused request go on, or fail it in the browser (it is never sent). Any doubt
        (a malformed event, a filter that raises) refuses it."""
        cdp, request_id = self._cdp, event.get("requestId")
        if cdp is None or request_id is None:
            return
        url, document = "?", True
        try:
            url = str(event["request"]["url"])
            document = event.get("resourceType") == "Document"
            allows = self._request_filter
            if allows is None or (not document and not self._filter_subresources) or allows(url):
                cdp.send("Fetch.continueRequest", {"requestId": request_id})
                return
        except Exception:  # fail closed: the request is refused below
            pass
        # "Aborted" drops a navigation quietly (the page stays); subresources fail as blocked
        reason = "Aborted" if document else "BlockedByClient"
        with contextlib.suppress(Exception):  # the target may be gone: nothing was sent anyway
            cdp.send("Fetch.failRequest", {"requestId": request_id, "errorReason": reason})
        if document:
            self._blocked_documents.append(url)
        else:
            self._blocked_other += 1

    def _route_sockets(self) -> None:
        """WebSockets do not pass through Fetch: Playwright routes them in the page instead."""
        if self._context is None or self._sockets_routed:
            return
        self._context.route_web_socket(lambda _url: True, self._on_web_socket)
        self._sockets_routed = True

    def _on_web_socket(self, socket: WebSocketRoute) -> None:
        """Connect a page's WebSocket to its server, unless subresources are filtered and the
        filter refuses its URL: then it is closed before any connection is made."""
        allows = self._request_filter
        try:
            refused = allows is not None and self._filter_subresources and not allows(socket.url)
        except Exception:
            refused = True
        if refused:
            self._blocked_other += 1
            with contextlib.suppress(Exception):
                socket.close(code=1008, reason="blocked: outside the allowed domains")
            return
        socket.connect_to_server()

    def _blocked_news(self, before: Page | None) -> list[str]:
        """Notes on the requests refused since the last action; a new tab whose page was
        refused is closed (it would only show a blank page)."""
        documents, others = self._blocked_documents, self._blocked_other
        self._blocked_documents, self._blocked_other = [], 0
        notes = [
            f"the browser refused to open {url}: it is outside the allowed domains, so "
            "nothing was sent"
            for url in dict.fromkeys(documents)
        ]
        if others:
            notes.append(f"{others} request(s) of the page to other sites were blocked")
        active = self._pages[-1] if self._pages else None
        if (
            documents
            and active is not None
            and active is not before
            and before in self._pages
            and active.url in _BLANK_URLS
        ):
            self._untrack(active)
            with contextlib.suppress(Exception):
                active.close()
            notes.append("the new tab it was for was closed")
        return notes

    # ---------------------------------------------------------------- pages

    def _track(self, page: Page) -> None:
        if page in self._pages:
            return
        self._pages.append(page)
        page.on("close", self._untrack)
        page.on("dialog", self._on_dialog)
        page.on("download", self._on_download)
        # a listener from the start keeps file choosers intercepted before any click, so an
        # upload button's chooser is never missed and never becomes a native dialog
        page.on("filechooser", self._on_file_chooser)
        if self.attached:
            page.on("popup", self._track_popup)

    def _on_file_chooser(self, chooser: FileChooser) -> None:
        self._choosers.append(chooser)  # answered by upload_file, else reported (_news)

    def _on_download(self, download: Download) -> None:
        self._downloads.append(download)  # saved after the action (_news)

    def _track_popup(self, page: Page) -> None:
        self._opened.append(page)
        self._track(page)

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
            page = self._context.new_page()
            self._opened.append(page)
            self._track(page)
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

    def focused_url(self) -> str | None:
        """The URL of the frame holding the keyboard focus (the deepest frame whose document
        has focus), else the page's; None when it cannot be told."""
        from playwright.sync_api import Error as PlaywrightError

        if not self._pages:
            return None
        page = self._pages[-1]
        best, depth = page.url, -1
        try:
            for frame in page.frames:
                if not frame.evaluate("document.hasFocus()"):
                    continue
                level, parent = 0, frame.parent_frame
                while parent is not None:
                    level, parent = level + 1, parent.parent_frame
                if level > depth:
                    best, depth = frame.url, level
        except PlaywrightError:
            return None
        return best

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

    # ---------------------------------------------------------------- settling

    def _request_started(self, request: Request) -> None:
        if request.resource_type in WATCHED_REQUESTS:
            self._pending.add(request)

    def _request_ended(self, request: Request) -> None:
        if request in self._pending:
            self._pending.discard(request)
            if not self._pending:
                self._network_quiet_since = time.monotonic()

    def _frame_quiet_s(self, frame: Frame) -> float:
        """Seconds `frame` has been quiet (0 while busy). A frame that cannot answer is busy:
        its document is being replaced (the bound ends a frame that never answers)."""
        from playwright.sync_api import Error as PlaywrightError

        try:
            return float(frame.evaluate(self._quiet_probe)) / 1000
        except PlaywrightError:
            return 0.0

    def _quiet_s(self, page: Page) -> float:
        """How long the page, its frames and its requests have all been quiet."""
        now = time.monotonic()
        # a request whose end event was missed (the page went away) stops counting
        self._pending = {r for r in self._pending if not _finished(r)}
        network = 0.0 if self._pending else now - self._network_quiet_since
        frames = min((self._frame_quiet_s(f) for f in page.frames), default=float("inf"))
        return min(network, frames)

    def settle(self) -> float:
        """Wait until the page is quiet for settle_quiet seconds (at most settle_timeout):
        no DOM change, running finite animation, pending short timer (a debounce) or page
        request, in any frame. Returns (and keeps in last_settle_s) the seconds waited."""
        from playwright.sync_api import Error as PlaywrightError

        started = time.monotonic()
        deadline = started + self.settle_timeout
        try:
            page = self.page
            page.wait_for_timeout(ACTION_PAUSE_S * 1000)
            left = deadline - time.monotonic()
            if left > 0:
                with contextlib.suppress(PlaywrightError):
                    page.wait_for_load_state("domcontentloaded", timeout=left * 1000)
            while True:
                page = self.page  # a new tab or a closed one changes the active page
                quiet = self._quiet_s(page)
                left = deadline - time.monotonic()
                if quiet >= self.settle_quiet or left <= 0:
                    break
                wait = min(max(self.settle_quiet - quiet, SETTLE_POLL_S), left)
                page.wait_for_timeout(wait * 1000)
        except PlaywrightError:
            pass  # the page closed under us: the next use falls back to another
        self.last_settle_s = time.monotonic() - started
        return self.last_settle_s

    def _settle(self) -> None:
        with self.settling():  # the step's "settle" phase, not framework overhead
            self.settle()

    def _act(self, what: str, action: Callable[[], str]) -> ActionOutcome:
        """Run an action, settle, and report; Playwright errors become ok=False outcomes."""
        from playwright.sync_api import Error as PlaywrightError

        before = self._pages[-1] if self._pages else None
        try:
            message = action()
            self._settle()
        except _NotHere as exc:
            return ActionOutcome(
                False, f"{exc}; nothing was done{self._news(before)}", self.current_url()
            )
        except PlaywrightError as exc:
            message = f"{what} failed: {_first_line(exc)}{self._news(before)}"
            return ActionOutcome(False, message, self.current_url())
        return ActionOutcome(True, message + self._news(before), self.current_url())

    def use_download_dir(self, folder: Path) -> None:
        """Save the coming downloads in `folder` (created on the first one)."""
        self.download_dir = Path(folder)

    def _save_downloads(self) -> None:
        """Each finished download saved into download_dir (within the size cap), as notes."""
        from playwright.sync_api import Error as PlaywrightError

        downloads, self._downloads = self._downloads, []
        for download in downloads:
            name = Path(download.suggested_filename or "download").name or "download"
            try:
                failure = download.failure()
                temp = None if failure else download.path()
            except PlaywrightError as exc:
                failure, temp = _first_line(exc), None
            if failure or temp is None:
                self._notes.append(f"the download of {name!r} failed: {failure}")
                continue
            size = Path(temp).stat().st_size
            if size > self.max_download_bytes:
                self._notes.append(
                    f"the download of {name!r} ({size} bytes) was not kept: it is larger "
                    f"than the {self.max_download_bytes}-byte limit"
                )
                continue
            if self.download_dir is None:
                self._notes.append(f"{name!r} was downloaded but not kept (no download folder)")
                continue
            self.download_dir.mkdir(parents=True, exist_ok=True)
            target = unique_path(self.download_dir / name)
            download.save_as(target)
            self._notes.append(f"downloaded {name!r} ({size} bytes), saved as {target}")

    def _news(self, before: Page | None) -> str:
        """Dialogs, downloads and tab switches since `before` was active, as "; ..." notes."""
        if self._downloads:
            self._save_downloads()
        notes, self._notes = self._notes, []
        if self._choosers:  # a plain click opened one; the chooser is left unanswered
            self._choosers.clear()
            notes.append("a file chooser opened: to upload, use upload_file on that control")
        notes += self._blocked_news(before)
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
        dsf = self._scale(self.page)
        return css_map(expected_shot_size(css, dsf), css, dsf)

    def _css_size(self, page: Page) -> Size:
        size = None if self.attached else page.viewport_size
        if size:
            return size["width"], size["height"]
        width, height = page.evaluate("[window.innerWidth, window.innerHeight]")
        return int(width), int(height)

    def _scale(self, page: Page) -> float:
        """The device scale factor: set by us, or read from an attached browser's page."""
        if not self.attached:
            return self.device_scale_factor
        return float(page.evaluate("window.devicePixelRatio"))

    def _capture_png(self, page: Page) -> bytes:
        """The viewport in device pixels as PNG, straight from Chromium over CDP
        (``Page.captureScreenshot``, fast lossless encoder); Playwright's screenshot where
        no CDP session can be had."""
        from playwright.sync_api import Error as PlaywrightError

        session = self._capture_sessions.get(page)
        if session is None:
            try:
                session = self._capture_sessions[page] = page.context.new_cdp_session(page)
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
            # emulated scale (ours): CDP captures CSS pixels, so scale up; an attached
            # browser's real device pixels are captured as they are
            "scale": scale * (1.0 if self.attached else self.device_scale_factor),
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
        dsf = self._scale(page)
        shot = Screenshot(
            png=png,
            url=page.url,
            title=title,
            extra={"css_size": css, "device_scale_factor": dsf, "tabs": self.tab_count},
        )
        self._last_map = css_map(shot.size, css, dsf)
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
        self,
        x: int,
        y: int,
        *,
        button: MouseButton = "left",
        clicks: int = 1,
        modifiers: Sequence[Modifier] = (),
    ) -> ActionOutcome:
        """Move to screenshot pixel (x, y), pause (hover effects apply), click holding
        `modifiers` (ctrl, shift, alt, meta)."""
        if button not in MOUSE_BUTTONS:
            return ActionOutcome(False, f"unknown mouse button {button!r}; use left/right/middle")
        if clicks not in (1, 2, 3):
            return ActionOutcome(False, f"clicks must be 1, 2 or 3, got {clicks}")
        unknown = [m for m in modifiers if m not in PLAYWRIGHT_MODIFIERS]
        if unknown:
            return ActionOutcome(False, f"unknown modifier keys {unknown}; use ctrl/shift/alt/meta")
        if rejected := self._outside((x, y)):
            return rejected
        css_x, css_y = self._map().to_grid(x, y)
        keys = [PLAYWRIGHT_MODIFIERS[m] for m in dict.fromkeys(modifiers)]

        def run() -> str:
            page = self.page
            page.mouse.move(css_x, css_y)
            with self.settling():  # the page reacting to the pointer, not our overhead
                page.wait_for_timeout(HOVER_PAUSE_S * 1000)
            pressed: list[str] = []
            try:
                for key in keys:
                    page.keyboard.down(key)
                    pressed.append(key)
                page.mouse.click(css_x, css_y, button=button, click_count=clicks)
            finally:
                for key in reversed(pressed):
                    page.keyboard.up(key)
            kind = {1: "clicked", 2: "double-clicked", 3: "triple-clicked"}[clicks]
            side = "" if button == "left" else f" ({button} button)"
            held = f" holding {'+'.join(dict.fromkeys(modifiers))}" if keys else ""
            return f"{kind} at ({x}, {y}){side}{held}"

        return self._act("click", run)

    def hover(self, x: int, y: int) -> ActionOutcome:
        """Move the mouse to screenshot pixel (x, y) without clicking."""
        if rejected := self._outside((x, y)):
            return rejected
        css_x, css_y = self._map().to_grid(x, y)

        def run() -> str:
            self.page.mouse.move(css_x, css_y, steps=4)
            return f"moved the mouse to ({x}, {y})"

        return self._act("hover", run)

    def _element_at(self, css_x: float, css_y: float) -> Any:
        """The element at a CSS point of the active page, inside iframes too (or None)."""
        frame: Any = self.page.main_frame
        x, y = css_x, css_y
        for _ in range(8):  # nested frames
            handle = frame.evaluate_handle("([x, y]) => document.elementFromPoint(x, y)", [x, y])
            element = handle.as_element()
            if element is None:
                return None
            inner = element.content_frame()
            if inner is None:
                return element
            box = element.bounding_box()
            if box is None:
                return element
            frame, x, y = inner, x - box["x"], y - box["y"]
        return None

    def select_option(self, x: int, y: int, option: str) -> ActionOutcome:
        """Choose `option` by its visible text in the <select> at screenshot pixel (x, y)
        (exact text first, then ignoring case and spaces, then the one option containing it)."""
        if rejected := self._outside((x, y)):
            return rejected
        css_x, css_y = self._map().to_grid(x, y)

        def run() -> str:
            element = self._element_at(css_x, css_y)
            select = None if element is None else element.evaluate_handle(_SELECT_AT).as_element()
            if select is None:
                raise _NotHere(f"there is no drop-down list (<select>) at ({x}, {y})")
            found = select.evaluate(_MATCH_OPTION, option)
            if isinstance(found, list):
                shown = ", ".join(repr(o) for o in found[:30])
                raise _NotHere(f"the list at ({x}, {y}) has no option {option!r}; it has {shown}")
            select.select_option(index=int(found["index"]))
            return f"selected {found['text']!r} in the list at ({x}, {y})"

        return self._act("select_option", run)

    def upload_file(self, x: int, y: int, path: str) -> ActionOutcome:
        """Click the upload control at (x, y) and give it `path`, a file in upload_dirs."""
        try:
            real = allowed_upload(path, self.upload_dirs)
        except UploadRefused as exc:
            return ActionOutcome(False, str(exc), self.current_url())
        if rejected := self._outside((x, y)):
            return rejected
        css_x, css_y = self._map().to_grid(x, y)

        def run() -> str:
            page = self.page
            element = self._element_at(css_x, css_y)
            is_input = element is not None and element.evaluate(
                "e => e instanceof HTMLInputElement && e.type === 'file'"
            )
            if is_input:
                element.set_input_files(str(real))
            else:
                self._choosers.clear()
                page.mouse.click(css_x, css_y)
                deadline = time.monotonic() + self.file_chooser_timeout_s
                while not self._choosers and time.monotonic() < deadline:
                    page.wait_for_timeout(20)  # lets Playwright deliver the chooser event
                if not self._choosers:
                    raise _NotHere(
                        f"clicking ({x}, {y}) opened no file chooser: target the upload button"
                    )
                self._choosers.pop().set_files(str(real))
            return f"uploaded {real.name} ({real.stat().st_size} bytes) at ({x}, {y})"

        return self._act("upload_file", run)

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
        if refused := refused_scroll(direction, amount, x, y):
            return refused
        steps = {"up": (0, -1), "down": (0, 1), "left": (-1, 0), "right": (1, 0)}
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
        allows = self._request_filter
        if allows is not None and not allows(target):
            message = f"blocked: {target} is outside the allowed domains; nothing was sent"
            return ActionOutcome(False, message, self.current_url())
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


class _NotHere(Exception):
    """The action's target is not what it needs (no <select>, no such option...)."""


# From the element at the point to its <select>: itself, its <select> ancestor, or the one a
# <label> names.
_SELECT_AT = """e => {
  const s = e.closest('select');
  if (s) return s;
  const label = e.closest('label');
  return label && label.control instanceof HTMLSelectElement ? label.control : null;
}"""
# The option whose text is `want` (exactly, then ignoring case and spaces, then the only one
# containing it): {index, text}; else the list of option texts.
_MATCH_OPTION = r"""(s, want) => {
  const norm = t => t.replace(/\s+/g, ' ').trim().toLowerCase();
  const opts = Array.from(s.options).filter(o => !o.disabled);
  const text = o => (o.label || o.textContent || '').trim();
  let hit = opts.find(o => text(o) === want.trim())
    || opts.find(o => norm(text(o)) === norm(want));
  if (!hit) {
    const some = opts.filter(o => norm(text(o)).includes(norm(want)));
    if (some.length === 1) hit = some[0];
  }
  return hit ? {index: hit.index, text: text(hit)} : opts.map(text);
}"""


def _finished(request: Request) -> bool:
    """Whether a request got its answer (a response with its timing closed) or failed."""
    try:
        return request.failure is not None or request.timing.get("responseEnd", -1) > 0
    except Exception:
        return True


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

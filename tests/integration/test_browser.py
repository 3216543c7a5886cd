"""BrowserComputer against the example web app served from 127.0.0.1.

Browser tests skip (with the reason) when Playwright or a Chromium executable is missing; the
pure helpers (keys, URLs, browser lookup) are tested everywhere; the pixel map is
tests/unit/test_coordinates.py's.
"""

from __future__ import annotations

import asyncio
import math
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from internvl_agent.computers import chromium
from internvl_agent.computers.browser import BrowserComputer
from internvl_agent.computers.keys import to_playwright_keys
from internvl_agent.errors import ConfigurationError
from internvl_agent.urls import normalize_url
from tests.support.browser import needs_browser, skip_without_browser

SCALES = (1.0, 1.25, 1.5, 2.0, 3.0)
VIEWPORTS = ((1280, 800), (1037, 679))
CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", params=SCALES, ids=lambda s: f"dsf{s:g}")
def scaled(request: pytest.FixtureRequest) -> Iterator[BrowserComputer]:
    """One browser per device scale factor."""
    skip_without_browser()
    with BrowserComputer(viewport=VIEWPORTS[0], device_scale_factor=request.param) as computer:
        yield computer


@pytest.fixture(scope="module")
def shared() -> Iterator[BrowserComputer]:
    """A HiDPI browser (dsf 1.5) for the action tests."""
    skip_without_browser()
    with BrowserComputer(viewport=(1000, 700), device_scale_factor=1.5) as computer:
        yield computer


@pytest.fixture
def computer(shared: BrowserComputer) -> BrowserComputer:
    """The shared browser reduced to one tab."""
    for page in shared.page.context.pages[:-1]:
        page.close()
    assert shared.tab_count == 1
    return shared


def open_page(computer: BrowserComputer, url: str) -> None:
    outcome = computer.navigate(url)
    assert outcome.ok, outcome.message
    computer.screenshot()


def pixel_of(computer: BrowserComputer, selector: str, fx: float = 0.5) -> tuple[int, int]:
    """Screenshot pixel at fraction `fx` across (and halfway down) an element's box."""
    box = computer.page.locator(selector).bounding_box()
    assert box is not None, selector
    dsf = computer.device_scale_factor
    return (
        math.floor((box["x"] + box["width"] * fx) * dsf),
        math.floor((box["y"] + box["height"] / 2) * dsf),
    )


def click_on(computer: BrowserComputer, selector: str) -> None:
    computer.screenshot()
    outcome = computer.click(*pixel_of(computer, selector))
    assert outcome.ok, outcome.message


# --------------------------------------------------------------------------- pure helpers


@pytest.mark.parametrize(
    ("ours", "playwright"),
    [
        ("ctrl+a", "Control+a"),
        ("shift+Tab", "Shift+Tab"),
        ("Enter", "Enter"),
        ("alt+F4", "Alt+F4"),
        ("cmd+c", "Meta+c"),
        ("super", "Meta"),
        ("meta+shift+z", "Shift+Meta+z"),
        ("esc", "Escape"),
        ("escape", "Escape"),
        ("pagedown", "PageDown"),
        ("Page_Up", "PageUp"),
        ("backspace", "Backspace"),
        ("left", "ArrowLeft"),
        ("ArrowDown", "ArrowDown"),
        ("ctrl++", "Control++"),
        ("space", "Space"),
    ],
)
def test_key_combos_map_to_playwright_names(ours: str, playwright: str) -> None:
    assert to_playwright_keys(ours) == playwright


def test_unknown_key_lists_accepted_names() -> None:
    with pytest.raises(ValueError, match=r"unknown key 'hyper'.*accepted: .*pagedown"):
        to_playwright_keys("ctrl+hyper")


def test_normalize_url() -> None:
    assert normalize_url("example.com/a") == "https://example.com/a"
    assert normalize_url("localhost:8000") == "http://localhost:8000"
    assert normalize_url("127.0.0.1:9/x") == "http://127.0.0.1:9/x"
    assert normalize_url("about:blank") == "about:blank"
    assert normalize_url("http://example.com") == "http://example.com"


def test_find_browser_explicit_path_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="apt-get install chromium"):
        chromium.find_browser(str(tmp_path / "nope"))


def test_find_browser_env_var(tmp_path: Path) -> None:
    fake = tmp_path / "chrome"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert chromium.find_browser(env={chromium.BROWSER_ENV: str(fake)}) == str(fake)
    with pytest.raises(ConfigurationError, match=chromium.BROWSER_ENV):
        chromium.find_browser(env={chromium.BROWSER_ENV: str(tmp_path / "missing")})


def test_find_browser_prefers_playwright_then_system(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "chrome"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setattr(chromium, "system_browsers", lambda: ["/usr/bin/somewhere"])
    assert chromium.find_browser(playwright_executable=str(fake), env={}) == str(fake)
    missing = str(tmp_path / "not-downloaded")
    assert chromium.find_browser(playwright_executable=missing, env={}) == "/usr/bin/somewhere"


def test_no_browser_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chromium, "system_browsers", lambda: [])
    with pytest.raises(ConfigurationError) as caught:
        chromium.find_browser(env={})
    message = str(caught.value)
    assert "apt-get install chromium" in message
    assert "playwright install chromium" in message
    assert "browser_path" in message


def test_constructing_is_cheap_and_close_is_idempotent() -> None:
    computer = BrowserComputer("http://127.0.0.1:9/", browser_path="/definitely/missing")
    assert not computer.launched
    assert computer.current_url() is None
    computer.close()
    computer.close()


def test_bad_options_are_rejected() -> None:
    with pytest.raises(ConfigurationError):
        BrowserComputer(viewport=(0, 600))
    with pytest.raises(ConfigurationError):
        BrowserComputer(device_scale_factor=0)


@needs_browser
def test_missing_browser_path_fails_at_launch() -> None:
    with pytest.raises(ConfigurationError, match="browser_path"):
        BrowserComputer(browser_path="/definitely/missing").launch()


@needs_browser
def test_an_executable_that_is_not_a_browser_fails_to_launch(tmp_path: Path) -> None:
    fake = tmp_path / "not-a-browser"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    computer = BrowserComputer(browser_path=str(fake))
    with pytest.raises(ConfigurationError, match=r"launch the browser at .*not-a-browser"):
        computer.launch()
    assert not computer.launched


# --------------------------------------------------------------------------- targets


def _inner_range(start: float, size: float, dsf: float) -> tuple[int, int]:
    """First and last screenshot pixels whose centres fall in CSS [start, start + size)."""
    return math.ceil(start * dsf - 0.5), math.ceil((start + size) * dsf - 0.5) - 1


@pytest.mark.parametrize("viewport", VIEWPORTS, ids=lambda v: f"{v[0]}x{v[1]}")
def test_clicks_hit_small_targets_exactly(
    scaled: BrowserComputer, site: str, viewport: tuple[int, int]
) -> None:
    page = scaled.page
    page.set_viewport_size({"width": viewport[0], "height": viewport[1]})
    assert scaled.navigate(site + "targets.html").ok
    shot = scaled.screenshot()
    dsf = scaled.device_scale_factor
    assert shot.size == tuple(math.floor(side * dsf + 0.5) for side in viewport)

    plan: list[tuple[tuple[int, int], str]] = []  # (screenshot pixel, expected id)
    boxes = {name: page.locator(f"#{name}").bounding_box() for name in (*CORNERS, "centre")}
    centre = boxes["centre"]
    assert centre is not None
    centre_px = (
        math.floor((centre["x"] + centre["width"] / 2) * dsf),
        math.floor((centre["y"] + centre["height"] / 2) * dsf),
    )
    plan.append((centre_px, "centre"))
    for name in CORNERS:
        box = boxes[name]
        assert box is not None
        x0, x1 = _inner_range(box["x"], box["width"], dsf)
        y0, y1 = _inner_range(box["y"], box["height"], dsf)
        plan += [((x0, y0), name), ((x1, y1), name)]
        # the nearest pixels just inside the viewport but outside the target
        out_x = x1 + 1 if name.endswith("left") else x0 - 1
        out_y = y1 + 1 if name.startswith("top") else y0 - 1
        plan += [((out_x, y0), "background"), ((x0, out_y), "background")]

    expected: list[str] = []
    for (x, y), name in plan:
        outcome = scaled.click(x, y)
        assert outcome.ok, outcome.message
        expected.append(name)
        hits = page.evaluate("window.hits")
        assert hits == expected, f"pixel ({x}, {y}) at dsf {dsf} should hit {name}, got {hits[-1]}"
    for click in page.evaluate("window.clicks"):
        box = boxes.get(click["id"])
        if box is not None:
            assert box["x"] <= click["x"] < box["x"] + box["width"] + 0.5, click
            assert box["y"] <= click["y"] < box["y"] + box["height"] + 0.5, click


def test_screenshot_metadata_and_outside_points(scaled: BrowserComputer, site: str) -> None:
    scaled.page.set_viewport_size({"width": VIEWPORTS[0][0], "height": VIEWPORTS[0][1]})
    open_page(scaled, site + "targets.html")
    shot = scaled.screenshot()
    width, height = shot.size
    assert shot.image.format == "PNG"
    assert shot.url == site + "targets.html"
    assert shot.title == "Click targets"
    for x, y in ((-1, 0), (0, -1), (width, 0), (0, height), (width + 50, height + 50)):
        outcome = scaled.click(x, y)
        assert not outcome.ok
        assert "outside the screenshot" in outcome.message
        assert f"{width}x{height}" in outcome.message
    assert not scaled.drag(0, 0, width, 10).ok
    assert not scaled.scroll("down", 1, x=0, y=height).ok
    assert scaled.page.evaluate("window.presses") == []


def test_capture_is_playwrights_viewport_screenshot_pixel_for_pixel(
    scaled: BrowserComputer, site: str
) -> None:
    """The CDP capture (fast lossless PNG) has the region, size and pixels of Playwright's
    page.screenshot(), at every scale factor and scrolled; its PNG is kept as is."""
    import io

    from PIL import Image

    scaled.page.set_viewport_size({"width": VIEWPORTS[0][0], "height": VIEWPORTS[0][1]})
    open_page(scaled, site + "shop.html")
    for scrolled in (False, True):
        if scrolled:
            scaled.page.evaluate("window.scrollTo(0, 250)")
        shot = scaled.screenshot()
        theirs = Image.open(io.BytesIO(scaled.page.screenshot(type="png", caret="initial")))
        assert shot.size == theirs.size
        assert shot.image.convert("RGB").tobytes() == theirs.convert("RGB").tobytes()
        assert shot.png_bytes() is shot.png


# --------------------------------------------------------------------------- actions


def test_right_and_double_clicks(computer: BrowserComputer, site: str) -> None:
    open_page(computer, site + "targets.html")
    x, y = pixel_of(computer, "#centre")
    assert computer.click(x, y, button="right").ok
    outcome = computer.click(x, y, clicks=2)
    assert outcome.message == f"double-clicked at ({x}, {y})"
    presses = computer.page.evaluate("window.presses")
    assert [p["button"] for p in presses] == [2, 0, 0]
    assert computer.page.evaluate("window.clicks.map(c => c.detail)") == [1, 2]
    assert not computer.click(x, y, clicks=4).ok


def test_login_form_by_clicks_typing_and_keys(computer: BrowserComputer, site: str) -> None:
    open_page(computer, site + "index.html")
    page = computer.page
    click_on(computer, "#username")
    assert computer.type_text("alice").ok
    assert computer.press_key("ctrl+a").ok
    assert computer.press_key("backspace").ok
    assert page.input_value("#username") == ""
    computer.type_text("alice")
    assert computer.press_key("Tab").ok
    assert page.evaluate("document.activeElement.id") == "password"
    assert computer.press_key("shift+Tab").ok
    assert page.evaluate("document.activeElement.id") == "username"
    computer.press_key("tab")
    computer.type_text("secret")
    outcome = computer.press_key("Enter")
    assert outcome.ok and outcome.message == "pressed Enter"
    assert page.text_content("#status") == "Welcome, alice"


def test_unknown_key_is_an_outcome_not_an_error(computer: BrowserComputer, site: str) -> None:
    open_page(computer, site + "index.html")
    outcome = computer.press_key("ctrl+banana")
    assert not outcome.ok
    assert "banana" in outcome.message and "pagedown" in outcome.message


def test_type_text_unicode(computer: BrowserComputer, site: str) -> None:
    open_page(computer, site + "search.html")
    click_on(computer, "#query")
    text = "héllo wörld — 你好 ✓"
    outcome = computer.type_text(text)
    assert outcome.ok and "nothing had focus" not in outcome.message
    assert computer.page.input_value("#query") == text


def test_type_text_without_focus_says_so(computer: BrowserComputer, site: str) -> None:
    open_page(computer, site + "targets.html")
    outcome = computer.type_text("x")
    assert outcome.ok and "nothing had focus" in outcome.message


def test_search_submits_and_go_back(computer: BrowserComputer, site: str) -> None:
    open_page(computer, site + "search.html")
    click_on(computer, "#query")
    computer.type_text("lamp")
    computer.press_key("enter")
    assert computer.current_url() == site + "search.html?q=lamp"
    assert computer.page.text_content("#status") == '3 results for "lamp"'
    outcome = computer.go_back()
    assert outcome.ok, outcome.message
    assert computer.current_url() == site + "search.html"
    assert "Acme Store – Search" in outcome.message


def test_go_back_without_history(computer: BrowserComputer, site: str) -> None:
    computer.page.context.new_page()  # a fresh tab has no history
    assert computer.tab_count == 2
    outcome = computer.go_back()
    assert not outcome.ok
    assert "no previous page" in outcome.message


def test_scroll_changes_scroll_position(computer: BrowserComputer, site: str) -> None:
    open_page(computer, site + "shop.html")
    page = computer.page
    assert page.evaluate("window.scrollY") == 0
    outcome = computer.scroll("down", 3)
    assert outcome.ok and outcome.message == "scrolled down 3 at the centre"
    page.wait_for_function("window.scrollY > 0", timeout=2000)
    assert page.evaluate("window.scrollY") == pytest.approx(300, abs=1)
    width, height = computer.screenshot().size
    x, y = width // 3, height // 2
    assert computer.scroll("up", 5, x=x, y=y).message == f"scrolled up 5 at ({x}, {y})"
    page.wait_for_function("window.scrollY === 0", timeout=2000)
    assert not computer.scroll("down", 0).ok
    assert not computer.scroll("down", 1, x=x).ok


def test_drag_moves_the_slider(computer: BrowserComputer, site: str) -> None:
    open_page(computer, site + "shop.html")
    page = computer.page
    assert page.input_value("#max-price") == "500"
    start = pixel_of(computer, "#max-price", fx=0.98)
    end = pixel_of(computer, "#max-price", fx=0.2)
    outcome = computer.drag(*start, *end)
    assert outcome.ok, outcome.message
    value = int(page.input_value("#max-price"))
    assert 60 <= value <= 140
    assert page.text_content("#status") == (
        f"Showing {page.locator('.product:not([hidden])').count()} items up to ${value}."
    )


def test_add_to_cart(computer: BrowserComputer, site: str) -> None:
    open_page(computer, site + "shop.html")
    click_on(computer, "#add-2")
    assert computer.scroll("down", 3).ok  # the seventh product is below the fold
    click_on(computer, "#add-7")
    page = computer.page
    assert page.text_content("#cart-count") == "Cart: 2 items"
    assert page.text_content("#status") == "Added Stoneware mug to your cart (2 items)."
    assert page.text_content("#add-2") == "Added ✓"


def test_navigate_unreachable_is_an_outcome(computer: BrowserComputer) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/nothing"
    outcome = computer.navigate(f"127.0.0.1:{port}/nothing")
    assert not outcome.ok
    assert url in outcome.message
    assert "ERR_CONNECTION_REFUSED" in outcome.message
    assert "Call log" not in outcome.message


def test_navigate_reports_http_errors_and_titles(computer: BrowserComputer, site: str) -> None:
    missing = computer.navigate(site + "missing.html")
    assert not missing.ok and "HTTP 404" in missing.message
    found = computer.navigate(site + "index.html")
    assert found.ok
    assert found.message == f"navigated to {site}index.html (Acme Store – Sign in)"
    assert found.url == site + "index.html"


def test_new_tab_is_followed_and_closing_it_falls_back(
    computer: BrowserComputer, site: str
) -> None:
    open_page(computer, site + "index.html")
    computer.screenshot()
    outcome = computer.click(*pixel_of(computer, "#help-link"))
    assert outcome.message.endswith(f"a new tab opened and is now active: {site}help.html")
    assert computer.tab_count == 2
    assert computer.current_url() == site + "help.html"
    shot = computer.screenshot()
    assert shot.title == "Acme Store – Help" and shot.extra["tabs"] == 2
    computer.screenshot()
    outcome = computer.click(*pixel_of(computer, "#close-tab"))  # window.close() in the page
    assert outcome.message.endswith(f"the tab closed; back to {site}index.html")
    assert computer.tab_count == 1
    assert computer.current_url() == site + "index.html"
    assert computer.screenshot().title == "Acme Store – Sign in"


def test_dialogs_are_dismissed_and_reported(computer: BrowserComputer) -> None:
    html = (
        "<title>d</title><button id=b style='width:200px;height:80px' "
        "onclick=\"document.title = confirm('Delete everything?') ? 'yes' : 'no'\">go</button>"
    )
    open_page(computer, "data:text/html," + html)
    outcome = computer.click(*pixel_of(computer, "#b"))
    assert outcome.ok
    assert "a confirm dialog said 'Delete everything?' (dismissed)" in outcome.message
    assert computer.page.title() == "no"


def test_sync_api_inside_an_event_loop_is_a_configuration_error() -> None:
    async def launch_in_loop() -> None:
        BrowserComputer().launch()

    caught: list[BaseException] = []

    def run() -> None:  # a fresh thread: no Playwright driver yet, as in an async app
        try:
            asyncio.run(launch_in_loop())
        except BaseException as exc:
            caught.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert len(caught) == 1 and isinstance(caught[0], ConfigurationError), caught
    assert "worker thread" in str(caught[0])


def test_page_state(computer: BrowserComputer, site: str) -> None:
    open_page(computer, site + "index.html")
    state = computer.page_state()
    assert state == {
        "url": site + "index.html",
        "title": "Acme Store – Sign in",
        "tabs": 1,
        "scroll": (0, 0),
    }


@needs_browser
def test_start_url_and_context_manager(site: str) -> None:
    computer = BrowserComputer(site + "index.html", viewport=(640, 480))
    assert not computer.launched
    with computer:
        assert computer.launched
        assert computer.current_url() == site + "index.html"
        assert computer.screenshot().size == (640, 480)
    assert not computer.launched
    assert computer.current_url() is None
    computer.close()


def test_search_submits_on_a_slow_page(computer: BrowserComputer, site: str) -> None:
    """The race behind the flaky test above, made certain: with the renderer 20x slower, the
    form's navigation starts after the old fixed pause; the settle still waits for it."""
    open_page(computer, site + "search.html")
    cdp = computer.page.context.new_cdp_session(computer.page)
    cdp.send("Emulation.setCPUThrottlingRate", {"rate": 20})
    try:
        click_on(computer, "#query")
        computer.type_text("lamp")
        assert computer.press_key("enter").ok
        assert computer.current_url() == site + "search.html?q=lamp"
        assert computer.page.text_content("#status") == '3 results for "lamp"'
    finally:
        cdp.send("Emulation.setCPUThrottlingRate", {"rate": 1})
        cdp.detach()

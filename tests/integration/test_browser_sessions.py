"""The user's browser (issue 10, part 3): attaching over CDP, a persistent profile, saved
storage state. The Chromium attached to is started here, on 127.0.0.1 only."""

from __future__ import annotations

import json
import math
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from internvl_agent.computers.browser import BrowserComputer
from internvl_agent.computers.chromium import find_browser
from internvl_agent.errors import ConfigurationError
from tests.support.browser import skip_without_browser


def _tabs(port: int) -> list[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as reply:
        return [t["url"] for t in json.load(reply) if t.get("type") == "page"]


@pytest.fixture
def user_chrome(tmp_path: Path, site: str) -> Iterator[tuple[str, int, subprocess.Popen[bytes]]]:
    """A Chromium 'the user started' (dsf 2, a tab of theirs open), with a CDP port."""
    skip_without_browser()
    profile = tmp_path / "profile"
    process = subprocess.Popen(
        [
            find_browser(),
            "--headless=new",
            "--no-sandbox",
            "--no-first-run",
            "--disable-gpu",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "--force-device-scale-factor=2",
            "--window-size=900,700",
            site + "index.html",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while not (port_file.exists() and port_file.read_text().strip()):
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            pytest.fail("the Chromium under test did not open its DevTools port")
        time.sleep(0.1)
    port = int(port_file.read_text().split()[0])
    try:
        yield f"http://127.0.0.1:{port}", port, process
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_attach_over_cdp_reads_the_scale_and_leaves_the_users_tabs(
    user_chrome: tuple[str, int, subprocess.Popen[bytes]], site: str
) -> None:
    url, port, process = user_chrome
    before = _tabs(port)
    assert before == [site + "index.html"]
    computer = BrowserComputer(cdp_url=url)  # device_scale_factor left at its default (1)
    with computer:
        assert computer.navigate(site + "widgets.html").ok
        shot = computer.screenshot()
        page = computer.page
        dpr, width, height = page.evaluate(
            "[window.devicePixelRatio, window.innerWidth, window.innerHeight]"
        )
        assert dpr == 2
        assert shot.size == (width * 2, height * 2)
        assert shot.extra["device_scale_factor"] == 2 and shot.extra["css_size"] == (width, height)
        box = page.locator("#list li:nth-child(4)").bounding_box()
        assert box is not None
        point = (math.floor((box["x"] + 10) * 2), math.floor((box["y"] + box["height"] / 2) * 2))
        assert computer.click(*point).ok  # exact: the item under the point is selected
        assert page.locator("#selected").inner_text() == "Delta"
        assert sorted(_tabs(port)) == sorted([site + "index.html", site + "widgets.html"])
    assert _tabs(port) == before  # only our tab closed
    assert process.poll() is None  # the user's browser still runs


def test_storage_state_round_trip(tmp_path: Path, site: str) -> None:
    skip_without_browser()
    state = tmp_path / "state" / "login.json"
    with BrowserComputer() as first:
        assert first.navigate(site + "index.html").ok
        first.page.evaluate("document.cookie = 'session=abc123; path=/'")
        first.page.evaluate("localStorage.setItem('user', 'ada')")
        assert first.save_storage_state(state) == state
    saved = json.loads(state.read_text())
    assert [c["name"] for c in saved["cookies"]] == ["session"]
    with BrowserComputer(storage_state=state) as second:
        assert second.navigate(site + "index.html").ok
        assert second.page.evaluate("document.cookie") == "session=abc123"
        assert second.page.evaluate("localStorage.getItem('user')") == "ada"
    with BrowserComputer() as fresh:  # without it: logged out
        assert fresh.navigate(site + "index.html").ok
        assert fresh.page.evaluate("document.cookie") == ""


def test_persistent_profile_keeps_its_data(tmp_path: Path, site: str) -> None:
    skip_without_browser()
    profile = tmp_path / "profile"
    with BrowserComputer(user_data_dir=profile, device_scale_factor=1.5) as first:
        assert first.navigate(site + "index.html").ok
        first.page.evaluate("localStorage.setItem('theme', 'dark')")
        assert first.screenshot().size == (1920, 1200)  # the viewport and scale still apply
    assert profile.is_dir()
    with BrowserComputer(user_data_dir=profile) as second:
        assert second.navigate(site + "index.html").ok
        assert second.page.evaluate("localStorage.getItem('theme')") == "dark"


def test_session_options_that_do_not_combine(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cdp_url or user_data_dir"):
        BrowserComputer(cdp_url="http://127.0.0.1:9", user_data_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="does not exist"):
        BrowserComputer(storage_state=tmp_path / "missing.json")
    (tmp_path / "s.json").write_text("{}")
    with pytest.raises(ConfigurationError, match="fresh browser"):
        BrowserComputer(storage_state=tmp_path / "s.json", user_data_dir=tmp_path / "p")


def test_attach_to_nothing_is_a_clear_error() -> None:
    skip_without_browser()
    computer = BrowserComputer(cdp_url="http://127.0.0.1:9", navigation_timeout=5)
    with pytest.raises(ConfigurationError, match=r"attach to the browser at http://127\.0\.0\.1:9"):
        computer.launch()

"""Every widget reachable (issue 10, part 2) and settled screenshots (part 1), on real pages:
examples/webapp/widgets.html in Chromium at device scale factors 1 and 2."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from internvl_agent.computers.browser import BrowserComputer
from tests.support.browser import WEBAPP, skip_without_browser


@pytest.fixture(scope="module", params=[1.0, 2.0], ids=["dsf1", "dsf2"])
def browser(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrowserComputer]:
    skip_without_browser()
    uploads = tmp_path_factory.mktemp("uploads")
    (uploads / "cv.txt").write_text("my cv")
    with BrowserComputer(
        viewport=(1000, 900), device_scale_factor=request.param, upload_dirs=[uploads]
    ) as computer:
        yield computer


@pytest.fixture
def widgets(browser: BrowserComputer, site: str) -> BrowserComputer:
    assert browser.navigate(site + "widgets.html").ok
    browser.screenshot()
    return browser


def at(computer: BrowserComputer, selector: str) -> tuple[int, int]:
    """The screenshot pixel at the centre of `selector`."""
    box = computer.page.locator(selector).first.bounding_box()
    assert box is not None, selector
    dsf = computer.device_scale_factor
    return (
        math.floor((box["x"] + box["width"] / 2) * dsf),
        math.floor((box["y"] + box["height"] / 2) * dsf),
    )


def text(computer: BrowserComputer, selector: str) -> str:
    return computer.page.locator(selector).inner_text()


def test_select_option_by_visible_text(widgets: BrowserComputer) -> None:
    outcome = widgets.select_option(*at(widgets, "#colour"), "dark green")
    assert outcome.ok, outcome.message
    assert "'Dark green'" in outcome.message
    assert text(widgets, "#colour-shown") == "Dark green"  # the change event fired
    # the label targets its select too
    assert widgets.select_option(*at(widgets, "label[for=colour]"), "Red").ok
    assert text(widgets, "#colour-shown") == "Red"


def test_select_option_refusals_name_the_options(widgets: BrowserComputer) -> None:
    missing = widgets.select_option(*at(widgets, "#colour"), "Purple")
    assert not missing.ok and "'Red'" in missing.message and "'Dark green'" in missing.message
    assert "Blue" not in missing.message  # disabled options are not offered
    elsewhere = widgets.select_option(*at(widgets, "h1"), "Red")
    assert not elsewhere.ok and "no drop-down list" in elsewhere.message


def test_hover_opens_a_three_level_menu(widgets: BrowserComputer) -> None:
    assert not widgets.page.locator("#m-export").is_visible()
    for item, opens in (("#m-file", "#m-export"), ("#m-export", "#m-pdf")):
        widgets.screenshot()
        outcome = widgets.hover(*at(widgets, item))
        assert outcome.ok, outcome.message
        assert widgets.page.locator(opens).is_visible()
    widgets.screenshot()
    assert widgets.click(*at(widgets, "#m-pdf")).ok
    assert text(widgets, "#menu-chose") == "As PDF"


def test_click_with_modifiers_selects_several(widgets: BrowserComputer) -> None:
    assert widgets.click(*at(widgets, "#list li:nth-child(1)")).ok
    assert widgets.click(*at(widgets, "#list li:nth-child(3)"), modifiers=["ctrl"]).ok
    assert text(widgets, "#selected") == "Alpha,Gamma"
    outcome = widgets.click(*at(widgets, "#list li:nth-child(5)"), modifiers=["shift"])
    assert outcome.ok and "holding shift" in outcome.message
    assert text(widgets, "#selected") == "Gamma,Delta,Epsilon"
    # the keys were released: a plain click selects one item again
    assert widgets.click(*at(widgets, "#list li:nth-child(2)")).ok
    assert text(widgets, "#selected") == "Beta"


def test_first_click_lands_on_an_icon_swapped_on_hover(widgets: BrowserComputer) -> None:
    assert widgets.click(*at(widgets, "#swap")).ok
    assert text(widgets, "#swap-clicks") == "1"


def test_upload_into_a_file_input_and_through_a_button(widgets: BrowserComputer) -> None:
    outcome = widgets.upload_file(*at(widgets, "#file"), "cv.txt")
    assert outcome.ok, outcome.message
    assert text(widgets, "#uploaded") == "cv.txt"
    widgets.page.reload()
    widgets.screenshot()
    assert widgets.upload_file(*at(widgets, "#pick"), "cv.txt").ok  # opens a file chooser
    assert text(widgets, "#uploaded") == "cv.txt"


def test_a_plain_click_that_opens_a_file_chooser_says_so(widgets: BrowserComputer) -> None:
    outcome = widgets.click(*at(widgets, "#pick"))
    assert outcome.ok and "a file chooser opened" in outcome.message, outcome.message
    later = widgets.click(*at(widgets, "h1"))  # reported once
    assert later.ok and "file chooser" not in later.message


def test_upload_refuses_files_outside_the_allowed_folders(
    widgets: BrowserComputer, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("no")
    folder = widgets.upload_dirs[0]
    link = folder / "link.txt"
    if not link.exists():
        os.symlink(secret, link)
    for path in (str(secret), "../" + secret.name, "link.txt", "missing.txt"):
        outcome = widgets.upload_file(*at(widgets, "#file"), path)
        assert not outcome.ok and "nothing was uploaded" in outcome.message, path
    assert text(widgets, "#uploaded") == "nothing"
    plain = BrowserComputer()
    refused = plain.upload_file(1, 1, "cv.txt")
    assert not refused.ok and "--upload-dir" in refused.message
    plain.close()


def test_downloads_are_saved_and_reported(widgets: BrowserComputer, tmp_path: Path) -> None:
    widgets.use_download_dir(tmp_path / "downloads")
    outcome = widgets.click(*at(widgets, "#download"))
    size = (WEBAPP / "report.csv").stat().st_size
    assert outcome.ok and f"downloaded 'report.csv' ({size} bytes)" in outcome.message
    saved = tmp_path / "downloads" / "report.csv"
    assert saved.read_text().startswith("city,visits")
    widgets.max_download_bytes = 10
    try:
        capped = widgets.click(*at(widgets, "#download"))
    finally:
        widgets.max_download_bytes = 100 * 1024 * 1024
    assert "larger than the 10-byte limit" in capped.message
    assert sorted(p.name for p in (tmp_path / "downloads").iterdir()) == ["report.csv"]


def test_the_screenshot_after_typing_shows_the_debounced_suggestions(
    widgets: BrowserComputer,
) -> None:
    assert widgets.click(*at(widgets, "#q")).ok
    outcome = widgets.type_text("Ber")
    assert outcome.ok
    # no extra wait: the settle waited for the 300 ms debounce and the list it drew
    assert widgets.page.locator("#suggest li").all_inner_texts() == ["Berlin", "Bern", "Bergen"]
    assert widgets.last_settle_s >= 0.3

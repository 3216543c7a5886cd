"""Hostile pages in real Chromium: with allowed_domains, no request for a page, frame, form
submission, popup or redirect outside them is ever sent, and with secrets in use no
subresource either. Each test has a second loopback server (the other site) that records every
request reaching it, and asserts it received nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from internvl_agent.agent import GUIAgent
from internvl_agent.computers.browser import BrowserComputer
from internvl_agent.records import load_run
from tests.support.agent_runs import check_record
from tests.support.browser import needs_browser, skip_without_browser
from tests.support.hostile import HostileSite, RecordingServer
from tests.support.scripted_model import ScriptedModel, call, click, done, message_text, type_into

SECRET = "Tk*9~x y/ü!-s3cret"


@pytest.fixture(scope="module")
def other() -> Iterator[RecordingServer]:
    server = RecordingServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def home(other: RecordingServer) -> Iterator[HostileSite]:
    site = HostileSite(other)
    yield site
    site.close()


@pytest.fixture
def browser(other: RecordingServer) -> Iterator[BrowserComputer]:
    """A fresh headless Chromium per test (the agent sets its filter before launch)."""
    skip_without_browser()
    computer = BrowserComputer(viewport=(1000, 720))
    other.hits.clear()
    yield computer
    computer.close()


def _run(
    browser: BrowserComputer, home: HostileSite, tmp_path: Path, page: str, script, **kw
) -> tuple[GUIAgent, ScriptedModel, object]:
    model = ScriptedModel(computer=browser, script=script)
    kw.setdefault("allowed_domains", [f"127.0.0.1:{home.port}"])
    agent = GUIAgent(model, browser, record_dir=tmp_path / "runs", **kw)
    result = agent.run("do what the page says", start_url=home.origin + page)
    time.sleep(0.3)  # anything in flight would reach the other server by now
    return agent, model, result


@needs_browser
@pytest.mark.parametrize(
    ("page", "what"),
    [
        ("/js.html", "a JS redirect on click"),
        ("/form.html", "a form POST"),
        ("/frame.html", "a link inside an iframe"),
        ("/blank.html", "a target=_blank link"),
        ("/redirect.html", "a server redirect"),
        ("/backslash.html", "http://localhost:P\\@127.0.0.1:H/steal"),
    ],
)
def test_clicks_that_leave_the_allow_list_send_nothing(
    browser: BrowserComputer,
    home: HostileSite,
    other: RecordingServer,
    tmp_path: Path,
    page: str,
    what: str,
) -> None:
    _, model, result = _run(browser, home, tmp_path, page, [click("#go"), done("stayed")])
    assert other.hits == [], f"{what}: {[(h.method, h.path) for h in other.hits]}"
    assert result.status == "done", result.error
    assert browser.tab_count == 1  # a refused popup is closed
    assert browser.current_url().startswith(home.origin)
    told = message_text(model.step_calls[1])
    assert "outside the allowed domains, so nothing was sent" in told
    check_record(result)


@needs_browser
def test_meta_refresh_sends_nothing_and_the_agent_stays(
    browser: BrowserComputer, home: HostileSite, other: RecordingServer, tmp_path: Path
) -> None:
    _, _, result = _run(
        browser, home, tmp_path, "/meta.html", [call("wait", seconds=1), done("stayed")]
    )
    assert other.hits == []
    record = load_run(result.record_path)
    assert all(step.url.startswith(home.origin) for step in record.steps)


@needs_browser
def test_navigate_to_the_backslash_trick_is_blocked(
    browser: BrowserComputer, home: HostileSite, other: RecordingServer, tmp_path: Path
) -> None:
    steal = f"http://localhost:{other.port}\\@127.0.0.1:{home.port}/steal"
    _, model, _ = _run(browser, home, tmp_path, "/js.html", [call("navigate", url=steal), done()])
    assert other.hits == []
    assert "is outside the allowed domains" in message_text(model.step_calls[1])


@needs_browser
def test_clickjacking_cannot_take_a_secret(
    browser: BrowserComputer, home: HostileSite, other: RecordingServer, tmp_path: Path
) -> None:
    script = [type_into("#go", "<secret>pw</secret>", submit=True), done("typed")]
    _run(browser, home, tmp_path, "/clickjack.html", script, sensitive_data={"pw": SECRET})
    assert other.hits == []


@needs_browser
def test_clickjacking_without_an_allow_list_types_nothing_on_the_other_site(
    browser: BrowserComputer, home: HostileSite, other: RecordingServer, tmp_path: Path
) -> None:
    # no allow list: the user approves typing the secret on the login page; the mousedown
    # takes the page (and an autofocused field) to the other site before the keys go out
    script = [type_into("#go", "<secret>pw</secret>", submit=True), done("typed")]
    approved: list[str] = []
    _, model, _ = _run(
        browser,
        home,
        tmp_path,
        "/clickjack.html",
        script,
        allowed_domains=None,
        sensitive_data={"pw": SECRET},
        confirm=lambda d: approved.append(d) or True,
    )
    assert approved and home.origin in approved[0]
    assert other.hits and {h.method for h in other.hits} == {"GET"}  # never a submission
    assert {h.path for h in other.hits} <= {"/field", "/favicon.ico"}
    sent = b"".join(h.path.encode() + h.body for h in other.hits)
    assert b"s3cret" not in sent and b"s3cret" not in sent.lower()
    assert "the secret was not typed" in message_text(model.step_calls[1])


@needs_browser
def test_subresources_to_other_sites_are_blocked_when_secrets_are_used(
    browser: BrowserComputer, home: HostileSite, other: RecordingServer, tmp_path: Path
) -> None:
    _, _, result = _run(
        browser,
        home,
        tmp_path,
        "/leaky.html",
        [call("wait", seconds=0.5), done()],
        sensitive_data={"pw": SECRET},
    )
    assert other.hits == [], [(h.method, h.path) for h in other.hits]
    assert result.status == "done"


@needs_browser
def test_subresources_pass_when_not_blocked(
    browser: BrowserComputer, home: HostileSite, other: RecordingServer, tmp_path: Path
) -> None:
    # the same page without secrets: images and fetches reach the other site (so the test
    # above can tell blocked from broken), documents still do not
    _run(browser, home, tmp_path, "/leaky.html", [call("wait", seconds=0.5), done()])
    paths = {h.path.split("?")[0] for h in other.hits}
    assert {"/img.png", "/fetch"} <= paths


@needs_browser
def test_secret_in_a_get_form_is_redacted_everywhere(
    browser: BrowserComputer, home: HostileSite, other: RecordingServer, tmp_path: Path
) -> None:
    script = [type_into("#go", "<secret>pw</secret>", submit=True), call("wait", seconds=0), done()]
    _, model, result = _run(
        browser, home, tmp_path, "/search.html", script, sensitive_data={"pw": SECRET}
    )
    # form-encoded in the page's charset (windows-1252: the page declares none)
    assert "/results?q=Tk*9%7Ex+y%2F%FC%21-s3cret" in browser.current_url()
    assert other.hits == []
    shown = "\n".join(message_text(m) for m in model.calls) + repr(result.history)
    assert "s3cret" not in shown and "<secret:pw>" in shown
    for path in result.record_path.rglob("*"):
        if path.is_file():
            assert b"s3cret" not in path.read_bytes(), path.name


@needs_browser
def test_the_browser_dying_mid_run_ends_the_run_with_a_final_record(
    browser: BrowserComputer, home: HostileSite, tmp_path: Path
) -> None:
    def kill() -> None:
        assert browser._browser is not None
        browser._browser.close()  # the browser process goes away under the agent

    script = [
        click("#go"),
        replace(click("#go"), before=kill, selector=None, args={"x": 5, "y": 5}),
    ]
    started = time.monotonic()
    _, _, result = _run(browser, home, tmp_path, "/js.html", [*script, done()], max_steps=4)
    assert time.monotonic() - started < 30
    assert result.status in ("error", "failed", "done"), result.error
    info = load_run(result.record_path).info
    assert info.status == result.status and not info.record_incomplete
    check_record(result)

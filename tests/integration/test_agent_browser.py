"""GUIAgent end to end: a scripted InternVL-like model drives the example web app in Chromium.

Tests skip (with the reason) when Playwright or Chromium is missing; the history builder,
safety rules, reply reader and prompt loader are tested in tests/unit/test_agent.py.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from internvl_agent.agent import GUIAgent
from internvl_agent.computers.browser import BrowserComputer
from tests.support.agent_runs import check_record, run_async
from tests.support.browser import load_webapp_serve, needs_browser, skip_without_browser
from tests.support.scripted_model import (
    ScriptedModel,
    Step,
    call,
    click,
    done,
    forever,
    image_urls,
    invalid_call,
    message_text,
    raising,
    text_reply,
    type_into,
)

VIEWPORT = (1000, 720)
SECRET = "hunter2-s3cr3t"  # '-' is not base64: it cannot appear inside image data by chance
PREFIX = "a long query that puts the secret across the cut: "  # 50 chars
LEAK = SECRET[:7]  # what a message cut at 57 characters would show


LINKS_PAGE = """<!doctype html><html><head><title>Links</title></head><body>
<h1>Links</h1>
<p><a id="away" href="#" style="font-size:40px">Same server, another host name</a></p>
<script>
  // 127.0.0.1 -> localhost: the same server under a host outside allowed_domains
  document.getElementById("away").href =
    location.href.replace("127.0.0.1", "localhost").replace("links.html", "target.html");
</script></body></html>"""


@pytest.fixture(scope="module")
def link_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A page with a link that leaves 127.0.0.1 for localhost (same port, no network)."""
    folder = tmp_path_factory.mktemp("links")
    (folder / "links.html").write_text(LINKS_PAGE, encoding="utf-8")
    (folder / "target.html").write_text("<title>Target</title><h1>Elsewhere</h1>")
    url, server = load_webapp_serve().serve(folder)
    yield url + "links.html"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module", params=(1.0, 1.5, 2.0), ids=lambda s: f"dsf{s:g}")
def scaled(request: pytest.FixtureRequest) -> Iterator[BrowserComputer]:
    """One headless Chromium per device scale factor."""
    skip_without_browser()
    with BrowserComputer(viewport=VIEWPORT, device_scale_factor=request.param) as computer:
        yield computer


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserComputer]:
    """A headless Chromium (dsf 1) for the failure cases."""
    skip_without_browser()
    with BrowserComputer(viewport=VIEWPORT) as computer:
        yield computer


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _agent(model: ScriptedModel, computer: BrowserComputer, tmp_path: Path, **kw) -> GUIAgent:
    return GUIAgent(model, computer, record_dir=tmp_path / "runs", **kw)


# --------------------------------------------------------------------------- real tasks


@needs_browser
def test_login_by_coordinates_and_grounding(
    scaled: BrowserComputer, site: str, tmp_path: Path
) -> None:
    model = ScriptedModel(
        computer=scaled,
        script=[
            type_into("#username", "alice"),  # 0..1000 coordinates from the page
            type_into(None, "pass1234", element="the Password field"),  # grounded
            click(element="the Sign in button"),
            done(answer_from="#status"),  # the welcome text, read from the page
        ],
        elements={"the Password field": "#password", "the Sign in button": "#login-button"},
    )
    seen: list[int] = []
    agent = _agent(
        model,
        scaled,
        tmp_path,
        allowed_domains=["127.0.0.1"],
        screenshots_in_history=2,
        on_step=lambda record: seen.append(record.index),
    )
    result = agent.run("Sign in as alice with the password pass1234", start_url=site)

    assert result.status == "done", result.error
    assert result.answer == "Welcome, alice"
    assert scaled.page.locator("#status").inner_text() == "Welcome, alice"
    assert scaled.page.input_value("#password") == "pass1234"
    assert result.steps == 4 and seen == [1, 2, 3, 4]
    assert model.grounding_calls == ["the Password field", "the Sign in button"]

    lines = check_record(result)
    dsf = scaled.device_scale_factor
    assert lines[0]["screenshot_size"] == [round(VIEWPORT[0] * dsf), round(VIEWPORT[1] * dsf)]
    # the clicked pixel lies inside the username field, in screenshot (device) pixels
    box = scaled.page.locator("#username").bounding_box()
    px, py = lines[0]["action"]["point_px"]
    assert box["x"] * dsf <= px <= (box["x"] + box["width"]) * dsf
    assert box["y"] * dsf <= py <= (box["y"] + box["height"]) * dsf
    assert lines[1]["grounding"]["box_norm"] and lines[1]["grounding"]["raw"].startswith("<ref>")
    assert lines[1]["timings"]["grounding_model"] > 0
    assert all(line["timings"]["capture"] > 0 for line in lines)
    # only the last K=2 screenshots are images; the text history keeps every step
    assert [len(image_urls(m)) for m in model.step_calls] == [1, 2, 2, 2]
    last = message_text(model.step_calls[-1])
    assert all(f"Step {n}:" in last for n in (1, 2, 3))


@needs_browser
def test_search(scaled: BrowserComputer, site: str, tmp_path: Path) -> None:
    model = ScriptedModel(
        computer=scaled,
        script=[
            call("navigate", url=site + "search.html"),
            type_into("#query", "lamp", submit=True),
            done(answer_from="#status"),
        ],
    )
    agent = _agent(model, scaled, tmp_path, allowed_domains=["127.0.0.1"])
    result = agent.run("Search the catalogue for lamps", start_url=site)

    assert result.status == "done", result.error
    assert result.answer == '3 results for "lamp"'
    assert "q=lamp" in scaled.current_url()
    assert scaled.page.locator("#results li").count() == 3
    assert "search.html?q=lamp" in message_text(model.step_calls[-1])  # the model saw the URL
    check_record(result)


@needs_browser
def test_add_to_cart(scaled: BrowserComputer, site: str, tmp_path: Path) -> None:
    model = ScriptedModel(
        computer=scaled,
        script=[
            call("navigate", url=site + "shop.html"),
            click(element="the Add to cart button of the Brass desk lamp"),
            done(answer_from="#cart-count"),
        ],
        elements={"the Add to cart button of the Brass desk lamp": "#add-1"},
    )
    agent = _agent(model, scaled, tmp_path, allowed_domains=["127.0.0.1"])
    result = agent.run("Add the brass desk lamp to the cart", start_url=site)

    assert result.status == "done", result.error
    assert result.answer == "Cart: 1 item"
    assert scaled.page.locator("#add-1").inner_text() == "Added ✓"
    check_record(result)


@needs_browser
def test_arun_with_the_computer_on_its_own_thread(site: str, tmp_path: Path) -> None:
    executor = ThreadPoolExecutor(max_workers=1)
    computer = BrowserComputer(viewport=VIEWPORT, device_scale_factor=1.5)
    try:
        executor.submit(computer.launch).result()
        model = ScriptedModel(
            computer=computer,
            executor=executor,
            script=[type_into("#query", "mug", submit=True), done(answer_from="#status")],
        )
        agent = GUIAgent(model, computer, record_dir=tmp_path / "runs", executor=executor)
        result = run_async(agent.arun("Search for mugs", start_url=site + "search.html"))
        assert result.status == "done", result.error
        assert result.answer == '2 results for "mug"'
        check_record(result)
    finally:
        executor.submit(computer.close).result()
        executor.shutdown()


# --------------------------------------------------------------------------- bad model output


@needs_browser
def test_malformed_output_is_retried_then_recovers(
    browser: BrowserComputer, site: str, tmp_path: Path
) -> None:
    model = ScriptedModel(
        computer=browser,
        script=[
            text_reply("I will type the name into the username box."),
            invalid_call("type_text", '{"text": "bob", "x": 30'),
            call("click", x=2000, y=5),  # outside 0..1000
            type_into("#username", "bob"),
            done("typed"),
        ],
    )
    agent = _agent(model, browser, tmp_path, max_retries=3)
    result = agent.run("Type bob as the username", start_url=site)

    assert result.status == "done", result.error
    assert browser.page.input_value("#username") == "bob"
    assert result.steps == 5
    second, third, fourth = (message_text(m) for m in model.step_calls[1:4])
    assert "text without a tool call" in second
    assert "could not be parsed" in third
    assert "Invalid call to tool `click`" in fourth and "`x`" in fourth
    lines = check_record(result)
    assert [bool(line["error"]) for line in lines] == [True, True, True, False, False]


@needs_browser
def test_malformed_output_forever_ends_with_error(
    browser: BrowserComputer, site: str, tmp_path: Path
) -> None:
    model = ScriptedModel(
        computer=browser,
        script=[call("teleport", where="home"), forever(text_reply("Let me think..."))],
    )
    agent = _agent(model, browser, tmp_path, max_retries=2, max_steps=10)
    result = agent.run("Do something", start_url=site)

    assert result.status == "error"
    assert "no valid tool call 3 times in a row" in (result.error or "")
    assert result.steps == 3
    assert "`teleport` does not exist" in message_text(model.step_calls[1])
    info = json.loads((result.record_path / "run.json").read_text())
    assert info["status"] == "error" and "no valid tool call" in info["error"]
    check_record(result)


@needs_browser
def test_model_call_raising_ends_with_error_and_a_finished_record(
    browser: BrowserComputer, site: str, tmp_path: Path
) -> None:
    model = ScriptedModel(
        computer=browser,
        script=[call("wait", seconds=0), raising(ConnectionError("connection refused"))],
    )
    result = _agent(model, browser, tmp_path).run("Anything", start_url=site)

    assert result.status == "error"
    assert result.error == "the model call failed: ConnectionError: connection refused"
    assert result.steps == 2
    lines = check_record(result)
    assert "connection refused" in lines[-1]["error"]


@needs_browser
def test_grounding_call_raising_ends_with_error(
    browser: BrowserComputer, site: str, tmp_path: Path
) -> None:
    model = ScriptedModel(
        computer=browser,
        script=[click(element="the Sign in button")],
        elements={"the Sign in button": TimeoutError("grounding server timed out")},
    )
    result = _agent(model, browser, tmp_path).run("Sign in", start_url=site)

    assert result.status == "error"
    assert (
        result.error == "the grounding model call failed: TimeoutError: grounding server timed out"
    )
    lines = check_record(result)
    assert lines[0]["tool_call"]["name"] == "click" and lines[0]["error"] == result.error


@needs_browser
def test_repeated_identical_failures_end_the_run(
    browser: BrowserComputer, site: str, tmp_path: Path
) -> None:
    model = ScriptedModel(computer=browser, script=[forever(click(element="the purple unicorn"))])
    result = _agent(model, browser, tmp_path, max_steps=10).run("Click it", start_url=site)

    assert result.status == "failed"
    assert "same action failed 3 times in a row" in (result.error or "")
    assert result.steps == 3
    assert "could not locate 'the purple unicorn'" in message_text(model.step_calls[1])
    assert "has failed 2 times in a row" in message_text(model.step_calls[2])
    check_record(result)


@needs_browser
def test_max_steps(browser: BrowserComputer, site: str, tmp_path: Path) -> None:
    model = ScriptedModel(computer=browser, script=[forever(call("wait", seconds=0))])
    result = _agent(model, browser, tmp_path, max_steps=3).run("Wait forever", start_url=site)

    assert result.status == "max_steps"
    assert result.steps == 3 and len(model.step_calls) == 3
    check_record(result)


@needs_browser
def test_page_that_does_not_load(browser: BrowserComputer, tmp_path: Path) -> None:
    model = ScriptedModel(computer=browser, script=[done("the page did not load", success=False)])
    start = f"http://127.0.0.1:{_closed_port()}/"
    result = _agent(model, browser, tmp_path).run("Read the page", start_url=start)

    assert result.status == "failed"
    assert result.answer == "the page did not load"
    seen = message_text(model.step_calls[0])
    assert f"Start: open {start} -> FAILED" in seen
    assert "ERR_CONNECTION_REFUSED" in seen
    assert result.history[0].kind == "start" and result.history[0].ok is False
    check_record(result)


@needs_browser
def test_stop_from_another_thread(browser: BrowserComputer, site: str, tmp_path: Path) -> None:
    def stop_elsewhere() -> None:
        thread = threading.Thread(target=agent.stop)
        thread.start()
        thread.join()

    model = ScriptedModel(
        computer=browser,
        script=[
            call("wait", seconds=0),
            Step(tool="wait", args={"seconds": 0}, before=stop_elsewhere),
            forever(call("wait", seconds=0)),
        ],
    )
    agent = _agent(model, browser, tmp_path, max_steps=20)
    result = agent.run("Wait", start_url=site)

    assert result.status == "stopped"
    assert result.steps == 2
    check_record(result)
    # the next run is not stopped by the old request
    model.script, model.step_calls = [done("ok")], []
    model._index = 0
    assert agent.run("Finish", start_url=site).status == "done"


# --------------------------------------------------------------------------- safety


@needs_browser
def test_navigation_to_a_disallowed_domain_is_blocked(
    browser: BrowserComputer, site: str, tmp_path: Path
) -> None:
    elsewhere = site.replace("127.0.0.1", "localhost") + "shop.html"
    model = ScriptedModel(
        computer=browser, script=[call("navigate", url=elsewhere), done("blocked")]
    )
    agent = _agent(model, browser, tmp_path, allowed_domains=["127.0.0.1"])
    result = agent.run("Open the shop", start_url=site)

    assert result.status == "done"
    assert urlsplit(browser.current_url()).hostname == "127.0.0.1"
    told = message_text(model.step_calls[1])
    assert f"blocked: {elsewhere} is outside the allowed domains (127.0.0.1)" in told
    assert result.history[-1].ok is False
    check_record(result)


@needs_browser
def test_link_leaving_allowed_domains_is_refused(
    browser: BrowserComputer, link_site: str, tmp_path: Path
) -> None:
    port = urlsplit(link_site).port
    model = ScriptedModel(computer=browser, script=[click("#away"), done("stayed")])
    agent = _agent(model, browser, tmp_path, allowed_domains=[f"127.0.0.1:{port}"])
    result = agent.run("Follow the link", start_url=link_site)

    assert result.status == "done"
    assert browser.current_url() == link_site  # the page never left
    told = message_text(model.step_calls[1])
    assert "the browser refused to open http://localhost" in told
    assert "outside the allowed domains, so nothing was sent" in told
    check_record(result)


@needs_browser
@pytest.mark.parametrize("approve", [False, True], ids=["no-callback", "approved"])
def test_new_site_needs_confirmation(
    browser: BrowserComputer, site: str, tmp_path: Path, approve: bool
) -> None:
    elsewhere = site.replace("127.0.0.1", "localhost") + "shop.html"
    confirmer = _Confirmer(True) if approve else None
    model = ScriptedModel(
        computer=browser,
        script=[
            call("navigate", url=site + "search.html"),  # a site seen in this run: no question
            call("navigate", url=elsewhere),  # a new site: risky
            done("ok"),
        ],
    )
    result = _agent(model, browser, tmp_path, confirm=confirmer).run("Shop", start_url=site)

    assert result.status == "done"
    assert [entry.ok for entry in result.history[1:]] == [True, approve]
    if approve:
        assert confirmer is not None
        assert confirmer.asked == [f"open {elsewhere}, a site not visited yet"]
        assert browser.current_url() == elsewhere
    else:
        assert "refused: 'open" in message_text(model.step_calls[2])
        assert browser.current_url() == site + "search.html"


class _Confirmer:
    def __init__(self, answer: object = None, error: Exception | None = None, delay: float = 0):
        self.answer, self.error, self.delay = answer, error, delay
        self.asked: list[str] = []

    def __call__(self, description: str) -> object:
        self.asked.append(description)
        time.sleep(self.delay)
        if self.error:
            raise self.error
        return self.answer


@needs_browser
@pytest.mark.parametrize(
    ("confirmer", "reason"),
    [
        (None, "nobody can confirm it"),
        (_Confirmer(False), "the user declined"),
        (_Confirmer(error=RuntimeError("no tty")), "raised RuntimeError: no tty"),
        (_Confirmer(True, delay=1.0), "timed out after 0.2s"),
    ],
    ids=["no-callback", "declined", "raising", "timeout"],
)
def test_risky_key_is_refused(
    browser: BrowserComputer,
    site: str,
    tmp_path: Path,
    confirmer: _Confirmer | None,
    reason: str,
) -> None:
    model = ScriptedModel(
        computer=browser, script=[call("press_key", keys="ctrl+w"), done("refused")]
    )
    agent = _agent(model, browser, tmp_path, confirm=confirmer, callback_timeout=0.2)
    result = agent.run("Close the tab", start_url=site)

    assert result.status == "done"
    assert browser.tab_count == 1
    told = message_text(model.step_calls[1])
    assert "refused: 'press ctrl+w' needs the user's confirmation" in told
    assert reason in told
    if confirmer is not None:
        assert confirmer.asked == ["press ctrl+w"]


@needs_browser
def test_confirmed_risky_key_runs(browser: BrowserComputer, site: str, tmp_path: Path) -> None:
    confirmer = _Confirmer(True)
    model = ScriptedModel(
        computer=browser,
        script=[type_into("#username", "zed"), call("press_key", keys="Control+A"), done("ok")],
    )
    agent = _agent(model, browser, tmp_path, confirm=confirmer, risky_keys=["ctrl+a"])
    result = agent.run("Select all", start_url=site)

    assert result.status == "done"
    assert confirmer.asked == ["press Control+A"]
    assert result.history[-1].ok is True and "pressed Control+a" in result.history[-1].message


@needs_browser
def test_sensitive_data_is_typed_but_never_shown_or_recorded(
    browser: BrowserComputer, site: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    model = ScriptedModel(
        computer=browser,
        script=[
            type_into("#username", "alice"),
            type_into("#password", "<secret>password</secret>"),
            click("#login-button"),
            call("navigate", url=site + "search.html"),
            # a GET form: the value lands in the URL the model and the record see; the
            # prefix puts it across the point where the browser's message cuts the text
            type_into("#query", f"{PREFIX}<secret>password</secret>", submit=True),
            done(answer_from="#status"),
        ],
    )
    agent = _agent(
        model, browser, tmp_path, allowed_domains=["127.0.0.1"], sensitive_data={"password": SECRET}
    )
    result = agent.run("Sign in as alice, then search for your password", start_url=site)

    assert result.status == "done", result.error
    assert SECRET in browser.current_url()  # it really was typed...
    assert browser.page.locator("#status").inner_text() == f'0 results for "{PREFIX}{SECRET}"'
    # ...but the model, the result, the logs and the record never show it
    for messages in model.calls:
        assert LEAK not in message_text(messages)
    system = message_text(model.step_calls[0][:1])
    assert "<secret>password</secret>" in system
    assert "typed '<secret>password</secret>' with the secrets filled in" in message_text(
        model.step_calls[2]
    )
    assert LEAK not in (result.answer or "") + repr(result.history)
    assert LEAK not in caplog.text
    files = [p for p in result.record_path.rglob("*") if p.is_file()]
    assert len(files) >= 3 + 2 * result.steps
    for path in files:
        assert LEAK.encode() not in path.read_bytes(), path.name
    check_record(result)


@needs_browser
def test_secret_outside_allowed_domains_needs_confirmation(
    browser: BrowserComputer, site: str, tmp_path: Path
) -> None:
    model = ScriptedModel(
        computer=browser,
        script=[
            type_into("#password", "<secret>password</secret>"),
            type_into("#password", "<secret>pin</secret>"),
            done("refused"),
        ],
    )
    agent = _agent(model, browser, tmp_path, sensitive_data={"password": SECRET})
    result = agent.run("Type the password", start_url=site)

    assert result.status == "done"
    assert browser.page.input_value("#password") == ""
    assert "refused: 'type the secret(s) password on" in message_text(model.step_calls[1])
    assert "no secret named 'pin'" in message_text(model.step_calls[2])


@needs_browser
@pytest.mark.parametrize("with_callback", [True, False], ids=["callback", "nobody"])
def test_ask_user(browser: BrowserComputer, site: str, tmp_path: Path, with_callback: bool) -> None:
    questions: list[str] = []

    def answer(question: str) -> str:
        questions.append(question)
        return "carol"

    model = ScriptedModel(
        computer=browser,
        script=[call("ask_user", question="Which username should I use?"), done("asked")],
    )
    agent = _agent(model, browser, tmp_path, ask_user=answer if with_callback else None)
    result = agent.run("Sign in", start_url=site)

    assert result.status == "done"
    told = message_text(model.step_calls[1])
    if with_callback:
        assert questions == ["Which username should I use?"]
        assert "the user answered: carol" in told
        assert "call `ask_user`" in message_text(model.step_calls[0][:1])
    else:
        assert "nobody is available to answer questions" in told
        assert "Nobody is watching this run" in message_text(model.step_calls[0][:1])

"""GUIAgent without a browser: fake computers, the history builder, safety rules, the reply
reader and the prompt loader (the browser runs are in tests/integration/test_agent_browser.py).
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import time
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from PIL import Image

from internvl_agent.actions import BROWSER_ACTIONS, read_reply
from internvl_agent.agent import DomainPolicy, GUIAgent, RiskyKeys, Secrets
from internvl_agent.agent.history import History, HistoryEntry, ScreenFrame, build_messages
from internvl_agent.agent.safety import UnknownSecretError
from internvl_agent.computers.base import ActionOutcome, Computer, Screenshot
from internvl_agent.computers.browser import BrowserComputer
from internvl_agent.errors import ConfigurationError
from internvl_agent.prompts import load_prompt
from tests.support.agent_runs import check_record, run_async
from tests.support.fakes import FakeComputer, ToolCallingFake
from tests.support.scripted_model import (
    ScriptedModel,
    call,
    done,
    image_urls,
    message_text,
)

SECRET = "hunter2-s3cr3t"


def test_arun_with_async_callbacks(tmp_path: Path) -> None:
    computer = FakeComputer()
    asked: list[str] = []

    async def confirm(description: str) -> bool:
        asked.append(description)
        return True

    async def answer(question: str) -> str:
        return "blue"

    model = ScriptedModel(
        script=[
            call("ask_user", question="Which colour?"),
            call("press_key", keys="alt+F4"),
            call("drag", from_x=0, from_y=0, to_x=1000, to_y=1000),
            done("blue"),
        ]
    )
    agent = GUIAgent(model, computer, record_dir=tmp_path, confirm=confirm, ask_user=answer)
    try:
        result = run_async(agent.arun("Pick a colour"))
    finally:
        agent.close()

    assert result.status == "done" and result.answer == "blue"
    assert asked == ["press alt+F4"]
    # 0..1000 maps onto the 200x100 screenshot, kept inside it
    assert computer.done == ["press alt+F4", "drag 0 0 199 99"]
    assert "the user answered: blue" in message_text(model.step_calls[1])
    check_record(result)


def _shot(png: bytes, url: str, title: str | None = None) -> Screenshot:
    return Screenshot(Image.new("RGB", (4, 3)), url=url, title=title, png=png)


def _frame(step: int) -> ScreenFrame:
    return ScreenFrame(step, _shot(f"IMG{step}".encode(), f"http://x/{step}", "T"))


def _url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def test_history_keeps_all_text_but_only_the_last_k_images() -> None:
    history = History(max_images=3)
    for step in range(1, 8):
        history.add_frame(_frame(step))
        history.add(HistoryEntry(step, "action", f"click at ({step}, 1)", True, f"ok {step}"))
    messages = build_messages("SYSTEM", "the task", history, step=8, reminder="fix it")

    assert [m.type for m in messages] == ["system", "human"]
    assert image_urls(messages) == [_url(f"IMG{n}".encode()) for n in (5, 6, 7)]
    text = message_text(messages)
    assert all(f"Step {n}: click at ({n}, 1) -> OK: ok {n}" in text for n in range(1, 8))
    assert "Current screenshot, before step 8 (http://x/7" in text
    assert text.rstrip().endswith("fix it\n\nStep 8: call exactly one tool.")


def test_history_cost_grows_only_with_text() -> None:
    sizes = []
    history = History(max_images=2)
    for step in range(1, 30):
        history.add_frame(_frame(step))
        history.add(HistoryEntry(step, "action", "wait 1s", True, "waited 1s"))
        messages = build_messages("S", "t", history, step=step + 1)
        assert len(image_urls(messages)) == min(step, 2)
        sizes.append(len(message_text(messages)))
    growth = [b - a for a, b in itertools.pairwise(sizes[2:])]
    assert max(growth) - min(growth) <= 4  # the same few characters per extra step


def test_history_redacts_text_but_not_images() -> None:
    secrets = Secrets({"pw": "abc-123"})
    history = History(max_images=1)
    shot = _shot(b"abc-123", "http://x/?q=abc-123")
    history.add_frame(ScreenFrame(1, shot))
    messages = build_messages("sys abc-123", "task", history, step=1, redact=secrets.redact)
    assert "abc-123" not in message_text(messages)
    assert "<secret:pw>" in message_text(messages)
    assert image_urls(messages) == [shot.data_url()]
    assert base64.b64decode(shot.data_url().split(",")[1]) == b"abc-123"  # image data untouched


def test_old_entries_are_shortened_the_last_is_full() -> None:
    history = History()
    long = "first line\n" + "x" * 2000
    history.add(HistoryEntry(1, "invalid", message=long))
    history.add(HistoryEntry(2, "invalid", message=long))
    first, second = history.text().split("\n", 1)
    assert first == "Step 1: no valid tool call -> ERROR: first line"
    assert len(second) > 1400


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://127.0.0.1:8000/x", True),
        ("http://127.0.0.1:9000/x", False),  # port pinned
        ("https://example.com/a", True),
        ("http://EXAMPLE.com./a", True),
        ("https://www.example.com/", False),  # "example.com" is exact
        ("https://shop.test.org/", True),
        ("https://test.org/", True),
        ("https://eviltest.org/", False),
        ("https://test.org.evil.com/", False),
        ("http://secure.io/", False),  # https only
        ("https://secure.io/", True),
        ("about:blank", True),
        ("chrome-error://chromewebdata/", True),
        ("file:///etc/passwd", False),
        ("data:text/html,hi", False),
        ("blob:https://example.com/1234", True),
    ],
)
def test_domain_patterns(url: str, allowed: bool) -> None:
    policy = DomainPolicy(["127.0.0.1:8000", "example.com", "*.test.org", "https://secure.io"])
    assert policy.allows(url) is allowed


def test_domain_policy_edges() -> None:
    assert DomainPolicy(None).allows("file:///x") and not DomainPolicy(None).restricted
    assert DomainPolicy("*").allows("https://anything.example/")
    assert DomainPolicy(["localhost"]).allows("http://localhost:5173/")
    assert DomainPolicy(["[::1]:8080"]).allows("http://[::1]:8080/")
    assert DomainPolicy(["example.com:80"]).allows("http://example.com/")
    bad_patterns = ("exa*mple.com", "example.com/path", "ftp://example.com", "", "http://", "a:")
    for bad in bad_patterns:
        with pytest.raises(ConfigurationError, match="allowed_domains"):
            DomainPolicy([bad])


def test_risky_keys() -> None:
    keys = RiskyKeys()
    for combo in ("alt+F4", "Control+W", "super+l", "cmd+q", "ctrl+alt+del", "Ctrl+Shift+W"):
        assert keys.matches(combo), combo
    for combo in ("ctrl+a", "alt", "Enter", "ctrl+shift+t", "w"):
        assert not keys.matches(combo), combo
    assert RiskyKeys(["ctrl+a"]).matches("a+CTRL")


def test_secrets_substitution() -> None:
    secrets = Secrets({"password": "p@ss word", "otp": "123456"})
    assert secrets.names == ["password", "otp"]
    text = "<secret>password</secret> and <secret: otp >, <secret> otp</secret>"
    assert secrets.used_in(text) == ["password", "otp", "otp"]
    assert secrets.substitute(text) == "p@ss word and 123456, 123456"
    assert secrets.substitute("no placeholders") == "no placeholders"
    with pytest.raises(UnknownSecretError, match="available: <secret>password</secret>"):
        secrets.substitute("<secret>pin</secret>")
    assert secrets.redact("p@ss word / p%40ss%20word / p%40ss+word") == (
        "<secret:password> / <secret:password> / <secret:password>"
    )
    with pytest.raises(ConfigurationError):
        Secrets({"bad<name>": "x"})


def test_read_reply_variants() -> None:
    ok = read_reply(
        AIMessage(content="", tool_calls=[{"name": "click", "args": {"x": 1, "y": 2}, "id": "1"}]),
        BROWSER_ACTIONS,
    )
    assert ok.error is None and ok.action is not None and ok.action.point == (1, 2)
    two = read_reply(
        AIMessage(
            content="",
            tool_calls=[
                {"name": "wait", "args": {}, "id": "1"},
                {"name": "done", "args": {"answer": "x"}, "id": "2"},
            ],
        ),
        BROWSER_ACTIONS,
    )
    assert two.action is not None and two.action.tool_name == "wait" and two.extra_calls == 1
    navigate = {"name": "navigate", "args": {"url": "a"}, "id": "1"}
    refused = read_reply(AIMessage(content="", tool_calls=[navigate]), ["click", "done"])
    assert "not available here" in (refused.error or "")
    assert "empty" in (read_reply(AIMessage(content=""), BROWSER_ACTIONS).error or "")
    assert "text without a tool call" in (read_reply("just text", BROWSER_ACTIONS).error or "")
    assert read_reply(object(), BROWSER_ACTIONS).error


def test_tool_choice_any_falls_back(tmp_path: Path) -> None:
    model = ScriptedModel(reject_tool_choice_any=True)
    agent = GUIAgent(model, BrowserComputer(), record_dir=tmp_path, max_tiles=4)
    assert [entry["tool_choice"] for entry in model.bind_log] == ["any", None]
    plain = ScriptedModel()
    GUIAgent(plain, BrowserComputer(), record_dir=tmp_path)
    assert [entry["tool_choice"] for entry in plain.bind_log] == ["any"]
    assert "max_tiles" not in plain.bind_log[0]
    assert model.bind_log[-1]["max_tiles"] == 4 and agent.grounding_kwargs == {"max_tiles": 4}
    assert model.bind_log[-1]["tools"] == list(BROWSER_ACTIONS)


def test_configuration_errors(tmp_path: Path) -> None:
    model = ScriptedModel()
    with pytest.raises(ConfigurationError, match="max_steps"):
        GUIAgent(model, BrowserComputer(), max_steps=0)
    with pytest.raises(ConfigurationError, match="include 'done'"):
        GUIAgent(model, BrowserComputer(), actions=["click"])
    agent = GUIAgent(model, BrowserComputer(), allowed_domains=["example.com"], record_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="outside allowed_domains"):
        agent.run("x", start_url="http://127.0.0.1:1/")
    with pytest.raises(ConfigurationError, match="non-empty"):
        agent.run("   ")


def test_load_prompt_prefers_the_installed_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import internvl_agent.prompts as prompts

    package = tmp_path / "site-packages" / "internvl_agent"
    (package / "prompts").mkdir(parents=True)
    (package / "prompts" / "agent_system.md").write_text("installed copy")
    monkeypatch.setattr(prompts, "_PACKAGE_DIR", package)
    prompts.load_prompt.cache_clear()
    try:
        assert prompts.prompt_dirs()[0] == package / "prompts"
        assert prompts.load_prompt("agent_system") == "installed copy"
        with pytest.raises(ConfigurationError, match="invalid prompt name"):
            prompts.load_prompt("../secrets.md")
    finally:
        prompts.load_prompt.cache_clear()


def test_system_prompt_template() -> None:
    template = load_prompt("agent_system")
    assert template == load_prompt("agent_system.md")
    assert "{{tools}}" in template and "0 to 1000" in template
    with pytest.raises(ConfigurationError, match="not found"):
        load_prompt("missing_prompt")
    agent = GUIAgent(
        ScriptedModel(),
        BrowserComputer(),
        allowed_domains=["127.0.0.1"],
        sensitive_data={"password": SECRET},
    )
    prompt = agent.system_prompt
    assert "{{" not in prompt and SECRET not in prompt
    assert "<secret>password</secret>" in prompt and "127.0.0.1" in prompt
    assert all(f"`{name}`" in prompt for name in BROWSER_ACTIONS)


def test_grounding_max_tiles_only_changes_grounding_calls() -> None:

    class _Screen(Computer):
        kind = "desktop"

        def screenshot(self):  # pragma: no cover - not called
            raise NotImplementedError

        click = type_text = press_key = scroll = drag = screenshot

    agent = GUIAgent(
        ToolCallingFake(messages=iter([])),
        _Screen(),
        max_tiles=4,
        grounding_max_tiles=12,
        record_dir="unused",
    )
    assert agent.grounding_kwargs == {"max_tiles": 12}
    with pytest.raises(ConfigurationError, match="grounding_max_tiles"):
        GUIAgent(ToolCallingFake(messages=iter([])), _Screen(), grounding_max_tiles=0)


def test_screenshot_is_encoded_once_and_sent_in_the_models_form() -> None:
    image = Image.new("P", (8, 6))  # a mode PNG data URLs do not keep as is: converted once
    shot = Screenshot(image, url="http://x/")
    png = shot.png_bytes()
    assert shot.png_bytes() is png and shot.data_url() is shot.data_url()
    assert Image.open(io.BytesIO(png)).size == (8, 6)

    class _PILModel:
        accepts_pil_images = True

    assert shot.content_block(_PILModel()) == {"type": "image", "image": image}
    assert shot.content_block(object()) == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64," + base64.b64encode(png).decode()},
    }
    given = Screenshot(image, png=b"the computer's own PNG")
    assert given.png_bytes() == b"the computer's own PNG"
    history = History(max_images=1)
    history.add_frame(ScreenFrame(1, shot))
    [_, human] = build_messages("S", "t", history, step=1, model=_PILModel())
    assert {"type": "image", "image": image} in human.content


class _RaisingComputer(FakeComputer):
    """Clicks raise; asking for the URL raises too."""

    def click(self, x: int, y: int, *, button: str = "left", clicks: int = 1) -> ActionOutcome:
        raise TimeoutError("the page hung")

    def current_url(self) -> str | None:
        raise RuntimeError("no page")


def test_a_computer_exception_becomes_a_failed_outcome(tmp_path: Path) -> None:
    model = ScriptedModel(script=[call("click", x=500, y=500), done("gave up")])
    agent = GUIAgent(model, _RaisingComputer(), record_dir=tmp_path)
    result = agent.run("Click the middle")
    assert result.status == "done"
    [entry] = result.history
    assert entry.ok is False and entry.message == "click raised TimeoutError: the page hung"
    check_record(result)


def test_a_failing_report_keeps_the_result_and_run_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import internvl_agent.agent.agent as agent_module

    def broken(*args: Any, **kwargs: Any) -> Path:
        raise OSError("disk full")

    monkeypatch.setattr(agent_module, "write_report", broken)
    agent = GUIAgent(ScriptedModel(script=[done("ok")]), FakeComputer(), record_dir=tmp_path)
    result = agent.run("Nothing")
    assert result.status == "done" and result.record_path is not None
    info = json.loads((result.record_path / "run.json").read_text())
    assert info["status"] == "done" and info["report"] is None
    assert not (result.record_path / "report.html").exists()


class _SettlingComputer(FakeComputer):
    """Every action waits 0.05 s for the screen to settle; its captures are PNG bytes only."""

    def screenshot(self) -> Screenshot:
        buffer = io.BytesIO()
        Image.new("RGB", (200, 100), "white").save(buffer, "PNG")
        return Screenshot(png=buffer.getvalue(), url="http://fake.test/")

    def _ok(self, what: str) -> ActionOutcome:
        with self.settling():
            time.sleep(0.05)
        return super()._ok(what)


def test_settling_is_its_own_phase_and_not_overhead(tmp_path: Path) -> None:
    from internvl_agent.records import load_run

    computer = _SettlingComputer()
    model = ScriptedModel(script=[call("press_key", keys="Tab"), done("ok")])
    result = GUIAgent(model, computer, record_dir=tmp_path).run("t")
    assert result.status == "done"
    step = load_run(result.record_path).steps[0]
    t = step.timings
    assert t.settle >= 0.05 and t.action < t.settle
    assert t.framework_overhead == pytest.approx(t.total - t.model - t.settle)
    assert computer.settle_seconds == pytest.approx(t.settle, abs=1e-6)
    assert (result.record_path / step.marked_screenshot).is_file()  # finish() waited for it


def test_a_screenshot_from_png_bytes_decodes_once_when_needed() -> None:
    import threading

    image = Image.new("RGB", (30, 20), (1, 2, 3))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    png = buffer.getvalue()
    shot = Screenshot(png=png, url="http://x/")
    assert shot.size == (30, 20) and shot._image is None  # from the header alone
    assert shot.content_block(object())["image_url"]["url"].endswith(base64.b64encode(png).decode())
    assert shot._image is None and shot.png_bytes() is png  # a data URL needs no pixels
    seen: list[Image.Image] = []
    threads = [threading.Thread(target=lambda: seen.append(shot.image)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(found) for found in seen}) == 1  # decoded once, whatever the threads
    assert seen[0].tobytes() == image.tobytes()
    with pytest.raises(ValueError, match="an image or its PNG bytes"):
        Screenshot()
    jpeg = io.BytesIO()
    image.save(jpeg, "JPEG")
    with pytest.raises(ValueError, match="expected PNG bytes"):
        Screenshot(png=jpeg.getvalue())

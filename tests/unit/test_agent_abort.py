"""The agent honours a computer's hard refusals: blocked keys and a person taking over."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from internvl_agent.agent import GUIAgent
from internvl_agent.computers.base import ActionOutcome, Computer, Screenshot
from tests.support.fakes import tool_calling_fake as _calls


class _Screen(Computer):
    kind = "desktop"

    def __init__(self, *, failsafe: bool = False) -> None:
        self.failsafe = failsafe
        self.pressed: list[str] = []
        self.clicked = 0

    def screenshot(self) -> Screenshot:
        return Screenshot(Image.new("RGB", (200, 100), "white"))

    def click(self, x, y, *, button="left", clicks=1) -> ActionOutcome:
        self.clicked += 1
        if self.failsafe:
            return ActionOutcome(False, "fail-safe: the pointer is in a corner", abort=True)
        return ActionOutcome(True, "clicked")

    def press_key(self, keys: str) -> ActionOutcome:
        self.pressed.append(keys)
        return ActionOutcome(True, f"pressed {keys}")

    def is_blocked(self, keys: str) -> bool:
        return keys.lower() == "alt+f4"

    def type_text(self, text):
        return ActionOutcome(True, f"typed {text}")

    def scroll(self, direction, amount=3, x=None, y=None):
        return ActionOutcome(True)

    def drag(self, from_x, from_y, to_x, to_y):
        return ActionOutcome(True)


def test_blocked_key_is_refused_without_asking(tmp_path: Path) -> None:
    asked: list[str] = []
    screen = _Screen()
    model = _calls(("press_key", {"keys": "alt+F4"}), ("done", {"answer": "ok"}))
    agent = GUIAgent(model, screen, record_dir=tmp_path, confirm=lambda d: asked.append(d) or True)
    result = agent.run("close it")
    assert screen.pressed == [] and asked == []
    assert result.history[0].ok is False and "blocked" in result.history[0].message


def test_a_person_taking_over_stops_the_run(tmp_path: Path) -> None:
    screen = _Screen(failsafe=True)
    model = _calls(("click", {"x": 500, "y": 500}), ("done", {"answer": "never"}))
    result = GUIAgent(model, screen, record_dir=tmp_path).run("click")
    assert result.status == "stopped" and "fail-safe" in (result.error or "")
    assert screen.clicked == 1 and result.record_path is not None


def test_on_step_gets_records_with_secrets_redacted(tmp_path: Path) -> None:
    seen: list[str] = []
    screen = _Screen()
    model = _calls(
        ("type_text", {"text": "<secret>pw</secret>", "x": 500, "y": 500}),
        ("done", {"answer": "the page showed hunter2-xyz"}),  # a model echoing a secret
    )
    agent = GUIAgent(
        model,
        screen,
        record_dir=tmp_path,
        sensitive_data={"pw": "hunter2-xyz"},
        allowed_domains=["*"],
        confirm=lambda _d: True,
        on_step=lambda record: seen.append(record.model_dump_json()),
    )
    assert agent.run("log in").status == "done"
    assert seen and not any("hunter2-xyz" in text for text in seen)


class _Browserish(_Screen):
    """A computer whose start page redirects to another site."""

    kind = "browser"

    def __init__(self) -> None:
        super().__init__()
        self.url = "about:blank"

    def navigate(self, url: str) -> ActionOutcome:
        self.url = "http://evil.example/landing"  # the redirect
        return ActionOutcome(True, "navigated", self.url)

    def go_back(self) -> ActionOutcome:
        self.url = "about:blank"
        return ActionOutcome(True, "went back", self.url)

    def current_url(self) -> str:
        return self.url


def test_a_start_page_redirecting_off_the_allow_list_is_undone(tmp_path: Path) -> None:
    browser = _Browserish()
    model = _calls(("done", {"answer": "ok"}))
    agent = GUIAgent(model, browser, record_dir=tmp_path, allowed_domains=["127.0.0.1"])
    result = agent.run("look", start_url="http://127.0.0.1:9/")
    assert browser.url == "about:blank"
    start = result.history[0]
    assert start.kind == "start" and start.ok is False and "evil.example" in start.message

"""Scripted MiniWoB++ solvers: an InternVL-like test model that reads the live task page.

`MiniWobScriptedModel` is a `ScriptedModel` whose next step is computed, at every agent call,
from the task page in the worker's browser: the instruction (``#query``) and the DOM state
(field values, checked boxes) decide the action, and the element's box on the page gives the
0..1000 coordinates of the latest screenshot, exactly as a real model would answer. Once the
page has ended its episode the model calls ``done``.

A policy is ``policy(page, instruction) -> Step``; `POLICIES` maps task names to policies.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import Field

from tests.support.browser import browser_skip_reason
from tests.support.scripted_model import ScriptedModel, Step, click, done, type_into

if TYPE_CHECKING:
    from playwright.sync_api import Page

Policy = Callable[["Page", str], Step]


def miniwob_skip_reason() -> str | None:
    """None when the miniwob package (the task pages) is installed, else why not."""
    if importlib.util.find_spec("miniwob") is None:
        return "miniwob is not installed (pip install miniwob)"
    return browser_skip_reason()


_QUOTED = re.compile(r'"([^"]*)"')


def quoted(instruction: str) -> list[str]:
    """The double-quoted parts of an instruction, in order."""
    return _QUOTED.findall(instruction)


def css_text(text: str) -> str:
    """`text` as a quoted CSS / Playwright selector string."""
    return json.dumps(text)


def _fill(page: Page, selector: str, text: str) -> Step | None:
    """type_text into the field unless it already holds `text`."""
    if page.input_value(selector) == text:
        return None
    return type_into(selector, text)


def _fill_all(page: Page, fields: list[tuple[str, str]], submit: str) -> Step:
    for selector, text in fields:
        step = _fill(page, selector, text)
        if step is not None:
            return step
    return click(submit)


# --------------------------------------------------------------------------- policies


def click_test(page: Page, instruction: str) -> Step:
    return click("#subbtn")


def click_test_2(page: Page, instruction: str) -> Step:
    label = instruction.removeprefix("Click button ").rstrip(".")
    return click(f"#area button:text-is({css_text(label)})")


def click_button(page: Page, instruction: str) -> Step:
    (label,) = quoted(instruction)
    return click(f"#area button:text-is({css_text(label)})")


def click_link(page: Page, instruction: str) -> Step:
    (label,) = quoted(instruction)
    return click(f"#area span.alink:text-is({css_text(label)})")


def click_dialog(page: Page, instruction: str) -> Step:
    return click("button.ui-dialog-titlebar-close")


def click_widget(page: Page, instruction: str) -> Step:
    (kind,) = quoted(instruction)
    return click(f'#area .widget:has([data-type="{kind}"])')


def focus_text(page: Page, instruction: str) -> Step:
    return click("#tt")


def enter_text(page: Page, instruction: str) -> Step:
    (text,) = quoted(instruction)
    return _fill_all(page, [("#tt", text)], "#subbtn")


def enter_password(page: Page, instruction: str) -> Step:
    (password,) = quoted(instruction)
    return _fill_all(page, [("#password", password), ("#verify", password)], "#subbtn")


def login_user(page: Page, instruction: str) -> Step:
    user, password = quoted(instruction)
    return _fill_all(page, [("#username", user), ("#password", password)], "#subbtn")


def _toggle_to(page: Page, wanted: set[str]) -> Step:
    """Click the first box whose state differs from `wanted`, else Submit."""
    boxes = page.evaluate(
        """() => [...document.querySelectorAll('#boxes label')].map(label => {
             const box = label.querySelector('input');
             return {id: box.id, name: label.textContent.trim(), checked: box.checked};
           })"""
    )
    for box in boxes:
        if box["checked"] != (box["name"] in wanted):
            return click(f"#{box['id']}")
    return click("#subbtn")


def click_checkboxes(page: Page, instruction: str) -> Step:
    names = instruction.removeprefix("Select ").removesuffix(" and click Submit.")
    return _toggle_to(page, set() if names == "nothing" else set(names.split(", ")))


def click_option(page: Page, instruction: str) -> Step:
    name = instruction.removeprefix("Select ").removesuffix(" and click Submit.")
    return _toggle_to(page, {name})


SHOWN_SUGGESTIONS = (
    "() => Array.from(document.querySelectorAll('ul.ui-autocomplete li'))"
    ".filter(li => li.offsetParent !== null).map(li => li.textContent)"
)
"""The suggestions visible on the page (read when the screenshot is taken)."""


def use_autocomplete(page: Page, instruction: str, shown: list[str]) -> Step:
    """Type the start, pick the suggestion the screenshot showed, submit.

    `shown` are the suggestions visible when the latest screenshot was taken: with none on
    it the model submits what it typed, as a model seeing no list would.
    """
    parts = quoted(instruction)
    start, end = parts[0], parts[1] if len(parts) > 1 else ""
    if page.input_value("#tags") == "":
        return type_into("#tags", start)
    for i, text in enumerate(shown):
        if text.startswith(start) and text.endswith(end):
            return click(f"ul.ui-autocomplete li >> nth={i}")
    return click("#subbtn")


def choose_list(page: Page, instruction: str) -> Step:
    """select_option on the native <select> by the option's text, then Submit."""
    wanted = instruction.removeprefix("Select ").removesuffix(" from the list and click Submit.")
    chosen = page.evaluate(
        "() => { const s = document.getElementById('options');"
        " return s.options[s.selectedIndex].textContent; }"
    )
    if chosen != wanted:
        return Step(tool="select_option", args={"option": wanted}, selector="#options")
    return click("#area button")


POLICIES: dict[str, Policy] = {
    "click-test": click_test,
    "click-test-2": click_test_2,
    "click-button": click_button,
    "click-link": click_link,
    "click-dialog": click_dialog,
    "click-widget": click_widget,
    "click-option": click_option,
    "click-checkboxes": click_checkboxes,
    "focus-text": focus_text,
    "enter-text": enter_text,
    "enter-password": enter_password,
    "login-user": login_user,
    "choose-list": choose_list,
}
TIMING_TASKS = ("use-autocomplete",)
"""Tasks whose scripted solver depends on what the screenshot showed (tools/bench_settle.py)."""


# --------------------------------------------------------------------------- the model


def task_of(url: str) -> str:
    """'http://127.0.0.1:8000/miniwob/click-button.html' -> 'click-button'."""
    return url.split("?")[0].rsplit("/", 1)[-1].removesuffix(".html")


class MiniWobScriptedModel(ScriptedModel):
    """Solves the tasks in `POLICIES` from the live page; ``done`` once the episode ended."""

    episode_over_answers: int = 0  # times it answered `done` because the page had ended

    def _next_step(self) -> Step:
        page = self.computer.page
        if page.evaluate("() => WOB_DONE_GLOBAL === true"):
            self.episode_over_answers += 1
            return done("the page ended the episode")
        instruction = " ".join(page.locator("#query").inner_text().split())
        task = task_of(page.url)
        if task == "use-autocomplete":
            return use_autocomplete(page, instruction, self.shown_at_capture)
        return POLICIES[task](page, instruction)

    shown_at_capture: list[str] = Field(default_factory=list)  # on the last screenshot

    def model_post_init(self, context: object) -> None:
        """Note, with each screenshot, what it shows (the page state at capture time)."""
        super().model_post_init(context)
        computer = self.computer
        if computer is None or getattr(computer, "_capture_noted", False):
            return
        capture = computer.screenshot

        def screenshot() -> object:
            shot = capture()
            with contextlib.suppress(Exception):
                if task_of(computer.page.url) == "use-autocomplete":
                    self.shown_at_capture = computer.page.evaluate(SHOWN_SUGGESTIONS)
            return shot

        computer.screenshot = screenshot
        computer._capture_noted = True

"""Tests for run records (internvl_agent.records) and the HTML replay (internvl_agent.report)."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape
from PIL import Image

from internvl_agent import records
from internvl_agent.agent.safety import make_redactor, redact_value
from internvl_agent.records import (
    ActionRecord,
    GroundingRecord,
    MessageSummary,
    OutcomeRecord,
    PhaseTimer,
    RunRecorder,
    StepRecord,
    StepTimings,
    ToolCallRecord,
    load_run,
    summarize_messages,
)
from internvl_agent.report import write_report

PACKAGE_ROOT = Path(records.__file__).resolve().parent.parent
XSS_SCRIPT = "<script>window.pwned=1</script>"
XSS_IMG = '</script><img src=x onerror="window.pwned2=1">'


def _image(colour: tuple[int, int, int] = (240, 240, 240), size: tuple[int, int] = (320, 200)):
    return Image.new("RGB", size, colour)


def _add_step(
    run: RunRecorder,
    index: int,
    *,
    colour: tuple[int, int, int] = (240, 240, 240),
    raw: str = 'click(target="OK button")',
    ok: bool = True,
    error: str | None = None,
    url: str | None = "https://example.test/form",
) -> StepRecord:
    """Save a screenshot and record a complete step, as the agent does."""
    image = _image(colour)
    raw_name, marked_name = run.save_screenshot(index, image, (100, 60), (80, 40, 120, 80))
    step = StepRecord(
        index=index,
        screenshot=raw_name,
        marked_screenshot=marked_name,
        screenshot_size=image.size,
        url=url,
        messages_summary=[MessageSummary(role="user", text="do it", images=1)],
        raw_model_output=raw,
        tool_call=ToolCallRecord(name="click", args={"target": "OK button"}),
        grounding=GroundingRecord(
            description="OK button", raw="[[250,200,375,400]]", box_norm=(250, 200, 375, 400)
        ),
        action=ActionRecord(name="click", args={"x": 100, "y": 60}, point_px=(100, 60)),
        outcome=OutcomeRecord(ok=ok, message="clicked" if ok else "nothing there"),
        error=error,
        timings=StepTimings(
            capture=0.1, model=1.0, grounding_model=0.5, grounding=0.05, action=0.2, total=2.0
        ),
    )
    run.record_step(step)
    return step


# --------------------------------------------------------------------------- redaction


def test_make_redactor_replaces_longest_value_first_and_ignores_empty() -> None:
    redact = make_redactor({"short": "abc", "long": "abcdef", "empty": ""})
    assert redact("x abcdef y abc z") == "x <secret:long> y <secret:short> z"
    assert redact("nothing here") == "nothing here"


def test_make_redactor_is_idempotent_and_catches_url_encoded_values() -> None:
    redact = make_redactor({"password": "secret", "token": "a b&c"})
    once = redact("pw=secret token=a%20b%26c q=a+b%26c raw=a b&c")
    assert once == ("pw=<secret:password> token=<secret:token> q=<secret:token> raw=<secret:token>")
    assert redact(once) == once  # "secret" inside "<secret:...>" is left alone
    # A value dressed up as a placeholder of an unknown name is still redacted.
    assert make_redactor({"pw": "hunter2"})("<secret:hunter2>") == "<secret:<secret:pw>>"


def test_redact_value_recurses_into_dicts_lists_and_keys() -> None:
    redact = make_redactor({"k": "hunter2"})
    data = {"a": ["x hunter2", ("hunter2",)], "hunter2": {"b": "hunter2"}, "n": 3, "f": None}
    assert redact_value(data, redact) == {
        "a": ["x <secret:k>", ["<secret:k>"]],
        "<secret:k>": {"b": "<secret:k>"},
        "n": 3,
        "f": None,
    }
    assert redact_value(data, None) is data


def test_make_redactor_without_values_is_identity() -> None:
    assert make_redactor({"a": ""})("keep a") == "keep a"


# --------------------------------------------------------------------------- recorder


def test_run_folder_and_run_json_written_at_start(tmp_path: Path) -> None:
    meta = {"model": "InternVL3-1B", "checkpoint": tmp_path / "ckpt"}  # Path: not JSON
    run = RunRecorder(tmp_path / "runs", task="Log in", meta=meta)
    assert run.path.parent == tmp_path / "runs"
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", run.path.name)
    info = json.loads((run.path / "run.json").read_text())
    assert info["status"] == "running"
    assert info["task"] == "Log in"
    assert info["meta"] == {"model": "InternVL3-1B", "checkpoint": str(tmp_path / "ckpt")}
    assert info["started_at"] and info["ended_at"] is None
    assert info["pid"] == os.getpid()
    assert (run.path / "steps.jsonl").read_text() == ""


def test_run_folders_are_unique_within_one_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = {RunRecorder(tmp_path, task="t").path for _ in range(5)}
    assert len(paths) == 5
    ids = iter(["aaaaaa", "aaaaaa", "bbbbbb"])
    monkeypatch.setattr(records, "_short_id", lambda: next(ids))
    monkeypatch.setattr(records, "datetime", _FrozenDatetime)
    first, second = RunRecorder(tmp_path, task="t"), RunRecorder(tmp_path, task="t")
    assert (first.path.name, second.path.name) == (
        "20250102-030405-aaaaaa",
        "20250102-030405-bbbbbb",
    )


class _FrozenDatetime(records.datetime):
    @classmethod
    def now(cls, tz: Any = None) -> records.datetime:  # type: ignore[override]
        return records.datetime(2025, 1, 2, 3, 4, 5, tzinfo=tz)


def test_each_step_is_on_disk_when_record_step_returns(tmp_path: Path) -> None:
    run = RunRecorder(tmp_path, task="t")
    for i in (1, 2, 3):
        step = _add_step(run, i)
        lines = (run.path / "steps.jsonl").read_text().splitlines()
        assert len(lines) == i
        assert StepRecord.model_validate_json(lines[-1]) == step
    assert run.step_count == 3


def test_framework_overhead_excludes_both_model_calls() -> None:
    t = StepTimings(capture=0.1, model=1.0, grounding_model=0.5, grounding=0.05, total=2.0)
    assert t.framework_overhead == pytest.approx(0.5)
    assert StepRecord(index=1, timings=t).framework_overhead == pytest.approx(0.5)
    assert StepTimings(model=1.0, total=0.999).framework_overhead == 0.0  # clock jitter
    assert json.loads(t.model_dump_json())["framework_overhead"] == pytest.approx(0.5)


def test_phase_timer_accumulates_phases_and_rejects_unknown_names() -> None:
    timer = PhaseTimer()
    with timer.phase("model"):
        pass
    with timer.phase("model"):
        sum(range(10000))
    t = timer.timings()
    assert 0 < t.model <= t.total
    assert t.capture == 0.0
    with pytest.raises(ValueError, match="unknown phase"), timer.phase("modle"):
        pass


def test_finish_rewrites_run_json_with_totals_and_the_report_follows(tmp_path: Path) -> None:
    run = RunRecorder(tmp_path, task="t", meta={"model": "m", "computer": "browser"})
    _add_step(run, 1)
    _add_step(run, 2, ok=False, error="boom")
    run.finish("done", answer="42")
    report = write_report(run.path)
    assert report == run.path / "report.html" and report.is_file()
    info = json.loads((run.path / "run.json").read_text())
    assert info["status"] == "done" and info["answer"] == "42"
    assert info["step_count"] == 2 and info["report"] == "report.html"
    assert info["ended_at"] and info["duration_s"] >= 0
    totals = info["totals"]
    assert totals["model"] == pytest.approx(2.0)
    assert totals["grounding_model"] == pytest.approx(1.0)
    assert totals["framework_overhead"] == pytest.approx(1.0)
    assert totals["steps_with_error"] == 1 and totals["failed_actions"] == 1
    assert not [p for p in run.path.iterdir() if p.name.startswith(".")]  # no temp files
    with pytest.raises(RuntimeError, match="already finished"):
        run.record_step(StepRecord(index=3))
    with pytest.raises(RuntimeError, match="already finished"):
        run.finish("done")


def test_finish_needs_a_final_status(tmp_path: Path) -> None:
    run = RunRecorder(tmp_path, task="t")
    with pytest.raises(ValueError):
        run.finish("running")
    assert not run.finished


def test_no_report_keeps_run_json_and_says_there_is_no_report(tmp_path: Path) -> None:
    run = RunRecorder(tmp_path, task="t")
    with pytest.raises(RuntimeError, match="not finished"):
        run.no_report()
    run.finish("done")
    assert json.loads((run.path / "run.json").read_text())["report"] == "report.html"
    run.no_report()
    info = json.loads((run.path / "run.json").read_text())
    assert info["status"] == "done" and info["report"] is None


def test_records_does_not_import_report() -> None:
    code = "import sys, internvl_agent.records; print('internvl_agent.report' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE_ROOT, timeout=60
    )
    assert out.stdout.strip() == "False", out.stderr


def test_context_manager_finishes_an_open_run_with_the_error(tmp_path: Path) -> None:
    with pytest.raises(ZeroDivisionError), RunRecorder(tmp_path, task="t") as run:
        _add_step(run, 1)
        1 / 0  # noqa: B018
    data = load_run(run.path)
    assert data.info.status == "error"
    assert data.info.error == "ZeroDivisionError: division by zero"
    assert len(data.steps) == 1


def test_save_screenshot_keeps_raw_lossless_and_marks_point_and_box(tmp_path: Path) -> None:
    run = RunRecorder(tmp_path, task="t")
    image = _image((240, 240, 240), (400, 300))
    image.putpixel((5, 5), (1, 2, 3))
    raw_name, marked_name = run.save_screenshot(7, image, point=(200, 150), box=(20, 30, 120, 90))
    assert (raw_name, marked_name) == ("step-007.png", "step-007-marked.png")
    raw = Image.open(run.path / raw_name)
    assert raw.size == image.size and raw.tobytes() == image.tobytes()
    marked = Image.open(run.path / marked_name).convert("RGB")
    assert marked.size == image.size
    r, g, b = marked.getpixel((200 + 13, 150))  # on the crosshair, beside the centre
    assert r > 200 and g < 60 and b < 60
    r, g, b = marked.getpixel((70, 32))  # on the top edge of the box
    assert r > 200 and 120 < g < 220 and b < 60
    assert marked.getpixel((300, 250)) == (240, 240, 240)  # away from both: untouched
    assert marked.getpixel((5, 5)) == (1, 2, 3)
    with pytest.raises(ValueError):
        run.save_screenshot(-1, image)


def test_phase_timer_moves_settling_out_of_the_overhead() -> None:
    timer = PhaseTimer()
    with timer.phase("action"):
        sum(range(20000))
    action = timer.timings().action
    timer.move("action", "settle", action / 2)
    timer.move("action", "settle", 10.0)  # never more than the phase had
    t = timer.timings()
    assert t.action == 0.0 and t.settle == pytest.approx(action)
    assert t.framework_overhead == pytest.approx(t.total - t.model - t.settle)
    with pytest.raises(ValueError, match="unknown phase"):
        timer.move("action", "setle", 1.0)


def test_marked_screenshot_is_written_by_the_writer_thread(tmp_path: Path) -> None:
    import threading

    run = RunRecorder(tmp_path, task="t")
    image = _image((240, 240, 240), (400, 300))
    decoded_on: list[str] = []

    def decode() -> Image.Image:  # a capture decoded only when the marked copy needs it
        decoded_on.append(threading.current_thread().name)
        return image

    png = records._encode(image, "PNG")
    names = run.save_screenshot(3, decode, (200, 150), None, png=png, background=True)
    assert names == ("step-003.png", "step-003-marked.png")
    assert (run.path / "step-003.png").read_bytes() == png  # the raw one at once, as given
    run.finish("done")  # waits for the writer
    assert decoded_on == ["internvl-record-writer"]
    marked = Image.open(run.path / "step-003-marked.png").convert("RGB")
    synchronous = RunRecorder(tmp_path, task="t")
    synchronous.save_screenshot(3, image, (200, 150), None, png=png)
    expected = Image.open(synchronous.path / "step-003-marked.png").convert("RGB")
    assert marked.tobytes() == expected.tobytes() != image.tobytes()


def test_writer_failures_are_logged_and_the_run_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = RunRecorder(tmp_path, task="t")

    def broken() -> Image.Image:
        raise OSError("disk gone")

    png = records._encode(_image(), "PNG")
    run.save_screenshot(1, broken, point=(3, 4), png=png, background=True)
    run.flush()
    assert "could not write" in caplog.text
    assert not (run.path / "step-001-marked.png").exists()
    _add_step(run, 2)
    run.finish("done")
    assert len(load_run(run.path).steps) == 1


@pytest.mark.parametrize("background", [False, True])
def test_a_step_with_nothing_to_mark_reuses_the_capture(tmp_path: Path, background: bool) -> None:
    run = RunRecorder(tmp_path, task="t")
    noise = Image.frombytes("RGB", (640, 400), os.urandom(640 * 400 * 3))  # large: jpg if drawn
    png = records._encode(noise, "PNG")

    def never() -> Image.Image:
        raise AssertionError("nothing to draw, so nothing to decode")

    raw_name, marked_name = run.save_screenshot(1, never, png=png, background=background)
    run.flush()
    assert marked_name == "step-001-marked.png"
    assert (run.path / marked_name).read_bytes() == (run.path / raw_name).read_bytes() == png


def test_marked_screenshot_is_jpeg_when_that_is_much_smaller(tmp_path: Path) -> None:
    run = RunRecorder(tmp_path, task="t")
    noise = Image.frombytes("RGB", (640, 400), os.urandom(640 * 400 * 3))
    raw_name, marked_name = run.save_screenshot(1, noise, point=(10, 10))
    assert raw_name == "step-001.png" and marked_name == "step-001-marked.jpg"
    assert Image.open(run.path / marked_name).format == "JPEG"
    assert Image.open(run.path / raw_name).tobytes() == noise.tobytes()


def test_summarize_messages_counts_images_and_truncates() -> None:
    from langchain_core.messages import HumanMessage, SystemMessage

    msgs = [
        SystemMessage("You are an agent. " * 50),
        HumanMessage(
            [
                {"type": "text", "text": "Task: log in"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "image", "base64": "AAAA", "mime_type": "image/png"},
            ]
        ),
        {"role": "assistant", "content": "ok"},
    ]
    out = summarize_messages(msgs, max_chars=40)
    assert [m.role for m in out] == ["system", "human", "assistant"]
    assert out[0].text.startswith("You are an agent.") and "(+" in out[0].text
    assert (out[1].text, out[1].images) == ("Task: log in", 2)
    assert (out[2].text, out[2].images) == ("ok", 0)


# --------------------------------------------------------------------------- reading back


def test_load_run_round_trips_steps(tmp_path: Path) -> None:
    run = RunRecorder(tmp_path, task="t")
    steps = [_add_step(run, 1), _add_step(run, 2)]
    run.finish("done")
    data = load_run(run.path)
    assert data.steps == steps and data.problems == [] and data.finished


def test_load_run_tolerates_a_cut_off_last_line(tmp_path: Path) -> None:
    run = RunRecorder(tmp_path, task="t")
    _add_step(run, 1)
    _add_step(run, 2)
    with open(run.path / "steps.jsonl", "a") as f:
        f.write('{"index": 3, "raw_model_output": "half a li')
    data = load_run(run.path)
    assert [s.index for s in data.steps] == [1, 2]
    assert len(data.problems) == 1 and "cut-off last line" in data.problems[0]
    assert not data.finished
    write_report(run.path)  # a crashed run still gets a report


def test_a_process_that_dies_keeps_run_json_and_finished_steps(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, sys.argv[2])
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_records import _add_step
        from internvl_agent.records import RunRecorder
        run = RunRecorder(sys.argv[1], task="crash test", meta={{"model": "m"}})
        _add_step(run, 1)
        _add_step(run, 2)
        print(run.path, flush=True)
        os._exit(1)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), str(PACKAGE_ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    run_dir = Path(proc.stdout.strip())
    data = load_run(run_dir)
    assert data.info.status == "running" and data.info.task == "crash test"
    assert [s.index for s in data.steps] == [1, 2] and data.problems == []
    assert all((run_dir / s.marked_screenshot).is_file() for s in data.steps)  # type: ignore[operator]
    assert not (run_dir / "report.html").exists()
    html_text = write_report(run_dir).read_text()
    assert "never finished" in html_text


# --------------------------------------------------------------------------- report in a browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # the browser extra is not installed: only the browser tests skip
    sync_playwright = None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if sync_playwright is None:
        pytest.skip("playwright is not installed (pip install internvl-agent[browser])")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class _Page:
    """A page opened on a report, collecting console errors and uncaught exceptions."""

    def __init__(self, browser: Any, report: Path) -> None:
        self.errors: list[str] = []
        self.page = browser.new_page()
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(report.as_uri())
        self.page.wait_for_load_state("load")

    def step(self) -> str:
        return self.page.get_attribute("#player", "data-step") or ""

    def src(self) -> str:
        return self.page.get_attribute("#shot", "src") or ""


@pytest.mark.slow
def test_report_player_steps_through_the_run(browser: Any, tmp_path: Path) -> None:
    run = RunRecorder(tmp_path, task="Book a table for two", meta={"model": "InternVL3-2B"})
    for i, colour in enumerate([(250, 0, 0), (0, 250, 0), (0, 0, 250)], start=1):
        _add_step(run, i, colour=colour, raw=f"step {i} output")
    run.finish("done", answer="Booked for 8pm")
    report = write_report(run.path)
    view = _Page(browser, report)
    page = view.page
    assert page.inner_text("#task") == "Book a table for two"
    assert page.inner_text("#step-count") == "3"
    assert page.locator(".step-item").count() == 3
    assert "Booked for 8pm" in page.inner_text("header")
    assert "InternVL3-2B" in page.inner_text("header")
    assert (view.step(), page.inner_text("#step-pos")) == ("0", "Step 1 of 3")
    assert view.src().startswith("data:image/png;base64,")
    assert page.is_disabled("#prev")
    assert "step 1 output" in page.inner_text(".raw-output")

    first_src = view.src()
    page.click("#next")
    assert (view.step(), page.inner_text("#step-pos")) == ("1", "Step 2 of 3")
    assert view.src() != first_src
    assert "step 2 output" in page.inner_text(".raw-output")
    page.keyboard.press("ArrowRight")
    assert view.step() == "2" and page.is_disabled("#next")
    page.keyboard.press("ArrowLeft")
    assert view.step() == "1"
    page.click(".step-item[data-i='0']")
    assert view.step() == "0"

    page.select_option("#speed", "800")
    page.click("#play")  # the page's CSP forbids eval, so wait with expect(), not wait_for_function
    expect(page.locator("#play")).to_have_class("on")
    expect(page.locator("#player")).to_have_attribute("data-step", "2", timeout=10_000)
    expect(page.locator("#play")).not_to_have_class("on")

    assert page.evaluate("document.querySelector('#shot').naturalWidth") == 320
    assert view.errors == []


def test_report_does_not_run_model_output(browser: Any, tmp_path: Path) -> None:
    evil = f"{XSS_SCRIPT} then {XSS_IMG} <!-- <script> -->"
    run = RunRecorder(tmp_path, task=f"task {XSS_IMG}", meta={"model": XSS_SCRIPT})
    _add_step(run, 1, raw=evil, error=evil, url=f"https://x.test/{XSS_IMG}")
    run.finish("failed", answer=evil, error=evil)
    report = write_report(run.path)
    text = report.read_text()
    assert XSS_SCRIPT not in text and XSS_IMG not in text
    view = _Page(browser, report)
    page = view.page
    assert page.evaluate("[window.pwned, window.pwned2]") == [None, None]
    assert page.locator("img").count() == 1  # only the screenshot element
    assert page.inner_text(".raw-output") == evil  # shown literally
    assert page.inner_text("#task") == f"task {XSS_IMG}"
    assert evil in page.inner_text("#run-error")
    assert view.errors == []


def test_report_of_a_run_without_steps(browser: Any, tmp_path: Path) -> None:
    run = RunRecorder(tmp_path, task="Nothing to do")
    run.finish("error", error="model failed to load: out of memory")
    report = write_report(run.path)
    view = _Page(browser, report)
    page = view.page
    assert page.inner_text("#step-count") == "0"
    assert "No steps were recorded." in page.inner_text("nav")
    assert "out of memory" in page.inner_text("#run-error")
    assert page.is_disabled("#next") and page.is_disabled("#play")
    page.keyboard.press("ArrowRight")
    assert view.errors == []


def test_report_links_screenshots_when_too_large_to_embed(browser: Any, tmp_path: Path) -> None:
    run = RunRecorder(tmp_path, task="t")
    _add_step(run, 1)
    _add_step(run, 2)
    run.finish("done")
    report = write_report(run.path, max_embed_bytes=1000)
    assert "base64," not in report.read_text()
    view = _Page(browser, report)
    page = view.page
    assert "linked, not embedded" in page.inner_text("#linked-note")
    assert view.src() == "step-001-marked.png"
    expect(page.locator("#shot")).to_have_js_property("naturalWidth", 320)
    assert view.errors == []


# --------------------------------------------------------------------------- redaction end to end


def test_secrets_never_reach_any_file(browser: Any, tmp_path: Path) -> None:
    """What the agent hands the recorder (redacted as GUIAgent does) leaves no secret in
    run.json, steps.jsonl or report.html."""
    password, token = 'p@ss<w"rd&1', "tok-3f9a77c1e2"
    redact = make_redactor({"password": password, "api_token": token, "unused": ""})
    run = RunRecorder(
        tmp_path,
        task=redact(f"Log in with {password}"),
        meta=redact_value({"model": "m", "headers": {"Authorization": f"Bearer {token}"}}, redact),
    )
    image = _image()
    raw_name, marked_name = run.save_screenshot(1, image, (10, 10))
    step = StepRecord(
        index=1,
        screenshot=raw_name,
        marked_screenshot=marked_name,
        url=f"https://x.test/login?pw={password}&t={token}".replace(" ", "+"),
        messages_summary=[MessageSummary(role="user", text=f"password is {password}")],
        raw_model_output=f'type(text="{password}") and {token}',
        tool_call=ToolCallRecord(name="type", args={"text": password}),
        action=ActionRecord(name="type_text", args={"text": password, token: [token]}),
        outcome=OutcomeRecord(ok=False, message=f"typed {password}"),
        error=f"failed after {token}",
    )
    run.record_step(StepRecord.model_validate(redact_value(step.model_dump(), redact)))
    run.finish("failed", answer=redact(f"used {password}"), error=redact(f"token {token} expired"))
    write_report(run.path)

    forms = set()
    for value in (password, token):
        for form in (value, html.escape(value), escape(value), json.dumps(value)[1:-1]):
            forms.add(form.encode())
    forms.add(json.dumps(password)[1:-1].replace("<", "\\u003c").replace("&", "\\u0026").encode())
    files = [p for p in run.path.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"run.json", "steps.jsonl", "report.html", raw_name}
    for path in files:
        blob = path.read_bytes()
        for form in forms:
            assert form not in blob, f"{form!r} written to {path.name}"
    steps_text = (run.path / "steps.jsonl").read_text()
    assert "<secret:password>" in steps_text and "<secret:api_token>" in steps_text
    view = _Page(browser, run.path / "report.html")
    assert "<secret:password>" in view.page.inner_text(".raw-output")
    assert view.errors == []

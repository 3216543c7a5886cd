"""MiniWoB++ harness: real task pages in headless Chromium, rewards read from the pages.

The scripted model (tests/support/miniwob_scripts.py) answers like InternVL, with 0..1000
coordinates of the latest screenshot computed from the live page; scoring 100% with it at scale
factors 1 and 2 proves the harness and the coordinate plumbing. Models that answer wrongly, give up,
raise, or are too slow for the page's timer show the score really comes from the page.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from internvl_agent.cli import app, parse_time_limit
from internvl_agent.computers.browser import BrowserComputer
from internvl_agent.errors import ConfigurationError
from internvl_agent.evaluation.miniwob import (
    DEFAULT_TASKS,
    NO_TIME_LIMIT_MS,
    TASK_VIEWPORT,
    EpisodeResult,
    MiniWobReport,
    TaskSummary,
    available_tasks,
    miniwob_html_dir,
    miniwob_table,
    read_reward,
    resolve_tasks,
    run_miniwob_eval,
    serve_directory,
    start_episode,
)
from tests.support.miniwob_scripts import (
    POLICIES,
    MiniWobScriptedModel,
    miniwob_skip_reason,
    task_of,
)
from tests.support.scripted_model import Step, call, click, done, raising

SKIP = miniwob_skip_reason()
needs_miniwob = pytest.mark.skipif(SKIP is not None, reason=f"{SKIP}")

STEPS = {"enter-text": 2, "click-option": 2, "enter-password": 3, "login-user": 3}


def _fewest_steps(task: str, instruction: str) -> set[int]:
    """Steps the scripted solver takes (click-checkboxes: one per box to tick, then Submit;
    choose-list: select_option then Submit, or Submit alone when the option is preselected)."""
    if task == "click-checkboxes":
        names = instruction.removeprefix("Select ").removesuffix(" and click Submit.")
        return {1 if names == "nothing" else len(names.split(", ")) + 1}
    if task == "choose-list":
        return {1, 2}
    return {STEPS.get(task, 1)}


class _Factory:
    """model_factory that keeps every model it built (one per worker, more after errors)."""

    def __init__(self, model_class: type[MiniWobScriptedModel] = MiniWobScriptedModel) -> None:
        self.model_class = model_class
        self.models: list[MiniWobScriptedModel] = []
        self.threads: set[int] = set()
        self._lock = threading.Lock()

    def __call__(self, computer: BrowserComputer) -> MiniWobScriptedModel:
        model = self.model_class(computer=computer)
        with self._lock:
            self.models.append(model)
            self.threads.add(threading.get_ident())
        return model


def _failures(report: MiniWobReport) -> list[tuple]:
    return [
        (e.task, e.instruction, e.reason, e.agent_status, e.agent_error, e.error)
        for e in report.episodes
        if not e.success
    ]


# --------------------------------------------------------------------------- the harness


@needs_miniwob
@pytest.mark.parametrize("dsf", [1.0, 2.0], ids=["dsf1", "dsf2"])
def test_scripted_model_scores_100_percent(dsf: float, tmp_path: Path) -> None:
    factory = _Factory()
    report = run_miniwob_eval(
        factory,
        list(POLICIES),
        episodes=1,
        concurrency=2,
        seed=3,
        device_scale_factor=dsf,
        record_dir=tmp_path / "runs",
    )
    assert not _failures(report)
    assert [e.task for e in report.episodes] == list(POLICIES)
    assert report.success_rate == 1.0 and report.mean_task_success_rate == 1.0
    for episode in report.episodes:
        assert episode.done and episode.raw_reward == 1.0 and episode.error is None
        assert episode.reward > 0.99  # time-scaled by core.js, but the timer is lifted
        assert episode.agent_status == "stopped"  # the harness stopped it once the page ended
        assert episode.instruction and episode.seed == 3
        assert episode.steps in _fewest_steps(episode.task, episode.instruction)
        assert 0 < episode.model_seconds <= episode.step_seconds <= episode.seconds
    assert len(factory.models) == 2 and len(factory.threads) == 2  # one model per worker
    assert sum(m.episode_over_answers for m in factory.models) == 0
    # the model saw device-pixel screenshots of the 160x210 task area
    record = Path(report.episodes[0].record_path or "")
    first = json.loads((record / "steps.jsonl").read_text().splitlines()[0])
    assert first["screenshot_size"] == [round(160 * dsf), round(210 * dsf)]

    data = json.loads(report.write_json(tmp_path / "report.json").read_text())
    assert data["overall"]["success_rate"] == 1.0 and data["overall"]["episodes"] == len(POLICIES)
    assert data["config"]["device_scale_factor"] == dsf
    assert data["config"]["episode_max_time_ms"] == NO_TIME_LIMIT_MS
    assert {t["task"] for t in data["tasks"]} == set(POLICIES)
    assert all(e["success"] for e in data["episodes"])


class WrongModel(MiniWobScriptedModel):
    """Clicks the wrong button, claims success without acting, gives up, or raises."""

    def _next_step(self) -> Step:
        task = task_of(self.computer.page.url)
        if task == "click-test-2":
            return click("#subbtn2")  # the page gives -1
        if task == "click-button":
            return done("cannot do it", success=False)
        if task == "focus-text":
            return raising(RuntimeError("model server down"))
        return done("all done")  # click-test: the agent says so, the page does not


@needs_miniwob
def test_the_page_not_the_agent_decides_success() -> None:
    tasks = ["click-test-2", "click-button", "focus-text", "click-test"]
    report = run_miniwob_eval(_Factory(WrongModel), tasks, episodes=1, concurrency=2)
    by_task = {e.task: e for e in report.episodes}
    assert not any(e.success for e in report.episodes)
    assert all(e.error is None for e in report.episodes)  # agent failures, not harness ones
    wrong = by_task["click-test-2"]
    assert wrong.done and wrong.raw_reward == -1.0 and wrong.reward == -1.0
    for task, status in (("click-button", "failed"), ("click-test", "done")):
        episode = by_task[task]
        assert not episode.done and episode.raw_reward == 0.0 and episode.agent_status == status
    crashed = by_task["focus-text"]
    assert crashed.agent_status == "error" and "model server down" in (crashed.agent_error or "")
    overall = report.overall()
    assert overall.successes == 0 and overall.agent_errors == 1 and overall.harness_errors == 0
    assert overall.mean_reward == pytest.approx(-0.25)


class SlowModel(MiniWobScriptedModel):
    """Waits 1.5 s on a freshly loaded task page, then solves it."""

    def _next_step(self) -> Step:
        page = self.computer.page
        if not page.evaluate("() => WOB_DONE_GLOBAL") and page.evaluate("performance.now()") < 1500:
            return call("wait", seconds=1.5)
        return super()._next_step()


@needs_miniwob
def test_a_time_limit_is_the_pages_own_timer() -> None:
    report = run_miniwob_eval(_Factory(SlowModel), ["click-test"], episodes=1, time_limit=1.0)
    (episode,) = report.episodes
    assert report.config["episode_max_time_ms"] == 1000
    # core.js ended the episode during the 1.5 s wait; the harness then stopped the agent
    assert episode.done and not episode.success
    assert episode.raw_reward == -1.0 and episode.reason == "timed out" and episode.steps == 1


@needs_miniwob
def test_episode_protocol_on_a_task_page() -> None:
    with (
        serve_directory(miniwob_html_dir()) as base,
        BrowserComputer(viewport=TASK_VIEWPORT) as computer,
    ):
        page = computer.page
        # the seed decides the episode
        url = f"{base}miniwob/enter-text.html"
        names = [start_episode(computer, url, seed=s) for s in (11, 12, 11)]
        assert names[0] == names[2] != names[1] and names[0].startswith("Enter ")
        # by default the page's 10 s timer is lifted; a time limit is the page's own timer
        assert page.evaluate("core.EPISODE_MAX_TIME") == NO_TIME_LIMIT_MS
        url = f"{base}miniwob/click-test.html"
        start_episode(computer, url, seed=0, max_time_ms=200)
        page.wait_for_timeout(400)
        assert read_reward(page, url) == {
            "done": True,
            "reward": -1,
            "raw_reward": -1,
            "reason": "timed out",
        }
        assert start_episode(computer, url, seed=5, max_time_ms=None) == "Click the button."
        assert page.evaluate("core.EPISODE_MAX_TIME") == 10000  # click-test's own
        # the HUD beside the task is hidden: nothing scrolls sideways
        assert page.evaluate("[window.scrollX, document.documentElement.scrollWidth]") == [0, 160]
        assert read_reward(page, url) == {
            "done": False,
            "reward": 0,
            "raw_reward": 0,
            "reason": None,
        }
        page.click("#subbtn")
        ended = read_reward(page, url)
        assert ended["done"] and ended["raw_reward"] == 1.0 and ended["reason"] is None
        page.click("#sync-task-cover")  # START would begin a new episode and reset the reward
        assert read_reward(page, url) == ended
        computer.navigate(f"{base}miniwob/click-button.html")
        left = read_reward(page, url)
        assert not left["done"] and "left the task page" in left["reason"]


def _html_with_a_broken_task(root: Path) -> Path:
    real = miniwob_html_dir()
    (root / "miniwob").mkdir(parents=True)
    for sub in ("core", "common"):
        (root / sub).symlink_to(real / sub)
    (root / "miniwob" / "click-test.html").symlink_to(real / "miniwob" / "click-test.html")
    (root / "miniwob" / "broken.html").write_text("<!doctype html><p>no MiniWoB core here</p>")
    return root


class _FlakyFactory(_Factory):
    """Raises on its first call, then builds scripted models."""

    def __call__(self, computer: BrowserComputer) -> MiniWobScriptedModel:
        if not self.threads:
            self.threads.add(0)
            raise RuntimeError("no weights here")
        return super().__call__(computer)


@needs_miniwob
def test_failing_episodes_do_not_stop_the_eval(tmp_path: Path) -> None:
    factory = _FlakyFactory()
    seen: list[EpisodeResult] = []
    report = run_miniwob_eval(
        factory,
        "broken,click-test",
        episodes=2,
        seed=7,
        html_dir=_html_with_a_broken_task(tmp_path / "html"),
        load_timeout=1.0,
        on_episode=seen.append,
    )
    no_model, no_page, *ok = report.episodes
    assert [(e.task, e.episode, e.seed) for e in report.episodes] == [
        ("broken", 0, 7),
        ("broken", 1, 8),
        ("click-test", 0, 7),
        ("click-test", 1, 8),
    ]
    assert "could not start the browser or model: no weights here" in (no_model.error or "")
    assert "could not start the episode" in (no_page.error or "")
    assert all(e.success and e.error is None for e in ok)
    assert len(factory.models) == 2  # the browser and model were rebuilt after each error
    assert len(seen) == 4
    summary = {s.task: s for s in report.task_summaries()}
    assert summary["broken"].harness_errors == 2 and summary["click-test"].success_rate == 1.0
    assert report.overall().success_rate == 0.5


# --------------------------------------------------------------------------- the CLI


@needs_miniwob
def test_cli_with_the_tiny_checkpoint(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    args = ["--tasks", "click-test", "--episodes", "1", "--max-steps", "2", "-o", str(out)]
    args += ["--model", str(tiny_checkpoint), "--device", "cpu", "--max-tiles", "1"]
    result = CliRunner().invoke(app, ["eval", "miniwob", *args, "--max-tokens", "32"])
    assert result.exit_code == 0, result.output
    assert "noise" in result.output and "overall" in result.output
    data = json.loads(out.read_text())
    (episode,) = data["episodes"]
    assert episode["error"] is None and episode["instruction"] == "Click the button."
    assert 1 <= episode["steps"] <= 2 and episode["model_seconds"] > 0
    assert data["config"]["model"] == str(tiny_checkpoint)
    assert data["overall"]["episodes"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tasks", "click-buton"], "did you mean click-button"),
        (["--time-limit", "soon"], "--time-limit"),
        (["--viewport", "160by210"], "WIDTHxHEIGHT"),
    ],
)
def test_cli_rejects_bad_options(args: list[str], message: str) -> None:
    if miniwob_skip_reason() and "--tasks" in args:
        pytest.skip(miniwob_skip_reason() or "")
    result = CliRunner().invoke(app, ["eval", "miniwob", *args])
    assert result.exit_code == 2 and message in result.output


# --------------------------------------------------------------------------- pieces


@pytest.mark.skipif(importlib.util.find_spec("miniwob") is None, reason="miniwob is not installed")
def test_task_names() -> None:
    known = available_tasks()
    assert len(known) >= 100 and set(DEFAULT_TASKS) <= set(known) and set(POLICIES) <= set(known)
    assert resolve_tasks(None) == list(DEFAULT_TASKS)
    assert resolve_tasks("click-test, miniwob.enter-text,click-test") == [
        "click-test",
        "enter-text",
    ]
    assert resolve_tasks(["all"]) == known
    with pytest.raises(ConfigurationError, match="unknown MiniWoB"):
        resolve_tasks(["no-such-task"])
    with pytest.raises(ConfigurationError, match="no MiniWoB"):
        resolve_tasks(" , ")


def test_time_limit_parsing() -> None:
    assert parse_time_limit("none") is None and parse_time_limit("0") is None
    assert parse_time_limit("task") == "task" and parse_time_limit("12.5") == 12.5
    with pytest.raises(ConfigurationError):
        parse_time_limit("-3")


def _episode(task: str, **kw: object) -> EpisodeResult:
    return EpisodeResult(task=task, episode=0, seed=0, **kw)  # type: ignore[arg-type]


def test_summaries_and_table() -> None:
    episodes = [
        _episode("a", done=True, raw_reward=1.0, reward=0.8, steps=2, step_seconds=1.0),
        _episode("a", done=True, raw_reward=-1.0, reward=-1.0, steps=4, step_seconds=3.0),
        _episode("b", error="page did not load"),
        _episode("b", done=False, raw_reward=0.0, steps=3, step_seconds=3.0, agent_status="error"),
    ]
    report = MiniWobReport(episodes, {"tasks": ["a", "b"]})
    a, b = report.task_summaries()
    assert (a.successes, a.success_rate, a.mean_steps, a.seconds_per_step) == (1, 0.5, 3.0, 4 / 6)
    assert a.mean_reward == 0.0
    assert (b.success_rate, b.harness_errors, b.agent_errors, b.mean_steps) == (0.0, 1, 1, 3.0)
    overall = report.overall()
    assert isinstance(overall, TaskSummary) and overall.episodes == 4
    assert overall.success_rate == 0.25 and report.mean_task_success_rate == 0.25
    console = Console(record=True, width=120)
    console.print(miniwob_table(report))
    text = console.export_text()
    assert "overall" in text and "1/2" in text and "50.0%" in text and "0/2" in text

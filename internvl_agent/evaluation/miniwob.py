"""MiniWoB++ evaluation: the GUIAgent on MiniWoB++ task pages in headless Chromium.

Every number comes from the task page itself; the harness never judges success. One episode
(the same steps as miniwob's own SeleniumInstance and BrowserGym's MiniWoB tasks):

1. load ``miniwob/<task>.html`` from a local HTTP server on 127.0.0.1 serving the ``miniwob``
   package's ``html`` folder (a fresh page load per episode); its onload shows the START cover;
2. hide the human display (reward HUD and click canvas, which sit right of the 160x210 task
   and would make the page scroll sideways) with a style sheet;
3. ``Math.seedrandom(seed); core.EPISODE_MAX_TIME = ...; core.startEpisodeReal()``, wait for
   ``WOB_TASK_READY``, read the instruction with ``core.getUtterance()`` (the ``#query`` text);
   then make ``core.startEpisodeReal`` a no-op, so that a click on the START cover after the
   episode ended cannot start another episode and reset the reward globals;
4. run the agent on that page (no start_url) with the instruction as its task; after every
   step the harness reads ``WOB_DONE_GLOBAL`` and stops the agent once the page ended the
   episode;
5. read ``WOB_DONE_GLOBAL``, ``WOB_REWARD_GLOBAL``, ``WOB_RAW_REWARD_GLOBAL`` and
   ``WOB_REWARD_REASON`` from the page. success = done and raw reward > 0 (BrowserGym's rule;
   MiniWoB's partial credit, e.g. click-checkboxes, is in ``raw_reward``). An episode the page
   did not end scores reward 0, like the miniwob gym environment.

Time limit: core.js ends an episode after ``core.EPISODE_MAX_TIME`` (10 s unless the task sets
another) with reward -1, and scales rewards of most tasks by the time left. A VLM step takes
seconds, so by default the limit is lifted (``EPISODE_MAX_TIME`` = 2^31-1 ms, the longest
``setTimeout`` delay; BrowserGym uses 1000 s); time-scaled rewards then equal the raw reward.
``time_limit=<seconds>`` sets a limit and ``time_limit="task"`` keeps the page's own.

Concurrency: each worker is a thread with its own BrowserComputer (sync Playwright is bound
to the thread that launched it) and its own model from ``model_factory(computer)``; episodes
are shared out from one queue. A failure in one episode (page does not load, the agent
raises, the browser dies) is recorded in that episode's `error`, the worker's browser and
model are rebuilt, and the evaluation goes on.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib.util
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rich.table import Table

from internvl_agent.errors import ConfigurationError, InternVLAgentError
from internvl_agent.evaluation.report import format_rate, format_seconds, ratio, write_json

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from playwright.sync_api import Page

    from internvl_agent.computers.browser import BrowserComputer
    from internvl_agent.records import StepRecord

__all__ = [
    "DEFAULT_TASKS",
    "EpisodeResult",
    "EpisodeSetupError",
    "MiniWobReport",
    "TaskSummary",
    "available_tasks",
    "episode_max_time_ms",
    "miniwob_html_dir",
    "miniwob_table",
    "read_reward",
    "resolve_tasks",
    "run_miniwob_eval",
    "serve_directory",
    "start_episode",
]

ModelFactory = Callable[["BrowserComputer"], "BaseChatModel"]
"""Builds one worker's model; receives that worker's browser (most factories ignore it)."""

TimeLimit = float | Literal["task"] | None

DEFAULT_TASKS: tuple[str, ...] = (
    "click-test",
    "click-test-2",
    "click-button",
    "click-link",
    "click-dialog",
    "click-option",
    "click-checkboxes",
    "click-widget",
    "focus-text",
    "enter-text",
    "enter-password",
    "login-user",
)
"""Single-screen tasks a GUI agent can do with click and type: the CLI's default set."""

TASK_VIEWPORT = (160, 210)
"""The MiniWoB task area in CSS pixels (what the miniwob environment crops screenshots to)."""

NO_TIME_LIMIT_MS = 2**31 - 1
"""The longest setTimeout delay: core.js's episode timer never fires."""

HIDE_DISPLAY_CSS = "#reward-display, #click-canvas { display: none !important; }"

PAGE_READY_JS = (
    "() => typeof core !== 'undefined' && typeof genProblem === 'function' "
    "&& document.getElementById('sync-task-cover') !== null"
)

START_EPISODE_JS = """({seed, maxTime}) => {
  Math.seedrandom(seed);
  if (maxTime !== null) { core.EPISODE_MAX_TIME = maxTime; }
  core.startEpisodeReal();
  core.startEpisodeReal = function () {};  // one episode per page load
  window.scrollTo(0, 0);
}"""

UTTERANCE_JS = "() => core.getUtterance()"

REWARD_JS = """() => ({
  done: WOB_DONE_GLOBAL === true,
  reward: Number(WOB_REWARD_GLOBAL),
  raw_reward: Number(WOB_RAW_REWARD_GLOBAL),
  reason: WOB_REWARD_REASON === null || WOB_REWARD_REASON === undefined
    ? null : String(WOB_REWARD_REASON),
})"""

DONE_JS = "() => WOB_DONE_GLOBAL === true"


# --------------------------------------------------------------------------- tasks


def miniwob_html_dir(html_dir: str | Path | None = None) -> Path:
    """The folder holding ``miniwob/`` and ``core/``: `html_dir`, else the miniwob package's.

    Found without importing miniwob (its import registers gymnasium environments).
    """
    if html_dir is not None:
        path = Path(html_dir).expanduser()
    else:
        spec = importlib.util.find_spec("miniwob")
        if spec is None or not spec.submodule_search_locations:
            raise ConfigurationError(
                "MiniWoB++ is not installed: pip install miniwob (or pass html_dir= to a "
                "miniwob-plusplus checkout's miniwob/html folder)"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / "html"
    if not (path / "miniwob").is_dir() or not (path / "core" / "core.js").is_file():
        raise ConfigurationError(f"{path} has no miniwob/ task pages and core/core.js")
    return path


def available_tasks(html_dir: str | Path | None = None) -> list[str]:
    """Names of the MiniWoB++ task pages (``click-button``, ...), sorted."""
    folder = miniwob_html_dir(html_dir) / "miniwob"
    return sorted(path.stem for path in folder.glob("*.html"))


def resolve_tasks(
    tasks: Iterable[str] | str | None, html_dir: str | Path | None = None
) -> list[str]:
    """Task names from a list or comma-separated text; None = DEFAULT_TASKS, "all" = every task.

    ConfigurationError for an unknown name, with the closest known names.
    """
    known = available_tasks(html_dir)
    if tasks is None:
        return list(DEFAULT_TASKS)
    items = [tasks] if isinstance(tasks, str) else list(tasks)
    names: list[str] = []
    for item in items:
        for name in (part.strip() for part in item.split(",")):
            if not name:
                continue
            name = name.removeprefix("miniwob.").removesuffix(".html")
            if name == "all":
                names.extend(known)
                continue
            if name not in known:
                close = difflib.get_close_matches(name, known, n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise ConfigurationError(f"unknown MiniWoB++ task {name!r}{hint}")
            names.append(name)
    unique = list(dict.fromkeys(names))
    if not unique:
        raise ConfigurationError("no MiniWoB++ task given")
    return unique


# --------------------------------------------------------------------------- server


class _QuietHandler(SimpleHTTPRequestHandler):
    """Static files without a log line per request; never cached."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


@contextlib.contextmanager
def serve_directory(directory: str | Path) -> Iterator[str]:
    """Serve `directory` on 127.0.0.1 (a free port) in a thread; yields the base URL (ends /)."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="miniwob-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --------------------------------------------------------------------------- results


@dataclass
class EpisodeResult:
    """One episode: what the page said, what the agent did, what went wrong.

    done / reward / raw_reward / reason are the page's WOB_DONE_GLOBAL, WOB_REWARD_GLOBAL,
    WOB_RAW_REWARD_GLOBAL and WOB_REWARD_REASON when the agent stopped. `error` is a harness
    failure (the episode could not be run or read); agent failures are in agent_status.
    """

    task: str
    episode: int
    seed: int
    instruction: str | None = None
    done: bool = False
    reward: float = 0.0
    raw_reward: float = 0.0
    reason: str | None = None
    agent_status: str | None = None
    agent_error: str | None = None
    answer: str | None = None
    steps: int = 0
    seconds: float = 0.0
    step_seconds: float = 0.0
    model_seconds: float = 0.0
    error: str | None = None
    record_path: str | None = None

    @property
    def success(self) -> bool:
        """The page ended the episode with a positive raw reward."""
        return self.done and self.raw_reward > 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "success": self.success}


@dataclass
class TaskSummary:
    """Aggregates over some episodes (one task, or all of them for "overall")."""

    task: str
    episodes: int
    successes: int
    success_rate: float
    mean_reward: float
    mean_steps: float
    seconds_per_step: float
    model_seconds_per_step: float
    harness_errors: int
    agent_errors: int

    @classmethod
    def of(cls, task: str, episodes: Sequence[EpisodeResult]) -> TaskSummary:
        """Success rate and mean raw reward over all episodes (harness errors count as 0);
        steps and timings over the episodes that ran."""
        ran = [e for e in episodes if e.error is None]
        steps = sum(e.steps for e in ran)
        successes = sum(e.success for e in episodes)
        return cls(
            task=task,
            episodes=len(episodes),
            successes=successes,
            success_rate=ratio(successes, len(episodes)),
            mean_reward=ratio(sum(e.raw_reward for e in episodes), len(episodes)),
            mean_steps=ratio(steps, len(ran)),
            seconds_per_step=ratio(sum(e.step_seconds for e in ran), steps),
            model_seconds_per_step=ratio(sum(e.model_seconds for e in ran), steps),
            harness_errors=len(episodes) - len(ran),
            agent_errors=sum(e.agent_status == "error" for e in ran),
        )


@dataclass
class MiniWobReport:
    """Every episode of an evaluation, the settings it ran with, and summaries."""

    episodes: list[EpisodeResult]
    config: dict[str, Any]
    started_at: str = ""
    wall_seconds: float = 0.0

    @property
    def tasks(self) -> list[str]:
        """Task names in the order they were asked for."""
        return list(self.config.get("tasks") or dict.fromkeys(e.task for e in self.episodes))

    def task_summaries(self) -> list[TaskSummary]:
        """One summary per task."""
        return [
            TaskSummary.of(task, [e for e in self.episodes if e.task == task])
            for task in self.tasks
        ]

    def overall(self) -> TaskSummary:
        """Summary over every episode (equal weight per episode)."""
        return TaskSummary.of("overall", self.episodes)

    @property
    def success_rate(self) -> float:
        """Share of all episodes that succeeded."""
        return self.overall().success_rate

    @property
    def mean_task_success_rate(self) -> float:
        """Mean of the per-task success rates (MiniWoB papers' headline number)."""
        summaries = self.task_summaries()
        return ratio(sum(s.success_rate for s in summaries), len(summaries))

    def to_dict(self) -> dict[str, Any]:
        """The JSON report: config, summaries, every episode."""
        return {
            "benchmark": "miniwob++",
            "started_at": self.started_at,
            "wall_seconds": round(self.wall_seconds, 3),
            "config": self.config,
            "overall": asdict(self.overall()),
            "mean_task_success_rate": self.mean_task_success_rate,
            "tasks": [asdict(s) for s in self.task_summaries()],
            "episodes": [e.to_dict() for e in self.episodes],
        }

    def write_json(self, path: str | Path) -> Path:
        """Write `to_dict()` to `path`; returns it."""
        return write_json(path, self.to_dict())


# --------------------------------------------------------------------------- table


def _task_row(summary: TaskSummary) -> list[str]:
    return [
        summary.task,
        f"{summary.successes}/{summary.episodes}",
        format_rate(summary.success_rate),
        f"{summary.mean_reward:+.2f}",
        f"{summary.mean_steps:.1f}",
        format_seconds(summary.seconds_per_step),
        format_seconds(summary.model_seconds_per_step),
        str(summary.harness_errors) if summary.harness_errors else "-",
    ]


def miniwob_table(report: MiniWobReport) -> Table:
    """Per task and overall: successes/episodes, success rate, mean raw reward, mean steps,
    seconds per step (all / in model calls) and harness errors (episodes that could not be
    run: page did not load, browser crashed; they count as failures)."""
    table = Table(title="MiniWoB++ evaluation", title_justify="left")
    for name, justify in (
        ("task", "left"),
        ("success", "right"),
        ("rate", "right"),
        ("reward", "right"),
        ("steps", "right"),
        ("s/step", "right"),
        ("model s/step", "right"),
        ("errors", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for summary in report.task_summaries():
        table.add_row(*_task_row(summary))
    table.add_section()
    table.add_row(*_task_row(report.overall()), style="bold")
    return table


# --------------------------------------------------------------------------- one episode


class EpisodeSetupError(InternVLAgentError):
    """The task page could not be loaded or its episode started."""


@dataclass(frozen=True)
class _Settings:
    """What every episode needs to know."""

    base_url: str
    max_steps: int
    max_time_ms: int | None
    load_timeout: float
    record_root: Path
    keep_records: bool
    agent_kwargs: Mapping[str, Any]


def episode_max_time_ms(time_limit: TimeLimit) -> int | None:
    """core.EPISODE_MAX_TIME for a time_limit; None keeps the page's own."""
    if time_limit is None:
        return NO_TIME_LIMIT_MS
    if time_limit == "task":
        return None
    if isinstance(time_limit, bool) or not isinstance(time_limit, int | float):
        raise ConfigurationError(f"time_limit must be seconds, 'task' or None, got {time_limit!r}")
    if not 0 < time_limit <= NO_TIME_LIMIT_MS / 1000:
        raise ConfigurationError(f"time_limit must be > 0 seconds, got {time_limit}")
    return round(time_limit * 1000)


def start_episode(
    computer: BrowserComputer,
    url: str,
    seed: int,
    *,
    max_time_ms: int | None = NO_TIME_LIMIT_MS,
    load_timeout: float = 15.0,
) -> str:
    """Load a task page, start one seeded episode on it, return its instruction.

    max_time_ms: core.EPISODE_MAX_TIME (None keeps the page's own). After this the page
    cannot start another episode. EpisodeSetupError when the page fails to load or start.
    """
    from playwright.sync_api import Error as PlaywrightError

    page = computer.page
    timeout = load_timeout * 1000
    try:
        response = page.goto(url, wait_until="load", timeout=timeout)
        if response is not None and response.status >= 400:
            raise EpisodeSetupError(f"the task page {url} answered HTTP {response.status}")
        page.wait_for_function(PAGE_READY_JS, timeout=timeout)
        page.add_style_tag(content=HIDE_DISPLAY_CSS)
        page.evaluate(START_EPISODE_JS, {"seed": seed, "maxTime": max_time_ms})
        page.wait_for_function("() => WOB_TASK_READY === true", timeout=timeout)
        utterance = page.evaluate(UTTERANCE_JS)
    except PlaywrightError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EpisodeSetupError(f"could not start the episode on {url}: {first}") from exc
    if isinstance(utterance, dict):
        utterance = utterance.get("utterance")
    instruction = " ".join(str(utterance or "").split())
    if not instruction:
        raise EpisodeSetupError(f"{url} gave no instruction (core.getUtterance() is empty)")
    return instruction


def _same_document(page: Page, url: str) -> bool:
    return not page.is_closed() and page.url.split("#")[0] == url


def _page_done(page: Page, url: str) -> bool:
    """Whether the task page has ended its episode (False when it cannot be read)."""
    try:
        return _same_document(page, url) and bool(page.evaluate(DONE_JS))
    except Exception:
        return False


def read_reward(page: Page, url: str) -> dict[str, Any]:
    """The page's verdict: {"done", "reward", "raw_reward", "reason"} from its WOB_* globals.

    When the page is no longer the task page `url` (closed, or the agent navigated away),
    done is False and reason says so.
    """
    if not _same_document(page, url):
        where = "closed" if page.is_closed() else f"at {page.url}"
        reason = f"the agent left the task page (it is {where}); no reward"
        return {"done": False, "reward": 0.0, "raw_reward": 0.0, "reason": reason}
    return page.evaluate(REWARD_JS)


def _apply_reward(info: Mapping[str, Any], result: EpisodeResult) -> None:
    result.done = bool(info["done"])
    result.reason = info["reason"]
    if result.done:  # an unfinished episode scores 0, like the gym environment
        result.reward = float(info["reward"])
        result.raw_reward = float(info["raw_reward"])


def _run_episode(
    computer: BrowserComputer,
    model: BaseChatModel,
    task: str,
    episode: int,
    seed: int,
    settings: _Settings,
) -> EpisodeResult:
    """Run one episode on `computer` (from the thread that launched it); never raises."""
    from internvl_agent.agent.agent import GUIAgent

    result = EpisodeResult(task=task, episode=episode, seed=seed)
    url = f"{settings.base_url}miniwob/{task}.html"
    try:
        result.instruction = start_episode(
            computer,
            url,
            seed,
            max_time_ms=settings.max_time_ms,
            load_timeout=settings.load_timeout,
        )
        page = computer.page
        agent_ref: list[GUIAgent] = []

        def on_step(record: StepRecord) -> None:
            result.step_seconds += record.timings.total
            result.model_seconds += record.timings.model + record.timings.grounding_model
            if _page_done(page, url):
                agent_ref[0].stop()

        options: dict[str, Any] = {"allowed_domains": ["127.0.0.1"]}
        options.update(settings.agent_kwargs)
        agent = GUIAgent(
            model,
            computer,
            max_steps=settings.max_steps,
            record_dir=settings.record_root / task,
            on_step=on_step,
            **options,
        )
        agent_ref.append(agent)
        started = time.monotonic()
        outcome = agent.run(result.instruction)
        result.seconds = time.monotonic() - started
        result.agent_status, result.agent_error = outcome.status, outcome.error
        result.answer, result.steps = outcome.answer, outcome.steps
        if settings.keep_records and outcome.record_path is not None:
            result.record_path = str(outcome.record_path)
        _apply_reward(read_reward(page, url), result)
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    return result


# --------------------------------------------------------------------------- workers


@dataclass(frozen=True)
class _Job:
    task: str
    episode: int
    seed: int


@dataclass
class _BrowserOptions:
    viewport: tuple[int, int]
    device_scale_factor: float
    headless: bool
    browser_path: str | None


@dataclass
class _Worker:
    """One thread's browser and model; rebuilt after an episode that failed in the harness."""

    model_factory: ModelFactory
    browser: _BrowserOptions
    settings: _Settings
    on_episode: Callable[[EpisodeResult], None] | None
    results: list[EpisodeResult] = field(default_factory=list)
    computer: BrowserComputer | None = None
    model: BaseChatModel | None = None

    def _ready(self) -> tuple[BrowserComputer, BaseChatModel]:
        from internvl_agent.computers.browser import BrowserComputer

        if self.computer is None or self.model is None:
            computer = BrowserComputer(
                headless=self.browser.headless,
                viewport=self.browser.viewport,
                device_scale_factor=self.browser.device_scale_factor,
                browser_path=self.browser.browser_path,
            )
            self.computer = computer
            computer.launch()
            self.model = self.model_factory(computer)
        return self.computer, self.model

    def _reset(self) -> None:
        if self.computer is not None:
            self.computer.close()
        self.computer = self.model = None

    def run(self, jobs: queue.SimpleQueue[_Job]) -> list[EpisodeResult]:
        """Take jobs until the queue is empty; one result per job."""
        try:
            while True:
                try:
                    job = jobs.get_nowait()
                except queue.Empty:
                    break
                try:
                    computer, model = self._ready()
                except Exception as exc:
                    result = EpisodeResult(job.task, job.episode, job.seed)
                    result.error = f"could not start the browser or model: {exc}"
                else:
                    result = _run_episode(
                        computer, model, job.task, job.episode, job.seed, self.settings
                    )
                if result.error is not None:
                    self._reset()
                self.results.append(result)
                if self.on_episode is not None:
                    with contextlib.suppress(Exception):
                        self.on_episode(result)
        finally:
            self._reset()
        return self.results


# --------------------------------------------------------------------------- the evaluation


def run_miniwob_eval(
    model_factory: ModelFactory,
    tasks: Iterable[str] | str | None = None,
    episodes: int = 5,
    concurrency: int = 1,
    *,
    seed: int = 0,
    max_steps: int = 10,
    record_dir: str | Path | None = None,
    time_limit: TimeLimit = None,
    viewport: tuple[int, int] = TASK_VIEWPORT,
    device_scale_factor: float = 2.0,
    headless: bool = True,
    browser_path: str | None = None,
    html_dir: str | Path | None = None,
    load_timeout: float = 15.0,
    agent_kwargs: Mapping[str, Any] | None = None,
    on_episode: Callable[[EpisodeResult], None] | None = None,
    model_name: str | None = None,
) -> MiniWobReport:
    """Run `episodes` episodes of each task with the GUIAgent; rewards read from the pages.

    model_factory: ``factory(computer) -> chat model``, called once per worker (and again
        after a harness failure) in the worker's thread; e.g.
        ``lambda _: ChatInternVL(model=..., max_tiles=6)``.
    tasks: names, comma-separated text, "all", or None for DEFAULT_TASKS.
    concurrency: workers, each a thread with its own browser and model.
    seed: episode i of every task uses seed + i, whatever the concurrency.
    max_steps: the agent's step cap per episode.
    record_dir: keep every agent run record under ``record_dir/<task>/``; None writes them to
        a temporary folder that is deleted at the end.
    time_limit: None lifts core.js's episode timer, seconds sets it, "task" keeps the page's.
    viewport, device_scale_factor: the browser page; the default is the 160x210 task area at
        2x, so screenshots are 320x420.
    agent_kwargs: more GUIAgent options (max_tiles, screenshots_in_history...).
    on_episode: called with each finished episode, from the worker's thread.
    model_name: what the report's config names as the model.
    """
    from internvl_agent.computers.chromium import find_browser

    html = miniwob_html_dir(html_dir)
    names = resolve_tasks(tasks, html)
    if not isinstance(episodes, int) or episodes < 1:
        raise ConfigurationError(f"episodes must be an integer >= 1, got {episodes!r}")
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigurationError(f"concurrency must be an integer >= 1, got {concurrency!r}")
    if not isinstance(max_steps, int) or max_steps < 1:
        raise ConfigurationError(f"max_steps must be an integer >= 1, got {max_steps!r}")
    max_time_ms = episode_max_time_ms(time_limit)
    if len(viewport) != 2 or min(viewport) < 1 or device_scale_factor <= 0:
        raise ConfigurationError(
            f"viewport must be 2 positive sizes and device_scale_factor > 0, got "
            f"{viewport} and {device_scale_factor}"
        )
    find_browser(browser_path)  # no browser: one clear error now, not one per episode

    jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
    for task in names:
        for episode in range(episodes):
            jobs.put(_Job(task, episode, seed + episode))
    workers_count = min(concurrency, len(names) * episodes)
    config: dict[str, Any] = {
        "model": model_name,
        "tasks": names,
        "episodes": episodes,
        "concurrency": workers_count,
        "seed": seed,
        "max_steps": max_steps,
        "time_limit": time_limit,
        "episode_max_time_ms": max_time_ms,
        "viewport": list(viewport),
        "device_scale_factor": device_scale_factor,
        "success": "page ended the episode (WOB_DONE_GLOBAL) with WOB_RAW_REWARD_GLOBAL > 0",
        "agent_kwargs": {k: repr(v) for k, v in (agent_kwargs or {}).items()},
        "record_dir": str(record_dir) if record_dir is not None else None,
    }
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.monotonic()
    scratch = None if record_dir is not None else tempfile.mkdtemp(prefix="miniwob-runs-")
    record_root = Path(scratch) if scratch is not None else Path(record_dir or ".")
    try:
        with serve_directory(html) as base_url:
            settings = _Settings(
                base_url=base_url,
                max_steps=max_steps,
                max_time_ms=max_time_ms,
                load_timeout=load_timeout,
                record_root=record_root,
                keep_records=record_dir is not None,
                agent_kwargs=dict(agent_kwargs or {}),
            )
            width, height = viewport
            browser = _BrowserOptions((width, height), device_scale_factor, headless, browser_path)
            workers = [
                _Worker(model_factory, browser, settings, on_episode) for _ in range(workers_count)
            ]
            with ThreadPoolExecutor(workers_count, thread_name_prefix="miniwob-worker") as pool:
                futures = [pool.submit(worker.run, jobs) for worker in workers]
                results = [r for future in futures for r in future.result()]
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    order = {task: i for i, task in enumerate(names)}
    results.sort(key=lambda r: (order[r.task], r.episode))
    return MiniWobReport(results, config, started_at, time.monotonic() - t0)

"""Run records: a GUI agent run written to a folder step by step, so a crash loses nothing done.

Layout of one run folder (``root/<YYYYmmdd-HHMMSS>-<id>/``)::

    run.json              task, meta, status ("running" until finish()), times, totals
    steps.jsonl           one StepRecord per line, appended and fsync'd as each step ends
    step-001.png          the screenshot the model saw at step 1 (lossless)
    step-001-marked.png   the same with the action point and grounded box drawn on it
                          (``.jpg`` instead when the raw PNG is large: a photo-like shot)
    report.html           self-contained replay (report.write_report, called after finish())

The recorder writes what it is given: the agent hands it text already redacted (see
agent/safety.py). Screenshots are pixels and are not redacted.

No content can make a write fail: `json_safe` turns anything into plain JSON first (lone
surrogates become U+FFFD, integers too long to print become a short text, non-string keys and
unknown objects become text). If a write still fails (disk full), the step is counted as lost
and run.json says ``"record_incomplete": true`` with the reasons; the agent reports such a run
as an error, never as "done" with a partial record.

Cost per step: the raw screenshot is the computer's own PNG, written as is (never decoded or
re-encoded). The marked copy must be drawn and encoded; ``save_screenshot(background=True)``
(what the agent uses) hands that to one writer thread so the step does not wait for it: the
step's line is still written and fsync'd when the step ends, the marked file follows, and
``finish()`` waits for it. A crash in between loses at most the marked copy of the last steps
(the report then shows the raw screenshot).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import queue
import secrets as _secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, computed_field

from internvl_agent.coordinates import Box, Point
from internvl_agent.grounding import draw_box

logger = logging.getLogger(__name__)

RUN_FORMAT = "internvl-agent-run/1"
RUN_FILE = "run.json"
STEPS_FILE = "steps.jsonl"
REPORT_FILE = "report.html"
RUNNING = "running"
# A marked screenshot of a raw PNG larger than this is written as JPEG (photo-like screens).
MARKED_PNG_LIMIT = 512 * 1024
# Marked screenshots waiting for the writer thread; a step blocks when this many are pending.
MARKED_QUEUE_SIZE = 4

Num = int | float


# --------------------------------------------------------------------------- records


class _Model(BaseModel):
    # Unknown fields are ignored so newer files still load.
    model_config = ConfigDict(extra="ignore")


class MessageSummary(_Model):
    """One prompt message, shortened: role, truncated text and how many images it held."""

    role: str
    text: str = ""
    images: int = 0


class ToolCallRecord(_Model):
    """The tool call parsed from the model output, as the model wrote it."""

    name: str
    args: dict[str, Any] = Field(default_factory=dict)


class GroundingRecord(_Model):
    """How a target description became a point: the grounding model's answer and result."""

    description: str = ""
    raw: str = ""
    box_norm: tuple[Num, Num, Num, Num] | None = None  # 0..1000 model coordinates
    point_px: tuple[int, int] | None = None  # screenshot pixels


class ActionRecord(_Model):
    """The action run on the computer, with arguments after grounding."""

    name: str
    args: dict[str, Any] = Field(default_factory=dict)
    point_px: tuple[int, int] | None = None  # target point in screenshot pixels


class OutcomeRecord(_Model):
    """What the computer reported after the action."""

    ok: bool
    message: str = ""


class PhaseSeconds(_Model):
    """Seconds per phase of a step (or summed over a run).

    ``grounding_model`` is the grounding model call; ``grounding`` is everything else the
    grounding phase did (prompting, parsing, scaling). ``settle`` is the computer waiting for
    the page or screen to settle after the action (``Computer.settle_seconds``), not part of
    ``action``. ``record`` is writing the step's screenshots (the line itself comes after).
    """

    capture: float = 0.0
    model: float = 0.0
    grounding_model: float = 0.0
    grounding: float = 0.0
    action: float = 0.0
    settle: float = 0.0
    record: float = 0.0
    total: float = 0.0


class StepTimings(PhaseSeconds):
    """The phases of one step. Framework overhead is everything except the model calls and
    the page's own settling: ``total - model - grounding_model - settle``."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def framework_overhead(self) -> float:
        """Seconds not spent in a model call or settling (never negative)."""
        return max(0.0, self.total - self.model - self.grounding_model - self.settle)


class StepRecord(_Model):
    """Everything about one step: what the model saw, said, and what happened."""

    index: int
    started_at: str = Field(default_factory=lambda: _now_iso())
    screenshot: str | None = None
    marked_screenshot: str | None = None
    screenshot_size: tuple[int, int] | None = None
    url: str | None = None
    messages_summary: list[MessageSummary] = Field(default_factory=list)
    raw_model_output: str = ""
    tool_call: ToolCallRecord | None = None
    grounding: GroundingRecord | None = None
    action: ActionRecord | None = None
    outcome: OutcomeRecord | None = None
    error: str | None = None
    timings: StepTimings = Field(default_factory=StepTimings)

    @property
    def framework_overhead(self) -> float:
        """Seconds of this step not spent in a model call."""
        return self.timings.framework_overhead


class RunTotals(PhaseSeconds):
    """Sums over all recorded steps."""

    framework_overhead: float = 0.0
    steps_with_error: int = 0
    failed_actions: int = 0

    def add(self, step: StepRecord) -> None:
        """Count one step in."""
        t = step.timings
        for name in PhaseSeconds.model_fields:
            setattr(self, name, getattr(self, name) + getattr(t, name))
        self.framework_overhead += t.framework_overhead
        self.steps_with_error += step.error is not None
        self.failed_actions += step.outcome is not None and not step.outcome.ok


class RunInfo(_Model):
    """The content of run.json."""

    model_config = ConfigDict(extra="allow")

    format: str = RUN_FORMAT
    id: str = ""
    task: str = ""
    status: str = RUNNING
    started_at: str | None = None
    ended_at: str | None = None
    duration_s: float | None = None
    answer: str | None = None
    error: str | None = None
    step_count: int = 0
    totals: RunTotals = Field(default_factory=RunTotals)
    meta: dict[str, Any] = Field(default_factory=dict)
    pid: int | None = None
    report: str | None = None
    record_incomplete: bool = False
    record_problems: list[str] = Field(default_factory=list)


@dataclass
class RunData:
    """A run read back from its folder."""

    path: Path
    info: RunInfo
    steps: list[StepRecord]
    problems: list[str] = field(default_factory=list)  # lines skipped while reading

    @property
    def finished(self) -> bool:
        """False while running, or when the process died before finish()."""
        return self.info.status != RUNNING


class PhaseTimer:
    """Times the phases of one step: ``with timer.phase("model"): ...``; then ``timings()``."""

    _PHASES = ("capture", "model", "grounding_model", "grounding", "action", "settle", "record")

    def __init__(self) -> None:
        self._start = time.perf_counter()
        self._spent: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Add the time spent inside the block to phase ``name``."""
        if name not in self._PHASES:
            raise ValueError(f"unknown phase {name!r}; use one of {', '.join(self._PHASES)}")
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._spent[name] = self._spent.get(name, 0.0) + time.perf_counter() - t0

    def move(self, source: str, target: str, seconds: float) -> None:
        """Count ``seconds`` already timed in phase ``source`` as phase ``target`` instead."""
        for name in (source, target):
            if name not in self._PHASES:
                raise ValueError(f"unknown phase {name!r}; use one of {', '.join(self._PHASES)}")
        seconds = min(max(0.0, seconds), self._spent.get(source, 0.0))
        if seconds:
            self._spent[source] -= seconds
            self._spent[target] = self._spent.get(target, 0.0) + seconds

    def timings(self) -> StepTimings:
        """The phases so far, with ``total`` = time since the timer was made."""
        return StepTimings(**self._spent, total=time.perf_counter() - self._start)


def summarize_messages(messages: Any, max_chars: int = 200) -> list[MessageSummary]:
    """Shorten chat messages (LangChain messages or role/content dicts) for a step record."""
    out: list[MessageSummary] = []
    for msg in messages:
        if isinstance(msg, Mapping):
            role, content = str(msg.get("role", "?")), msg.get("content", "")
        else:
            role = str(getattr(msg, "type", None) or getattr(msg, "role", "?"))
            content = getattr(msg, "content", "")
        texts: list[str] = []
        images = 0
        for block in [content] if isinstance(content, str) else list(content or []):
            if isinstance(block, str):
                texts.append(block)
            elif isinstance(block, Mapping) and block.get("type") == "text":
                texts.append(str(block.get("text", "")))
            elif isinstance(block, Mapping) and "image" in str(block.get("type", "")):
                images += 1
        out.append(
            MessageSummary(role=role, text=truncate(" ".join(texts), max_chars), images=images)
        )
    return out


_INT_DIGITS_LIMIT = 4000  # below Python's int -> str conversion limit (4300 digits by default)


def safe_text(value: str) -> str:
    """`value` encodable as UTF-8: valid surrogate pairs joined, lone surrogates -> U+FFFD."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def safe_str(value: Any) -> str:
    """`str(value)` that never raises (huge ints, broken __str__) and is UTF-8 encodable."""
    if isinstance(value, int) and not isinstance(value, bool):
        return _int_text(value) if _too_long(value) else str(value)
    try:
        return safe_text(str(value))
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def _too_long(value: int) -> bool:
    # 3.33 bits per decimal digit; bit_length never raises
    return value.bit_length() > _INT_DIGITS_LIMIT * 3.32


def _int_text(value: int) -> str:
    digits = math.floor(value.bit_length() * math.log10(2)) + 1
    return f"<an integer of about {digits} digits>"


def json_safe(value: Any, _depth: int = 0) -> Any:
    """`value` as plain JSON data that `json.dumps(..., allow_nan=False)` always writes:
    strings UTF-8 safe, dict keys strings, tuples/sets lists, non-finite floats and integers
    too long to print as text, anything else its `safe_str`. Nesting deeper than the
    interpreter's recursion limit allows is cut (as text)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, int):
        return _int_text(value) if _too_long(value) else int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if _depth > min(200, sys.getrecursionlimit() // 4):
        return "<nested too deeply>"
    if isinstance(value, Mapping):
        return {
            (safe_text(k) if isinstance(k, str) else safe_str(k)): json_safe(v, _depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v, _depth + 1) for v in value]
    if isinstance(value, BaseModel):
        return json_safe(value.model_dump(mode="python"), _depth + 1)
    return safe_str(value)


def dumps(value: Any, **options: Any) -> str:
    """JSON text of `value` through `json_safe`: never fails on content."""
    return json.dumps(json_safe(value), ensure_ascii=False, allow_nan=False, **options)


def truncate(text: str, max_chars: int) -> str:
    """``text`` cut to about ``max_chars``, saying how much was cut."""
    if len(text) <= max_chars:
        return text
    return f"{text[:max_chars]}… (+{len(text) - max_chars} chars)"


# --------------------------------------------------------------------------- screenshots


def _marked_extension(raw_png: bytes) -> str:
    """``png``, or ``jpg`` for a large (photo-like) screenshot, decided before encoding."""
    return "jpg" if len(raw_png) > MARKED_PNG_LIMIT else "png"


def _encode_marked(image: Image.Image, point: Point | None, box: Box | None, ext: str) -> bytes:
    """Draw the point and box on a copy of ``image`` and encode it as ``ext``."""
    marked = draw_box(image, box=box, point=point)
    if ext == "jpg":
        return _encode(marked, "JPEG", quality=85)
    return _encode(marked, "PNG", compress_level=1)


def _encode(img: Image.Image, fmt: str, **params: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


class _Writer:
    """One daemon thread writing files handed to it, in order; ``flush()`` waits for them.

    The queue is bounded, so a slow disk slows the steps down instead of piling up images.
    A job that fails is logged and skipped.
    """

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Path, Callable[[], bytes]] | None] = queue.Queue(
            MARKED_QUEUE_SIZE
        )
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, path: Path, make: Callable[[], bytes]) -> None:
        """Write ``make()`` (bytes) to ``path`` atomically, on the writer thread."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._work, name="internvl-record-writer", daemon=True
                )
                self._thread.start()
        self._jobs.put((path, make))

    def flush(self) -> None:
        """Wait until every job handed in so far is written (or has failed)."""
        if self._thread is not None:
            self._jobs.join()

    def close(self) -> None:
        """Flush and stop the thread."""
        if self._thread is not None and self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join()
        self._thread = None

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                path, make = job
                atomic_write(path, make())
            except Exception:
                logger.exception("could not write %s", job[0] if job else "?")
            finally:
                self._jobs.task_done()


# --------------------------------------------------------------------------- recorder


class RunRecorder:
    """Writes one agent run to ``root/<YYYYmmdd-HHMMSS>-<id>/`` as it happens.

    run.json is written at once with status "running", each step is appended to steps.jsonl
    when it ends, and ``finish()`` rewrites run.json with the final status; the caller then
    writes report.html (``report.write_report(recorder.path)``).
    """

    def __init__(
        self,
        root: str | Path,
        *,
        task: str,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        path, run_id = _make_run_dir(Path(root))
        self._begin(path, run_id, safe_text(task), json_safe(dict(meta or {})), _now_iso())
        (self._path / STEPS_FILE).touch()
        self._write_run_json(self._info())

    def _begin(
        self,
        path: Path,
        run_id: str,
        task: str,
        meta: dict[str, Any],
        started_at: str,
        *,
        elapsed: float = 0.0,
        steps: Sequence[StepRecord] = (),
        problems: Sequence[str] = (),
    ) -> None:
        """Every field of a recorder, new (``__init__``) or carrying on a run (``reopen``)."""
        self._path, self._id = path, run_id
        self._task, self._meta = task, meta
        self._started_at = started_at
        self._t0 = time.monotonic() - elapsed
        self._totals = RunTotals()
        for step in steps:
            self._totals.add(step)
        self._step_count = len(steps)
        self._status = RUNNING
        self._final: RunInfo | None = None
        self._problems = list(problems)  # writes that failed: the record is incomplete
        self._writer = _Writer()

    @classmethod
    def reopen(cls, path: str | Path) -> RunRecorder:
        """The recorder of a run folder still "running", to carry on recording it (an agent
        graph resumed from a checkpoint in another process): its steps so far are counted
        in, the duration runs from its start."""
        path = Path(path)
        data = load_run(path)
        if data.finished:
            raise RuntimeError(f"run {path.name} is already finished ({data.info.status})")
        started_at = data.info.started_at or _now_iso()
        try:
            started = datetime.fromisoformat(started_at)
            elapsed = max(0.0, (datetime.now().astimezone() - started).total_seconds())
        except ValueError:
            elapsed = 0.0
        recorder = cls.__new__(cls)  # not __init__: the folder and its files exist
        recorder._begin(
            path,
            data.info.id or path.name,
            data.info.task,
            data.info.meta,
            started_at,
            elapsed=elapsed,
            steps=data.steps,
            problems=[*data.info.record_problems, *data.problems],
        )
        return recorder

    @property
    def path(self) -> Path:
        """The run folder."""
        return self._path

    @property
    def run_id(self) -> str:
        """The folder name, unique per run."""
        return self._id

    @property
    def step_count(self) -> int:
        """Steps recorded so far."""
        return self._step_count

    @property
    def finished(self) -> bool:
        """Whether ``finish()`` has been called."""
        return self._status != RUNNING

    @property
    def problems(self) -> list[str]:
        """The writes that failed so far; non-empty means the record is incomplete."""
        return list(self._problems)

    def lost(self, what: str, exc: BaseException) -> None:
        """Note that writing `what` failed (run.json will say the record is incomplete)."""
        self._problems.append(f"{what}: {type(exc).__name__}: {safe_str(exc)}")

    def save_screenshot(
        self,
        index: int,
        image: Image.Image | Callable[[], Image.Image],
        point: Point | None = None,
        box: Box | None = None,
        *,
        png: bytes | None = None,
        background: bool = False,
    ) -> tuple[str, str]:
        """Write ``step-NNN.png`` and a marked copy; return both file names (with no point
        and no box the marked copy is the same PNG, written without decoding it).

        ``point`` and ``box`` are screenshot pixels (convert a 0..1000 box first). ``png``:
        the image already encoded as PNG (e.g. the computer's capture), written as is.
        ``background``: draw, encode and write the marked copy on the writer thread (the
        raw one is written before this returns); ``flush()`` or ``finish()`` waits for it.
        ``image`` may be a callable giving it (a capture decoded only when first needed: then
        only the writer thread decodes it); it must not change afterwards (captures never do).
        """
        if index < 0:
            raise ValueError(f"step index must be >= 0, got {index}")
        raw_name = f"step-{index:03d}.png"
        get = image if callable(image) else lambda: image
        raw = png if png is not None else _encode(get(), "PNG")
        atomic_write(self._path / raw_name, raw)
        if point is None and box is None:  # nothing to draw: the marked copy is the capture
            marked_name = f"step-{index:03d}-marked.png"
            if background:
                self._writer.submit(self._path / marked_name, lambda: raw)
            else:
                atomic_write(self._path / marked_name, raw)
            return raw_name, marked_name
        ext = _marked_extension(raw)
        marked_name = f"step-{index:03d}-marked.{ext}"
        target = self._path / marked_name
        if background:
            self._writer.submit(target, lambda: _encode_marked(get(), point, box, ext))
        else:
            atomic_write(target, _encode_marked(get(), point, box, ext))
        return raw_name, marked_name

    def flush(self) -> None:
        """Wait until the marked screenshots handed to the writer thread are on disk."""
        self._writer.flush()

    def record_step(self, step: StepRecord) -> None:
        """Append one finished step to steps.jsonl and make it durable (flush + fsync)."""
        self._check_open()
        line = dumps(step.model_dump(mode="python"))
        with open(self._path / STEPS_FILE, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._step_count += 1
        self._totals.add(step)

    def finish(self, status: str, answer: str | None = None, error: str | None = None) -> None:
        """Mark the run ended ("done", "failed", "error", ...) and rewrite run.json, which
        names report.html: write it next (``report.write_report``), or call `no_report()`."""
        self._check_open()
        if not status or status == RUNNING:
            raise ValueError(f"finish() needs a final status, not {status!r}")
        answer = None if answer is None else safe_text(answer)
        error = None if error is None else safe_text(error)
        self._writer.close()  # the report reads the marked screenshots
        self._status = status
        info = self._info(answer=answer, error=error)
        info.ended_at = _now_iso()
        info.duration_s = round(time.monotonic() - self._t0, 3)
        info.report = REPORT_FILE
        self._final = info
        self._write_run_json(info)

    def no_report(self) -> None:
        """Rewrite run.json of a finished run to say it has no report.html (writing it failed)."""
        if self._final is None:
            raise RuntimeError(f"run {self._id} is not finished")
        self._final.report = None
        self._write_run_json(self._final)

    def __enter__(self) -> RunRecorder:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        """Finish a run left open: "interrupted", "error" with the exception, or "stopped"."""
        if self.finished:
            return
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            self.finish("interrupted")
        elif exc is not None:
            self.finish("error", error=f"{type(exc).__name__}: {exc}")
        else:
            self.finish("stopped")

    def _check_open(self) -> None:
        if self.finished:
            raise RuntimeError(f"run {self._id} is already finished ({self._status})")

    def _info(self, answer: str | None = None, error: str | None = None) -> RunInfo:
        return RunInfo(
            id=self._id,
            task=self._task,
            status=self._status,
            started_at=self._started_at,
            answer=answer,
            error=error,
            step_count=self._step_count,
            totals=self._totals.model_copy(),
            meta=self._meta,
            pid=os.getpid(),
            record_incomplete=bool(self._problems),
            record_problems=list(self._problems),
        )

    def _write_run_json(self, info: RunInfo) -> None:
        text = dumps(info.model_dump(mode="python"), indent=2)
        atomic_write(self._path / RUN_FILE, (text + "\n").encode("utf-8"))


def load_run(path: str | Path) -> RunData:
    """Read a run folder back. Unreadable lines of steps.jsonl (such as a last line cut off by
    a crash) are skipped and listed in ``problems``."""
    path = Path(path)
    info = RunInfo.model_validate_json((path / RUN_FILE).read_bytes())
    steps: list[StepRecord] = []
    problems: list[str] = []
    steps_file = path / STEPS_FILE
    text = steps_file.read_text(encoding="utf-8", errors="replace") if steps_file.exists() else ""
    lines = text.split("\n")
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            steps.append(StepRecord.model_validate_json(line))
        except ValueError as exc:
            where = "cut-off last line" if n == len(lines) else f"line {n}"
            problems.append(f"{STEPS_FILE}: skipped {where}: {str(exc).splitlines()[0]}")
    return RunData(path=path, info=info, steps=steps, problems=problems)


# --------------------------------------------------------------------------- helpers


def _now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


def _short_id() -> str:
    return _secrets.token_hex(3)


def _make_run_dir(root: Path) -> tuple[Path, str]:
    """Create a new, unique run folder under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for _ in range(100):
        run_id = f"{stamp}-{_short_id()}"
        try:
            (root / run_id).mkdir()
        except FileExistsError:
            continue
        return root / run_id, run_id
    raise RuntimeError(f"could not create a unique run folder under {root}")


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path``, fsync it and rename it over ``path``.

    Readers see the old file or the new one, never half of one.
    """
    tmp = path.with_name(f".{path.name}.{_secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:  # unlike mkstemp, honours the umask
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise

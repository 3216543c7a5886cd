"""Replay: re-execute a recorded run's actions on a computer, without the model.

    result = replay_run("runs/20250101-120000-abc123", BrowserComputer(), grounder=None)
    print(result.status, result.stopped_at, result.reason, result.record_path)

The replay takes the run's safety settings from its run.json meta (``allowed_domains``,
``risky_keys``; the same `Guard` and `DomainPolicy` the agent uses) and its steps from
steps.jsonl. Each step with an action is replayed in order:

1. observe: a new screenshot; its URL must equal the recorded one (after `rebase`, when the
   replay starts from another origin with ``start_url``).
2. locate: a 0..1000 point is mapped onto the new screenshot as the agent maps it; an
   ``element`` target is re-grounded on the new screenshot when a ``grounder`` is given, else
   the recorded pixel point is used.
3. compare: for a targeted step, the **patch difference** around the target: the mean
   absolute difference of the RGB values (0..1, 0 = identical) between a ``PATCH`` x ``PATCH``
   pixel square centred on the recorded point of the recorded screenshot and the same square
   centred on the point now used in the new screenshot (clipped at the edges; a screenshot of
   another size counts as changed). Above ``threshold`` (default ``DEFAULT_THRESHOLD``) the
   page has changed there.
4. safety (`Guard.check`: blocked navigation, risky keys, secrets off the allow list need
   ``confirm``), then `actions.execute`, then `Guard.keep_allowed`.
5. the outcome must agree with the recorded one (a recorded success that now fails is a
   failure).

A changed step (URL or patch) stops the replay with a report of where and why, unless
``continue_on_change``. ``done`` ends it; ``ask_user`` steps are skipped (the answer only
informed the model). Secrets are never read from the record, which holds ``<secret:NAME>``
placeholders only: pass them again (``secrets``); a run that typed a secret not given is
refused before anything is done.

A replay is itself recorded: a new run folder (records.RunRecorder) whose run.json meta has
``replay_of`` (the source run), plus ``replay.json`` (format ``REPLAY_FORMAT``: one verdict
per replayed step) that report.html shows as a table.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from langchain_core.language_models import BaseChatModel
from PIL import Image, ImageChops, ImageStat

from internvl_agent.actions import (
    Action,
    ActionValidationError,
    AskUser,
    Done,
    Navigate,
    TypeText,
    execute,
    parse_action,
)
from internvl_agent.agent.agent import model_name, target_specs
from internvl_agent.agent.effects import (
    Blocking,
    ModelCall,
    Steps,
    computer_call,
    drive_sync,
)
from internvl_agent.agent.safety import (
    DEFAULT_RISKY_KEYS,
    DomainPolicy,
    Guard,
    LeftAllowedDomains,
    RiskyKeys,
    Secrets,
    Visits,
)
from internvl_agent.computers.base import ActionOutcome, Computer, Screenshot
from internvl_agent.coordinates import OffScreenError, Point, checked_norm_to_pixels
from internvl_agent.errors import ConfigurationError
from internvl_agent.grounding import grounding_message, reply_text, result_from_text
from internvl_agent.records import (
    ActionRecord,
    GroundingRecord,
    OutcomeRecord,
    PhaseTimer,
    RunData,
    RunRecorder,
    StepRecord,
    ToolCallRecord,
    atomic_write,
    load_run,
)
from internvl_agent.report import REPLAY_FILE, write_report

__all__ = [
    "DEFAULT_THRESHOLD",
    "PATCH",
    "REPLAY_FILE",
    "REPLAY_FORMAT",
    "ReplayResult",
    "ReplayStep",
    "patch_difference",
    "replay_run",
]

logger = logging.getLogger("internvl_agent.replay")

REPLAY_FORMAT = "internvl-agent-replay/1"
PATCH = 64
"""Side, in screenshot pixels, of the square compared around a step's target."""
DEFAULT_THRESHOLD = 0.08
"""Patch difference (0..1) above which a target's surroundings count as changed. A caret or
a hover shade stays far below it (~0.01); a button moved away from the point is far above."""

Verdict = Literal["matched", "regrounded", "changed", "failed", "blocked", "skipped", "done"]
ReplayStatus = Literal["done", "changed", "failed", "error", "stopped"]


@dataclass
class ReplayStep:
    """What happened to one recorded step in the replay (one entry of replay.json)."""

    index: int  # the replay's step number
    source_index: int  # the recorded step it replays
    action: str
    verdict: Verdict
    reason: str = ""
    url_recorded: str | None = None
    url_now: str | None = None
    difference: float | None = None  # patch difference, for targeted steps
    point_recorded: Point | None = None
    point_used: Point | None = None


@dataclass
class ReplayResult:
    """The end of a replay: status, where it stopped and why, where its record is."""

    status: ReplayStatus
    source: Path
    steps: list[ReplayStep] = field(default_factory=list)
    stopped_at: int | None = None  # the recorded step index where it stopped
    reason: str | None = None
    record_path: Path | None = None

    @property
    def matched(self) -> bool:
        """True when every replayed step matched the record (re-grounded counts)."""
        return self.status == "done" and all(
            s.verdict in ("matched", "regrounded", "skipped", "done") for s in self.steps
        )


# --------------------------------------------------------------------------- measures


def patch_difference(
    recorded: Image.Image, recorded_point: Point, now: Image.Image, now_point: Point
) -> float:
    """Mean absolute RGB difference (0..1) of the PATCH-pixel squares centred on the two
    points; 1.0 when the screenshots differ in size (the pages cannot be compared)."""
    if recorded.size != now.size:
        return 1.0
    half = PATCH // 2

    def crop(image: Image.Image, point: Point) -> Image.Image:
        x, y = point
        w, h = image.size
        x0, y0 = max(0, min(x - half, w - PATCH)), max(0, min(y - half, h - PATCH))
        return image.convert("RGB").crop((x0, y0, min(w, x0 + PATCH), min(h, y0 + PATCH)))

    diff = ImageChops.difference(crop(recorded, recorded_point), crop(now, now_point))
    return round(sum(ImageStat.Stat(diff).mean) / (3 * 255), 4)


def rebase(url: str | None, old_origin: str | None, new_origin: str | None) -> str | None:
    """`url` moved from `old_origin` (scheme://host:port) to `new_origin`; others unchanged."""
    if not url or not old_origin or not new_origin or old_origin == new_origin:
        return url
    if _origin(url) != old_origin:
        return url
    new = urlsplit(new_origin)
    parts = urlsplit(url)
    return urlunsplit((new.scheme, new.netloc, parts.path, parts.query, parts.fragment))


def _origin(url: str | None) -> str | None:
    if not url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


# --------------------------------------------------------------------------- replay


def _recorded_action(step: StepRecord) -> Action | None:
    """The step's validated action as recorded, or None (an invalid reply, no action)."""
    if step.action is None:
        return None
    try:
        return parse_action(step.action.name, step.action.args)
    except ActionValidationError as exc:
        logger.warning("step %d: the recorded action does not validate: %s", step.index, exc)
        return None


def _secrets_needed(run: RunData) -> list[str]:
    names: list[str] = []
    for step in run.steps:
        action = _recorded_action(step)
        if isinstance(action, TypeText):
            names += [n for n in Secrets().used_in(action.text) if n not in names]
    return names


@dataclass
class _Replay:
    """The settings and state of one replay."""

    run: RunData
    computer: Computer
    guard: Guard
    secrets: Secrets
    recorder: RunRecorder
    grounder: BaseChatModel | None
    grounding_kwargs: dict[str, Any]
    threshold: float
    continue_on_change: bool
    old_origin: str | None
    new_origin: str | None
    source_info: dict[str, Any]
    visits: Visits = field(default_factory=Visits)
    steps: list[ReplayStep] = field(default_factory=list)
    changed: list[int] = field(default_factory=list)


def replay_run(
    run_dir: str | Path,
    computer: Computer,
    *,
    grounder: BaseChatModel | None = None,
    start_url: str | None = None,
    secrets: Mapping[str, str] | None = None,
    continue_on_change: bool = False,
    threshold: float = DEFAULT_THRESHOLD,
    record_dir: str | Path | None = None,
    confirm: Callable[[str], Any] | None = None,
    callback_timeout: float | None = 300.0,
    grounding_kwargs: Mapping[str, Any] | None = None,
    on_step: Callable[[ReplayStep], None] | None = None,
) -> ReplayResult:
    """Re-execute the run recorded in `run_dir` on `computer` (already usable or launched
    by its first call) without the model; see the module docstring for the rules.

    start_url: open this instead of the run's start page; recorded URLs on the old origin
        are compared (and navigate actions sent) on the new one.
    secrets: {name: value} for the run's ``<secret:NAME>`` placeholders (never from the record).
    record_dir: where the replay's own run folder goes (default: beside the source run).
    confirm: callback(description) -> bool for risky actions (as GUIAgent's); none refuses.
    Raises ConfigurationError for a folder that is not a finished run, a secret not given, a
    bad threshold or a start_url outside the run's allowed domains.
    """
    source = Path(run_dir)
    if not (source / "run.json").is_file():
        raise ConfigurationError(f"{source} is not a run folder (it has no run.json)")
    if not 0 < threshold <= 1:
        raise ConfigurationError(f"threshold must be in (0, 1], got {threshold}")
    run = load_run(source)
    meta = run.info.meta
    missing = [n for n in _secrets_needed(run) if n not in (secrets or {})]
    if missing:
        flags = " ".join(f"--secret {n}=ENV_VAR" for n in missing)
        raise ConfigurationError(
            f"the run typed the secret(s) {', '.join(missing)}, which a record never holds: "
            f"give them again ({flags})"
        )
    domains = DomainPolicy(meta.get("allowed_domains"))
    recorded_start = meta.get("start_url")
    start = start_url or recorded_start
    if start and not domains.allows(start):
        raise ConfigurationError(
            f"start page {start!r} is outside the run's allowed domains ({domains.describe()})"
        )
    kept = Secrets(secrets)
    guard = Guard(
        domains=domains,
        secrets=kept,
        risky_keys=RiskyKeys(meta.get("risky_keys") or DEFAULT_RISKY_KEYS),
        computer=computer,
        confirm=confirm,
        timeout=callback_timeout,
    )
    source_info = {
        "run_id": run.info.id,
        "path": str(source.resolve()),
        "task": run.info.task,
        "status": run.info.status,
    }
    replay_meta: dict[str, Any] = {
        "replay_of": source_info,
        "model": "(replay: no model)",
        "grounder": model_name(grounder) if grounder is not None else None,
        "computer": computer.kind,
        "start_url": start,
        "allowed_domains": domains.patterns,
        "risky_keys": list(guard.risky_keys.combos),
        "secrets": kept.names,
        "threshold": threshold,
        "continue_on_change": continue_on_change,
    }
    recorder = RunRecorder(
        Path(record_dir) if record_dir is not None else source.parent,
        task=f"replay of {run.info.id}: {run.info.task}",
        meta=replay_meta,
    )
    state = _Replay(
        run=run,
        computer=computer,
        guard=guard,
        secrets=kept,
        recorder=recorder,
        grounder=grounder,
        grounding_kwargs=dict(grounding_kwargs or {}),
        threshold=threshold,
        continue_on_change=continue_on_change,
        old_origin=_origin(recorded_start),
        new_origin=_origin(start_url) if start_url else None,
        source_info=source_info,
    )
    try:
        result = drive_sync(_replay(state, start, on_step))
    except BaseException as exc:
        result = ReplayResult(
            "stopped" if isinstance(exc, KeyboardInterrupt) else "error",
            source,
            state.steps,
            reason=f"{type(exc).__name__}: {exc}",
        )
        _finish(state, result)
        raise
    _finish(state, result)
    return result


def _finish(state: _Replay, result: ReplayResult) -> None:
    """Write replay.json, finish the record, write the report."""
    recorder = state.recorder
    result.record_path = recorder.path
    replayed = [s for s in result.steps if s.verdict != "skipped"]
    summary = (
        f"replayed {len(replayed)} step(s) of {len(state.run.steps)} recorded; "
        f"{sum(s.verdict in ('matched', 'regrounded', 'done') for s in replayed)} matched"
    )
    if state.changed:
        summary += f", changed at recorded step(s) {', '.join(map(str, state.changed))}"
    data = {
        "format": REPLAY_FORMAT,
        "source": state.source_info,
        "status": result.status,
        "stopped_at": result.stopped_at,
        "reason": result.reason,
        "summary": summary,
        "threshold": state.threshold,
        "patch": PATCH,
        "continue_on_change": state.continue_on_change,
        "steps": [asdict(s) for s in result.steps],
    }
    text = json.dumps(data, ensure_ascii=False, indent=2, default=str)
    atomic_write(recorder.path / REPLAY_FILE, state.secrets.redact(text).encode("utf-8"))
    if recorder.finished:
        return
    recorder.finish(result.status, answer=summary, error=result.reason)
    try:
        write_report(recorder.path)
    except Exception as exc:  # the replay's result still counts
        logger.warning("could not write the report of %s: %s", recorder.path, exc)
        recorder.no_report()


def _replay(
    state: _Replay, start: str | None, on_step: Callable[[ReplayStep], None] | None
) -> Steps:
    """Open the start page, replay each recorded step, stop at a change or a failure."""
    source = state.run.path
    computer, guard = state.computer, state.guard
    if start:
        opened = yield computer_call("navigate", lambda: computer.navigate(start))
        try:
            yield from guard.keep_allowed(opened, state.visits)
        except LeftAllowedDomains as exc:
            return ReplayResult("failed", source, state.steps, reason=str(exc))
        if not opened.ok:
            return ReplayResult(
                "failed", source, state.steps, reason=f"open {start}: {opened.message}"
            )
    index = 0
    for recorded in state.run.steps:
        action = _recorded_action(recorded)
        if action is None:
            continue  # the model's invalid reply: nothing was done on the computer
        index += 1
        step = yield from _replay_step(state, index, recorded, action)
        state.steps.append(step)
        if on_step is not None:
            try:
                on_step(step)
            except Exception:
                logger.exception("the on_step callback raised")
        if step.verdict == "done":
            break
        if step.verdict == "changed":
            state.changed.append(recorded.index)
            if not state.continue_on_change:
                return ReplayResult(
                    "changed", source, state.steps, recorded.index, _where(recorded, step)
                )
        elif step.verdict in ("failed", "blocked"):
            return ReplayResult(
                "failed", source, state.steps, recorded.index, _where(recorded, step)
            )
    status: ReplayStatus = "changed" if state.changed else "done"
    return ReplayResult(status, source, state.steps)


def _where(recorded: StepRecord, step: ReplayStep) -> str:
    return f"recorded step {recorded.index} ({step.action}): {step.reason}"


def _replay_step(state: _Replay, index: int, recorded: StepRecord, action: Action) -> Steps:
    """Replay one recorded action and record it; returns its ReplayStep."""
    timer = PhaseTimer()
    record = StepRecord(index=index)
    record.tool_call = ToolCallRecord(
        name=action.tool_name, args=recorded.action.args if recorded.action else {}
    )
    record.action = ActionRecord(name=action.tool_name, args=record.tool_call.args)
    verdict = ReplayStep(index, recorded.index, action.tool_name, "matched")
    shot: Screenshot | None = None
    point: Point | None = None
    try:
        with timer.phase("capture"):
            shot = yield Blocking(state.computer.screenshot)
        assert shot is not None
        record.url, record.screenshot_size = _clean(state, shot.url), shot.size
        state.guard.observe(state.visits, shot.url)
        yield from _act(state, recorded, action, shot, record, verdict, timer)
        point = verdict.point_used
    except Exception as exc:  # a broken capture or grounding call: the replay cannot go on
        logger.exception("replaying step %d failed", recorded.index)
        verdict.verdict, verdict.reason = "failed", f"{type(exc).__name__}: {exc}"
    if verdict.verdict != "skipped" and record.outcome is None:
        record.outcome = OutcomeRecord(ok=verdict.verdict != "failed", message=verdict.reason)
    if verdict.verdict in ("changed", "failed", "blocked"):
        record.error = state.secrets.redact(f"{verdict.verdict}: {verdict.reason}")
    record.action.point_px = point
    record.timings = timer.timings()
    yield Blocking(lambda: _record(state, record, shot, point))
    return verdict


def _act(
    state: _Replay,
    recorded: StepRecord,
    action: Action,
    shot: Screenshot,
    record: StepRecord,
    verdict: ReplayStep,
    timer: PhaseTimer,
) -> Steps:
    """Compare, locate, check and execute one action, filling `verdict` and `record`."""
    expected = rebase(recorded.url, state.old_origin, state.new_origin)
    verdict.url_recorded, verdict.url_now = expected, _clean(state, shot.url)
    if isinstance(action, Done):
        verdict.verdict = "done"
        verdict.reason = f"the recorded run ended here: {action.describe()}"
        record.outcome = OutcomeRecord(ok=True, message=state.secrets.redact(verdict.reason))
        return
    if isinstance(action, AskUser):
        verdict.verdict, verdict.reason = "skipped", "ask_user: the answer only informed the model"
        return
    if expected and verdict.url_now != expected:
        verdict.verdict = "changed"
        verdict.reason = f"the page is {verdict.url_now}, the recording was on {expected}"
        return
    ends = yield from _locate(state, recorded, action, shot, record, verdict, timer)
    if ends is None:
        return
    point, end = ends
    if verdict.verdict == "changed" and not state.continue_on_change:
        return
    if isinstance(action, Navigate):
        url = rebase(action.url, state.old_origin, state.new_origin) or action.url
        action = Navigate(url=url)
    text = state.secrets.typed_text(action)
    if isinstance(text, ActionOutcome):
        verdict.verdict, verdict.reason = "failed", text.message
        return
    refusal = yield from state.guard.check(action, shot.url, state.visits)
    if refusal is not None:
        verdict.verdict, verdict.reason = "blocked", state.secrets.redact(refusal.message)
        record.outcome = OutcomeRecord(ok=False, message=verdict.reason)
        return
    computer, run = state.computer, action
    with timer.phase("action"):
        outcome: ActionOutcome = yield computer_call(
            action.tool_name, lambda: execute(computer, run, point=point, end=end, text=text)
        )
        try:
            outcome = yield from state.guard.keep_allowed(outcome, state.visits)
        except LeftAllowedDomains as exc:
            outcome = ActionOutcome(False, str(exc))
    message = state.secrets.redact(outcome.message)
    record.outcome = OutcomeRecord(ok=outcome.ok, message=message)
    was_ok = recorded.outcome.ok if recorded.outcome is not None else True
    if was_ok and not outcome.ok:
        verdict.verdict, verdict.reason = "failed", f"it succeeded when recorded, now: {message}"
    elif not verdict.reason:
        verdict.reason = message


def _locate(
    state: _Replay,
    recorded: StepRecord,
    action: Action,
    shot: Screenshot,
    record: StepRecord,
    verdict: ReplayStep,
    timer: PhaseTimer,
) -> Steps:
    """(point, end) in pixels of the new screenshot, comparing the target's surroundings;
    None when the step cannot go on (verdict says why)."""
    point: Point | None = None
    end: Point | None = None
    for which, norm, element in target_specs(action):
        if norm is not None:
            try:
                resolved = checked_norm_to_pixels(norm, shot.size)
            except OffScreenError as exc:
                verdict.verdict, verdict.reason = "failed", str(exc)
                return None
        elif element is not None and state.grounder is not None:
            found = yield from _ground(state, element, shot, record, timer)
            if found is None:
                verdict.verdict = "changed"
                verdict.reason = f"could not find {element!r} on the page any more"
                return None
            resolved = found
            if which == "point":
                verdict.verdict = "regrounded"
        elif which == "point" and recorded.action is not None and recorded.action.point_px:
            resolved = tuple(recorded.action.point_px)  # type: ignore[assignment]
        else:
            verdict.verdict = "failed"
            verdict.reason = (
                f"the {which} target {element!r} was grounded when recorded and its pixel "
                "point is not in the record: replay with a grounder (--model)"
            )
            return None
        if which == "end":
            end = resolved
        else:
            point = resolved
    verdict.point_used = point
    recorded_point = recorded.action.point_px if recorded.action is not None else None
    if point is not None and recorded_point is not None:
        verdict.point_recorded = (int(recorded_point[0]), int(recorded_point[1]))
        before = yield Blocking(lambda: _recorded_image(state.run.path, recorded))
        if before is not None:
            diff = patch_difference(before, verdict.point_recorded, shot.image, point)
            verdict.difference = diff
            if diff > state.threshold:
                verdict.verdict = "changed"
                verdict.reason = (
                    f"around the target the page changed: patch difference {diff:.3f} > "
                    f"threshold {state.threshold:g} ({PATCH}x{PATCH} px at {point})"
                )
    return point, end


def _ground(
    state: _Replay, element: str, shot: Screenshot, record: StepRecord, timer: PhaseTimer
) -> Steps:
    """The grounder's point for `element` on `shot`, or None when it finds nothing."""
    grounder = state.grounder
    assert grounder is not None
    with timer.phase("grounding"):
        block = yield Blocking(lambda: shot.content_block(grounder))
        message = grounding_message(block, element)
    with timer.phase("grounding_model"):
        response = yield ModelCall(grounder, [message], state.grounding_kwargs)
    result = result_from_text(element, reply_text(response), shot.size)
    if record.grounding is None:
        record.grounding = GroundingRecord(
            description=element,
            raw=result.raw_text,
            box_norm=result.box_norm,
            point_px=result.point,
        )
    return result.point


def _recorded_image(run_dir: Path, recorded: StepRecord) -> Image.Image | None:
    if not recorded.screenshot or not (run_dir / recorded.screenshot).is_file():
        return None
    with Image.open(run_dir / recorded.screenshot) as image:
        return image.convert("RGB")


def _clean(state: _Replay, url: str | None) -> str | None:
    return state.secrets.redact(url) if url else None


def _record(
    state: _Replay, record: StepRecord, shot: Screenshot | None, point: Point | None
) -> None:
    """Write the step's screenshots and line; never raises."""
    recorder = state.recorder
    try:
        if shot is not None:
            record.screenshot, record.marked_screenshot = recorder.save_screenshot(
                record.index, shot.image, point, png=shot.png_bytes()
            )
        recorder.record_step(record)
    except Exception:
        logger.exception("could not record replay step %d", record.index)

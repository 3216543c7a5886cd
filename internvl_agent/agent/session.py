"""One run of a GUIAgent: the step loop, as a generator of effects (see effects.py).

Each step: capture the screen -> build the messages -> call the model -> read one tool call ->
ground `element` targets -> 0..1000 to screenshot pixels -> safety checks -> execute ->
check the page is still on an allowed domain -> record the step.

Rules (the numbers are GUIAgent settings):

- A reply without a usable tool call is shown to the model with the reason; after
  max_retries + 1 such replies in a row the run ends with "error".
- The same action (same tool, same validated arguments) failing max_repeated_failures times
  in a row ends the run with "failed"; one failure before that, the model is warned.
- An exception from the model or grounding-model call ends the run with "error"; one from
  the computer becomes a failed outcome; a failed screen capture ends the run with "error".
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PIL import Image

from internvl_agent.actions import (
    Action,
    AskUser,
    Done,
    GoBack,
    Navigate,
    TypeText,
)
from internvl_agent.agent import human
from internvl_agent.agent.effects import Blocking, ModelCall
from internvl_agent.agent.execute import POINTER_ACTIONS, execute
from internvl_agent.agent.guard import Guard, LeftAllowedDomains
from internvl_agent.agent.history import History, ScreenFrame, build_messages
from internvl_agent.agent.output import read_reply
from internvl_agent.agent.result import AgentResult, AgentStatus, HistoryEntry
from internvl_agent.agent.safety import UnknownSecretError
from internvl_agent.agent.targets import GroundingCallFailed, resolve_targets
from internvl_agent.computers.base import ActionOutcome, Screenshot
from internvl_agent.grounding import image_to_data_url
from internvl_agent.records import (
    ActionRecord,
    OutcomeRecord,
    PhaseTimer,
    RunRecorder,
    StepRecord,
    ToolCallRecord,
    redact_value,
    summarize_messages,
)

if TYPE_CHECKING:
    from internvl_agent.agent.loop import GUIAgent

logger = logging.getLogger("internvl_agent.agent")

Point = tuple[int, int]
Ending = tuple[AgentStatus, str | None, str | None]  # status, answer, error
Steps = Generator[Any, Any, Any]


def _png_of(data_url: str) -> bytes | None:
    """The PNG bytes inside a `data:image/png;base64,...` URL (None for anything else)."""
    prefix = "data:image/png;base64,"
    return base64.b64decode(data_url[len(prefix) :]) if data_url.startswith(prefix) else None


class _EndRun(Exception):
    """Raised inside a step to end the run with a status."""

    def __init__(self, status: AgentStatus, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


@dataclass
class _StepState:
    """What a step's record needs besides the StepRecord itself."""

    image: Image.Image | None = None
    data_url: str = ""  # the screenshot as sent to the model, reused for grounding
    point: Point | None = None
    box: tuple[int, int, int, int] | None = None


class RunSession:
    """The state of one run; `loop()` is the generator the drivers run."""

    def __init__(self, agent: GUIAgent, task: str, start_url: str | None = None) -> None:
        self.agent = agent
        self.task = task
        self.start_url = start_url
        self.redact = agent.secrets.redact
        self.history = History(agent.screenshots_in_history)
        self.recorder: RunRecorder | None = None
        self.steps = 0
        self.guard = Guard(agent)
        self.reminder: str | None = None
        self.invalid_streak = 0
        self.fail_signature: str | None = None
        self.fail_count = 0

    # ------------------------------------------------------------------ the run

    def loop(self) -> Steps:
        """Open the record, run steps until an ending, finish the record, return the result."""
        agent = self.agent
        self.recorder = yield Blocking(
            lambda: RunRecorder(
                agent.record_dir,
                task=self.task,
                meta=agent.record_meta(self.start_url),
                redact=self.redact,
            )
        )
        logger.info("run %s started: %s", self.recorder.run_id, self.redact(self.task))
        try:
            opened = (yield from self._open_start(self.start_url)) if self.start_url else None
            ending: Ending = opened or (yield from self._steps())
        except Exception as exc:  # a bug in the loop itself: keep the record
            logger.exception("the agent loop failed")
            ending = ("error", None, f"internal error: {type(exc).__name__}: {exc}")
        except BaseException as exc:  # KeyboardInterrupt, CancelledError: record, re-raise
            self._finish(("stopped", None, f"interrupted ({type(exc).__name__})"))
            raise
        yield Blocking(lambda: self._finish(ending))
        status, answer, error = ending
        logger.info("run %s ended: %s", self.recorder.run_id, status)
        return AgentResult(
            status=status,
            answer=None if answer is None else self.redact(answer),
            steps=self.steps,
            record_path=self.recorder.path,
            error=None if error is None else self.redact(error),
            history=list(self.history.entries),
        )

    def _finish(self, ending: Ending) -> None:
        status, answer, error = ending
        assert self.recorder is not None
        if self.recorder.finished:
            return
        try:
            self.recorder.finish(status, answer=answer, error=error)
        except Exception:  # the result still reaches the caller
            logger.exception("could not finish the run record %s", self.recorder.path)

    def _steps(self) -> Steps:
        agent = self.agent
        for index in range(1, agent.max_steps + 1):
            if agent.stop_requested:
                return ("stopped", None, "stopped by stop()")
            ending = yield from self._step(index)
            self.steps = index
            if ending is not None:
                return ending
        return ("max_steps", None, f"reached max_steps={agent.max_steps} before the task was done")

    def _open_start(self, url: str) -> Steps:
        """Open start_url before the first step; the outcome goes into the history. A start
        page that redirects off the allowed domains is brought back (or ends the run)."""
        computer = self.agent.computer

        def go() -> ActionOutcome:
            try:
                return computer.navigate(url)
            except Exception as exc:
                return ActionOutcome(False, f"navigate raised {type(exc).__name__}: {exc}")

        outcome = yield Blocking(go)
        try:
            outcome = yield from self.guard.keep_allowed(outcome)
        except LeftAllowedDomains as exc:
            error = self.redact(str(exc))
            self.history.add(HistoryEntry(step=0, kind="start", ok=False, message=error))
            return ("failed", None, error)
        self.history.add(
            HistoryEntry(
                step=0,
                kind="start",
                action=self.redact(f"open {url}"),
                ok=outcome.ok,
                message=self.redact(outcome.message),
                url=self._clean_url(outcome.url),
            )
        )
        logger.info("start: open %s -> %s", self.redact(url), "OK" if outcome.ok else "FAILED")
        return None

    # ------------------------------------------------------------------ one step

    def _step(self, index: int) -> Steps:
        """Run and record step `index`; returns an Ending to stop, else None."""
        record = StepRecord(index=index)
        timer = PhaseTimer()
        state = _StepState()
        try:
            ending = yield from self._step_body(index, record, timer, state)
        except _EndRun as end:
            record.error = self.redact(record.error or end.error)
            ending = (end.status, None, end.error)
        except LeftAllowedDomains as exc:
            record.error = self.redact(str(exc))
            ending = ("failed", None, record.error)
        except Exception as exc:
            logger.exception("step %d failed", index)
            record.error = self.redact(f"internal error: {type(exc).__name__}: {exc}")
            ending = ("error", None, record.error)
        except BaseException as exc:
            record.error = f"interrupted ({type(exc).__name__})"
            self._save_step(record, timer, state)
            raise
        yield Blocking(lambda: self._save_step(record, timer, state))
        self._notify(record)
        return ending

    def _step_body(
        self, index: int, record: StepRecord, timer: PhaseTimer, state: _StepState
    ) -> Steps:
        agent = self.agent
        with timer.phase("capture"):
            try:
                shot, data_url = yield Blocking(self._capture)
            except Exception as exc:
                raise _EndRun(
                    "error", f"could not capture the screen: {type(exc).__name__}: {exc}"
                ) from exc
        state.image, state.data_url = shot.image, data_url
        record.url = self._clean_url(shot.url)
        record.screenshot_size = shot.size
        self.guard.observe(shot.url)
        self.history.add_frame(ScreenFrame(index, data_url, shot.url, shot.title))
        messages = build_messages(
            agent.system_prompt,
            self.task,
            self.history,
            step=index,
            reminder=self.reminder,
            redact=self.redact,
        )
        self.reminder = None
        record.messages_summary = summarize_messages(messages)
        with timer.phase("model"):
            try:
                response = yield ModelCall(agent.bound_model, messages)
            except Exception as exc:
                raise _EndRun(
                    "error", f"the model call failed: {type(exc).__name__}: {exc}"
                ) from exc
        reply = read_reply(response, agent.tool_names)
        record.raw_model_output = reply.raw
        if reply.tool_name is not None:
            record.tool_call = ToolCallRecord(name=reply.tool_name, args=reply.tool_args or {})
        if reply.error is not None or reply.action is None:
            return self._invalid(index, record, reply.error or "no action")
        self.invalid_streak = 0
        action = reply.action
        record.action = ActionRecord(
            name=action.tool_name, args=action.model_dump(mode="json", exclude_none=True)
        )
        if isinstance(action, Done):
            logger.info("step %d: %s", index, self.redact(action.describe()))
            return ("done" if action.success else "failed", action.answer, None)
        if isinstance(action, AskUser):
            outcome = yield from human.ask(agent.ask_user, action.question, agent.callback_timeout)
        else:
            outcome = yield from self._act(action, shot, record, timer, state)
        if reply.extra_calls:
            outcome.message += (
                f" (you made {reply.extra_calls + 1} tool calls; only the first was run: "
                "make one call per reply)"
            )
        record.action.point_px = state.point
        record.outcome = OutcomeRecord(ok=outcome.ok, message=self.redact(outcome.message))
        self.history.add(
            HistoryEntry(
                step=index,
                kind="action",
                action=self.redact(action.describe()),
                ok=outcome.ok,
                message=self.redact(outcome.message),
                url=self._clean_url(outcome.url),
            )
        )
        logger.info(
            "step %d: %s -> %s: %s",
            index,
            self.redact(action.describe()),
            "OK" if outcome.ok else "FAILED",
            self.redact(outcome.message),
        )
        return self._check_repeats(index, action, outcome)

    def _clean_url(self, url: str | None) -> str | None:
        return self.redact(url) if url else None

    def _capture(self) -> tuple[Screenshot, str]:
        shot = self.agent.computer.screenshot()
        return shot, image_to_data_url(shot.image)

    def _invalid(self, index: int, record: StepRecord, error: str) -> Ending | None:
        """Count a reply without a usable tool call; end the run after too many in a row."""
        self.invalid_streak += 1
        error = self.redact(error)
        record.error = error
        self.history.add(HistoryEntry(step=index, kind="invalid", ok=False, message=error))
        self.reminder = f"Your last reply was not a valid tool call:\n{error}"
        logger.info("step %d: invalid reply (%d in a row): %s", index, self.invalid_streak, error)
        if self.invalid_streak > self.agent.max_retries:
            return (
                "error",
                None,
                f"the model gave no valid tool call {self.invalid_streak} times in a row "
                f"(max_retries={self.agent.max_retries}); last problem: {error}",
            )
        return None

    def _check_repeats(self, index: int, action: Action, outcome: ActionOutcome) -> Ending | None:
        """Warn about, then stop, the same action failing again and again."""
        if outcome.abort:
            return ("stopped", None, self.redact(outcome.message))
        if outcome.ok:
            self.fail_signature, self.fail_count = None, 0
            return None
        signature = json.dumps(
            [action.tool_name, action.model_dump(mode="json")], sort_keys=True, default=str
        )
        if signature == self.fail_signature:
            self.fail_count += 1
        else:
            self.fail_signature, self.fail_count = signature, 1
        limit = self.agent.max_repeated_failures
        described = self.redact(action.describe())
        if self.fail_count >= limit:
            return (
                "failed",
                None,
                f"the same action failed {self.fail_count} times in a row: {described}: "
                f"{self.redact(outcome.message)}",
            )
        if self.fail_count >= 2 and self.fail_count == limit - 1:
            warning = (
                f"'{described}' has failed {self.fail_count} times in a row; it will not work "
                "unchanged. Do something different (the run ends if it fails again)."
            )
            self.history.add(HistoryEntry(step=index, kind="note", message=warning))
            self.reminder = warning
        return None

    # ------------------------------------------------------------------ acting

    def _act(
        self,
        action: Action,
        shot: Screenshot,
        record: StepRecord,
        timer: PhaseTimer,
        state: _StepState,
    ) -> Steps:
        """Resolve targets, check safety, execute, keep the page on allowed domains."""
        try:
            targets = yield from resolve_targets(self.agent, action, shot, state.data_url, timer)
        except GroundingCallFailed as exc:
            raise _EndRun("error", str(exc)) from exc
        record.grounding = targets.grounding
        state.point, state.box = targets.point, targets.box
        if targets.failure is not None:
            return targets.failure
        notes, point, end = targets.notes, targets.point, targets.end
        text = None
        if isinstance(action, TypeText) and self.agent.secrets.used_in(action.text):
            try:
                text = self.agent.secrets.substitute(action.text)
            except UnknownSecretError as exc:
                return ActionOutcome(False, f"nothing was typed: {exc}")
        refusal = yield from self.guard.check(action, shot.url)
        if refusal is not None:
            return refusal
        computer = self.agent.computer
        with timer.phase("action"):
            outcome = yield Blocking(
                lambda: execute(computer, action, point=point, end=end, text=text)
            )
            outcome = yield from self.guard.keep_allowed(outcome)
        message = outcome.message
        if text is not None and isinstance(action, TypeText):
            # the computer may echo a cut-off copy of the text, which redaction cannot catch
            enter = " and pressed Enter" if action.submit else ""
            message = (
                f"typed {action.text!r} with the secrets filled in{enter}"
                if outcome.ok
                else f"typing failed: {self.redact(outcome.message)}"
            )
        elif outcome.ok and isinstance(action, POINTER_ACTIONS):
            message = ""  # the computer's message only repeats the pixel point
        if (
            outcome.url
            and outcome.url != shot.url
            and not isinstance(action, (Navigate, GoBack))
            and outcome.url not in message
        ):
            notes.append(f"the page is now {outcome.url}")
        text_out = "; ".join(p for p in (*notes, message) if p)
        return ActionOutcome(outcome.ok, text_out, outcome.url, abort=outcome.abort)

    # ------------------------------------------------------------------ records

    def _save_step(self, record: StepRecord, timer: PhaseTimer, state: _StepState) -> None:
        """Write the step's screenshots and its line in steps.jsonl; never raises."""
        record.timings = timer.timings()
        assert self.recorder is not None
        try:
            if state.image is not None:
                raw, marked = self.recorder.save_screenshot(
                    record.index, state.image, state.point, state.box, png=_png_of(state.data_url)
                )
                record.screenshot, record.marked_screenshot = raw, marked
            self.recorder.record_step(record)
        except Exception:
            logger.exception("could not record step %d", record.index)

    def _notify(self, record: StepRecord) -> None:
        callback = self.agent.on_step
        if callback is None:
            return
        try:
            # The recorder redacts what it writes; the callback gets a redacted copy too.
            clean = redact_value(record.model_dump(), self.agent.secrets.redact)
            callback(StepRecord.model_validate(clean))
        except Exception:
            logger.exception("the on_step callback raised")

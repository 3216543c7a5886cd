"""GUIAgent: a LangChain chat model driving a Computer, one tool call per step.

    agent = GUIAgent(ChatInternVL(model=...), BrowserComputer(), allowed_domains=["127.0.0.1"])
    result = agent.run("Sign in as alice", start_url="http://127.0.0.1:8000/")
    print(result.status, result.answer, result.record_path)

The model is any chat model with tool calling and image input (ChatInternVL, ChatOpenAI
against vLLM, ...). One step, as the methods below read top to bottom:

    _step     observe -> decide -> act (or done / ask_user) -> record
    _observe  capture the screen; it joins the history's last K screenshots
    _decide   build the messages (history.py), call the model, read one tool call (actions.py)
    _act      locate the targets (0..1000 -> screenshot pixels; `element` grounded by the
              grounder) -> safety check (safety.py) -> execute -> keep the page allowed
    _record   the step's screenshots and its line in steps.jsonl, then on_step

The loop is a generator of effects (effects.py), so `run` and `arun` share it. The screenshot
crosses the package once: the captured Screenshot goes to the model as its content block
(the PIL image for ChatInternVL) and its PNG bytes go to the record.

Rules (the numbers are GUIAgent settings):

- A reply without a usable tool call is shown to the model with the reason; after
  max_retries + 1 such replies in a row the run ends with "error".
- The same action (same tool, same validated arguments) failing max_repeated_failures times
  in a row ends the run with "failed"; one failure before that, the model is warned.
- An exception from the model or grounding-model call ends the run with "error"; one from
  the computer becomes a failed outcome (effects.computer_call); a failed screen capture ends
  the run with "error".
- Secrets are redacted from everything the model, the logs, the record and on_step see; the
  recorder and the report write what they are given.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable
from pydantic import BaseModel

from internvl_agent.actions import (
    ACTION_MODELS,
    BROWSER_ACTIONS,
    DESKTOP_ACTIONS,
    POINTER_ACTIONS,
    Action,
    AskUser,
    Done,
    Drag,
    GoBack,
    ModelReply,
    Navigate,
    TargetedAction,
    TypeText,
    action_tools,
    done_with_output,
    execute,
    read_reply,
)
from internvl_agent.agent.effects import (
    Blocking,
    ModelCall,
    Steps,
    computer_call,
    drive_async,
    drive_sync,
)
from internvl_agent.agent.history import (
    History,
    HistoryEntry,
    ScreenFrame,
    build_messages,
    render_system_prompt,
)
from internvl_agent.agent.safety import (
    DEFAULT_RISKY_KEYS,
    DomainPolicy,
    Guard,
    LeftAllowedDomains,
    RiskyKeys,
    Secrets,
    UnknownSecretError,
    Visits,
    ask_human,
    redact_value,
)
from internvl_agent.computers.base import ActionOutcome, Computer, Screenshot
from internvl_agent.coordinates import Box, OffScreenError, Point, checked_norm_to_pixels
from internvl_agent.errors import ConfigurationError
from internvl_agent.grounding import (
    GROUNDING_PROMPT,
    grounding_message,
    reply_text,
    result_from_text,
)
from internvl_agent.records import (
    ActionRecord,
    GroundingRecord,
    OutcomeRecord,
    PhaseTimer,
    RunRecorder,
    StepRecord,
    ToolCallRecord,
    json_safe,
    safe_str,
    summarize_messages,
)
from internvl_agent.report import write_report

__all__ = ["AgentResult", "AgentStatus", "GUIAgent", "bind_action_tools", "model_name"]

logger = logging.getLogger("internvl_agent.agent")

ConfirmCallback = Callable[[str], "bool | Awaitable[bool]"]
AskUserCallback = Callable[[str], "str | Awaitable[str | None] | None"]

AgentStatus = Literal["done", "failed", "max_steps", "stopped", "error"]
"""How a run ended.

- done: the model called ``done`` with success=true.
- failed: ``done`` with success=false, or the same action failed too many times in a row, or
  the agent could not get the page back onto an allowed domain.
- max_steps: the step cap was reached without ``done``.
- stopped: ``stop()`` was called (or the run was interrupted).
- error: the model (or grounding model) call raised, the model produced no valid tool call
  max_retries + 1 times in a row, the screen could not be captured, or a write of the run
  record failed (the error starts "the run record is incomplete" and says how the run ended).
"""

Ending = tuple[AgentStatus, str | None, str | None]  # status, answer, error


@dataclass
class AgentResult:
    """The end of a run: status, the model's answer, how many steps, where the record is."""

    status: AgentStatus
    answer: str | None = None
    steps: int = 0
    record_path: Path | None = None
    error: str | None = None
    history: list[HistoryEntry] = field(default_factory=list)
    output: Any = None  # with output_schema: the validated result (model instance or JSON value)

    @property
    def success(self) -> bool:
        """True when the model finished the task (status "done")."""
        return self.status == "done"


def bind_action_tools(model: Any, tools: Sequence[Any], **kwargs: Any) -> Runnable:
    """`model.bind_tools(tools, tool_choice="any")`, or without tool_choice when the model
    rejects "any"; ConfigurationError when the model has no tool calling at all."""
    if not hasattr(model, "bind_tools"):
        raise ConfigurationError(f"{type(model).__name__} has no bind_tools: it cannot call tools")
    try:
        return model.bind_tools(tools, tool_choice="any", **kwargs)
    except NotImplementedError as exc:
        raise ConfigurationError(
            f"{type(model).__name__} does not support tool calling (bind_tools)"
        ) from exc
    except Exception as exc:
        logger.info(
            "%s rejected tool_choice='any' (%s); binding the tools without it",
            type(model).__name__,
            exc,
        )
    try:
        return model.bind_tools(tools, **kwargs)
    except NotImplementedError as exc:
        raise ConfigurationError(
            f"{type(model).__name__} does not support tool calling (bind_tools)"
        ) from exc


def model_name(model: Any) -> str:
    """A short name for a chat model, for records and reports."""
    for attr in ("model", "model_name", "model_id"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(model).__name__


class _EndRun(Exception):
    """Raised inside a step to end the run with a status."""

    def __init__(self, status: AgentStatus, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


@dataclass
class _Run:
    """The mutable state of one run (the GUIAgent itself only holds settings)."""

    task: str
    recorder: RunRecorder
    history: History
    visits: Visits = field(default_factory=Visits)  # the guard's memory of pages
    steps: int = 0
    reminder: str | None = None  # told to the model at the next step only
    invalid_streak: int = 0  # replies in a row without a usable tool call
    fail_signature: str | None = None  # the last failing action...
    fail_count: int = 0  # ...and how many times in a row it failed
    output: Any = None  # done's validated output (with output_schema)


@dataclass
class _Step:
    """What one step gathers for its record."""

    record: StepRecord
    timer: PhaseTimer = field(default_factory=PhaseTimer)
    shot: Screenshot | None = None
    point: Point | None = None  # the action's target, in screenshot pixels
    box: Box | None = None  # the first grounded box, for the marked screenshot


@dataclass
class _Targets:
    """An action's targets in screenshot pixels and what grounding found."""

    point: Point | None = None  # click / type / scroll target, drag start
    end: Point | None = None  # drag end
    notes: list[str] = field(default_factory=list)  # "found 'X' at (x, y)"


def target_specs(action: Action) -> list[tuple[str, Point | None, str | None]]:
    """(which: "point" or "end", 0..1000 point or None, element or None) per target."""
    if isinstance(action, Drag):
        return [
            ("point", action.from_point, action.from_element),
            ("end", action.to_point, action.to_element),
        ]
    if isinstance(action, TargetedAction) and (action.point or action.element):
        return [("point", action.point, action.element)]
    return []


class GUIAgent:
    """Runs tasks on a computer with a vision-language chat model.

    model: chat model with tool calling and image input; the actions are bound to it with
        ``tool_choice="any"`` (without it when the model refuses).
    grounder: chat model that resolves ``element`` descriptions to boxes (InternVL's
        ``<ref>..</ref><box>..</box>`` format); default: `model`, without tools.
    max_steps: model calls per run, invalid replies included.
    screenshots_in_history: K, how many screenshots (the current one included) are sent as
        images; older steps are only in the text history.
    max_retries: consecutive replies without a usable tool call tolerated before "error".
    allowed_domains: URL host patterns the browser may visit (see safety.py); None = any.
    sensitive_data: {name: value}; the model writes ``<secret>name</secret>`` in type_text
        and the agent types the value; values are redacted from prompts, logs and records.
    confirm: callback(description) -> bool for risky actions; none, raising, timing out or
        answering no refuses the action. Risky: `navigate` to a site not seen in this run
        and not listed in allowed_domains; typing a secret on a page not listed in
        allowed_domains; pressing one of `risky_keys`.
    ask_user: callback(question) -> answer for the ask_user action.
    record_dir: folder that receives one run folder per run (see records.py).
    max_tiles: call option for the model and the grounder (ChatInternVL's image tiling);
        leave None for models that do not take it (ChatOpenAI would send it to the server).
        The same tiling for both lets the grounding call reuse the planner call's encoded
        screenshot (ChatInternVL's vision cache), and older screenshots in the history are
        never encoded twice.
    grounding_max_tiles: a different tiling for grounding calls only (finer detail for small
        targets, at the price of encoding the screenshot a second time).
    actions: tool names offered; default BROWSER_ACTIONS for a browser, else DESKTOP_ACTIONS.
    risky_keys: key combinations that need confirmation.
    max_repeated_failures: the same failing action this many times in a row ends the run.
    callback_timeout: seconds to wait for confirm / ask_user (None = forever).
    system_prompt: a template replacing prompts/agent_system.md (same ``{{fields}}``).
    on_step: called with each StepRecord once it is recorded (live progress).
    executor: where `arun` runs computer calls; default one private worker thread, so a
        sync-Playwright BrowserComputer launched in it stays on that thread.
    block_foreign_requests: with allowed_domains, a browser never sends a request for a
        document (page, frame, form submission, popup, redirect) outside them; True also
        blocks every other request (images, fetch/XHR, beacons) to foreign hosts, which
        could carry typed secrets out. Default: True when sensitive_data is given.
    output_schema: a pydantic model class or a JSON schema (dict): `done` then carries the
        result in that schema (constrained decoding with ChatInternVL follows it), an invalid
        one is fed back like any invalid call, and `AgentResult.output` is the validated
        object (a model instance, or the JSON value for a dict schema).
    """

    def __init__(
        self,
        model: BaseChatModel,
        computer: Computer,
        *,
        grounder: BaseChatModel | None = None,
        max_steps: int = 25,
        screenshots_in_history: int = 3,
        max_retries: int = 3,
        allowed_domains: Iterable[str] | str | None = None,
        sensitive_data: Mapping[str, str] | None = None,
        confirm: ConfirmCallback | None = None,
        ask_user: AskUserCallback | None = None,
        record_dir: str | Path = "runs",
        max_tiles: int | None = None,
        grounding_max_tiles: int | None = None,
        actions: Iterable[str] | None = None,
        risky_keys: Iterable[str] = DEFAULT_RISKY_KEYS,
        max_repeated_failures: int = 3,
        callback_timeout: float | None = 300.0,
        grounding_prompt: str = GROUNDING_PROMPT,
        system_prompt: str | None = None,
        on_step: Callable[[StepRecord], None] | None = None,
        executor: Executor | None = None,
        block_foreign_requests: bool | None = None,
        output_schema: type[BaseModel] | Mapping[str, Any] | None = None,
    ) -> None:
        for name, value, low in (
            ("max_steps", max_steps, 1),
            ("screenshots_in_history", screenshots_in_history, 1),
            ("max_retries", max_retries, 0),
            ("max_repeated_failures", max_repeated_failures, 1),
        ):
            if not isinstance(value, int) or value < low:
                raise ConfigurationError(f"{name} must be an integer >= {low}, got {value!r}")
        for name, tiles in (("max_tiles", max_tiles), ("grounding_max_tiles", grounding_max_tiles)):
            if tiles is not None and (not isinstance(tiles, int) or tiles < 1):
                raise ConfigurationError(f"{name} must be a positive integer, got {tiles!r}")
        if callback_timeout is not None and callback_timeout <= 0:
            raise ConfigurationError(f"callback_timeout must be > 0, got {callback_timeout}")
        self.model = model
        self.computer = computer
        self.max_steps = max_steps
        self.screenshots_in_history = screenshots_in_history
        self.max_retries = max_retries
        self.max_repeated_failures = max_repeated_failures
        self.domains = DomainPolicy(allowed_domains)
        self.secrets = Secrets(sensitive_data)
        self.redact = self.secrets.redact
        self.guard = Guard(
            domains=self.domains,
            secrets=self.secrets,
            risky_keys=RiskyKeys(risky_keys),
            computer=computer,
            confirm=confirm,
            timeout=callback_timeout,
        )
        if block_foreign_requests is None:
            block_foreign_requests = bool(self.secrets)
        self.block_foreign_requests = block_foreign_requests
        self.ask_user = ask_user
        self.callback_timeout = callback_timeout
        self.record_dir = Path(record_dir)
        self.max_tiles = max_tiles
        self.on_step = on_step
        self.grounding_prompt = grounding_prompt

        default = BROWSER_ACTIONS if computer.kind == "browser" else DESKTOP_ACTIONS
        self.tool_names = list(default if actions is None else actions)
        unknown = [n for n in self.tool_names if n not in ACTION_MODELS]
        if unknown or "done" not in self.tool_names:
            raise ConfigurationError(
                f"actions must name known tools and include 'done'; unknown: {unknown}, "
                f"valid: {', '.join(ACTION_MODELS)}"
            )
        self.output_schema = output_schema
        self.action_models: dict[str, type[Action]] = dict(ACTION_MODELS)
        if output_schema is not None:
            self.action_models["done"] = done_with_output(output_schema)
        call_options = {"max_tiles": max_tiles} if max_tiles is not None else {}
        tools = action_tools(self.tool_names, models=self.action_models)
        self.bound_model = bind_action_tools(model, tools, **call_options)
        self.grounder: Runnable = grounder if grounder is not None else model
        self.grounding_kwargs: dict[str, Any] = dict(call_options)
        if grounding_max_tiles is not None:
            self.grounding_kwargs["max_tiles"] = grounding_max_tiles
        self.system_prompt = render_system_prompt(
            tools=self.tool_names,
            environment="a web browser" if computer.kind == "browser" else "a computer desktop",
            secret_names=self.secrets.names,
            allowed_domains=self.domains.describe(),
            human_available=ask_user is not None,
            template=system_prompt,
        )
        self._stop = threading.Event()
        self._busy = threading.Lock()
        self._executor = executor
        self._own_executor: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------ control

    def stop(self) -> None:
        """Ask the run in progress to end with status "stopped" at the next step boundary.

        Thread-safe; a stop() before run() starts is cleared by run().
        """
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        """Whether stop() was called during this run."""
        return self._stop.is_set()

    @property
    def computer_executor(self) -> Executor:
        """The executor `arun` runs computer calls on (created on first use)."""
        if self._executor is not None:
            return self._executor
        if self._own_executor is None:
            self._own_executor = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="internvl-agent-computer"
            )
        return self._own_executor

    def close(self) -> None:
        """Shut down the private executor `arun` created (the computer is not closed)."""
        if self._own_executor is not None:
            self._own_executor.shutdown(wait=True)
            self._own_executor = None

    def record_meta(self, start_url: str | None = None) -> dict[str, Any]:
        """What run.json's meta says about this agent (secret names only, never values)."""
        return {
            "model": model_name(self.model),
            "grounder": model_name(self.grounder),
            "computer": self.computer.kind,
            "start_url": start_url,
            "max_steps": self.max_steps,
            "screenshots_in_history": self.screenshots_in_history,
            "max_retries": self.max_retries,
            "allowed_domains": self.domains.patterns,
            "risky_keys": list(self.guard.risky_keys.combos),
            "secrets": self.secrets.names,
            "actions": self.tool_names,
            "max_tiles": self.max_tiles,
        }

    # ------------------------------------------------------------------ running

    def run(self, task: str, *, start_url: str | None = None) -> AgentResult:
        """Work on `task` until done, failure, max_steps, stop() or an error.

        start_url: opened (by the agent, before step 1) with its outcome in the history.
        Raises only for bad arguments or when the record folder cannot be created; what the
        model does never raises. Model calls run in this thread.
        """
        task = self._begin(task, start_url)
        try:
            return drive_sync(self._run(task, start_url))
        finally:
            self._busy.release()

    async def arun(self, task: str, *, start_url: str | None = None) -> AgentResult:
        """Async `run`: model calls are awaited (ainvoke); computer calls and disk writes run
        on `computer_executor`."""
        task = self._begin(task, start_url)
        try:
            return await drive_async(self._run(task, start_url), self.computer_executor)
        finally:
            self._busy.release()

    def _begin(self, task: str, start_url: str | None) -> str:
        """Check the arguments and take the agent for one run; returns the task, stripped."""
        if not isinstance(task, str) or not task.strip():
            raise ConfigurationError("the task must be a non-empty string")
        if start_url is not None and not self.domains.allows(start_url):
            raise ConfigurationError(
                f"start_url {start_url!r} is outside allowed_domains ({self.domains.describe()})"
            )
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("this GUIAgent is already running a task")
        self._stop.clear()
        return task.strip()

    def _run(self, task: str, start_url: str | None) -> Steps:
        """Open the record, open start_url, run steps until an ending, finish the record."""
        meta = redact_value(self.record_meta(start_url), self.redact)
        # on the computer's thread (sync Playwright is bound to it), before anything is opened
        yield Blocking(
            lambda: self.computer.restrict_requests(
                self.domains.allows_request if self.domains.restricted else None,
                subresources=self.block_foreign_requests,
            )
        )
        recorder = yield Blocking(
            lambda: RunRecorder(self.record_dir, task=self.redact(task), meta=meta)
        )
        run = _Run(task, recorder, History(self.screenshots_in_history))
        self.computer.use_download_dir(recorder.path / "downloads")
        logger.info("run %s started: %s", recorder.run_id, self.redact(task))
        try:
            opened = (yield from self._open_start(run, start_url)) if start_url else None
            ending: Ending = opened or (yield from self._steps(run))
        except Exception as exc:  # a bug in the loop itself: keep the record
            logger.exception("the agent loop failed")
            ending = ("error", None, f"internal error: {type(exc).__name__}: {exc}")
        except BaseException as exc:  # KeyboardInterrupt, CancelledError: record, re-raise
            self._finish(run, ("stopped", None, f"interrupted ({type(exc).__name__})"))
            raise
        ending = self._check_record(run, ending)
        yield Blocking(lambda: self._finish(run, ending))
        ending = self._check_record(run, ending)  # finishing itself may have failed
        status, answer, error = ending
        logger.info("run %s ended: %s", recorder.run_id, status)
        return AgentResult(
            status=status,
            answer=None if answer is None else self.redact(answer),
            steps=run.steps,
            record_path=recorder.path,
            error=None if error is None else self.redact(error),
            history=list(run.history.entries),
            output=self._clean_output(run.output) if status == "done" else None,
        )

    def _clean_output(self, output: Any) -> Any:
        """The output with secret values redacted (re-validated when that changed it)."""
        if output is None or not self.secrets:
            return output
        dumped = output.model_dump(mode="json") if isinstance(output, BaseModel) else output
        clean = redact_value(dumped, self.redact)
        if clean == dumped:
            return output
        if isinstance(output, BaseModel):
            try:
                return type(output).model_validate(clean)
            except Exception:
                return clean
        return clean

    def _open_start(self, run: _Run, url: str) -> Steps:
        """Open start_url before the first step; the outcome goes into the history. A start
        page that redirects off the allowed domains is brought back (or ends the run)."""
        computer = self.computer
        outcome = yield computer_call("navigate", lambda: computer.navigate(url))
        try:
            outcome = yield from self.guard.keep_allowed(outcome, run.visits)
        except LeftAllowedDomains as exc:
            error = self.redact(str(exc))
            run.history.add(HistoryEntry(step=0, kind="start", ok=False, message=error))
            return ("failed", None, error)
        run.history.add(
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

    def _steps(self, run: _Run) -> Steps:
        for index in range(1, self.max_steps + 1):
            if self.stop_requested:
                return ("stopped", None, "stopped by stop()")
            ending = yield from self._step(run, index)
            run.steps = index
            if ending is not None:
                return ending
        return ("max_steps", None, f"reached max_steps={self.max_steps} before the task was done")

    def _check_record(self, run: _Run, ending: Ending) -> Ending:
        """`ending`, or an "error" saying the record is incomplete when a write failed: a run
        never ends "done" with a record that lost some of it."""
        problems = run.recorder.problems
        if not problems:
            return ending
        status, answer, error = ending
        if error is not None and error.startswith("the run record is incomplete"):
            return ending
        what = "; ".join(problems[:3]) + (
            f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        )
        note = f"the run record is incomplete ({len(problems)} write(s) failed: {what})"
        ended = f"the run ended {status}" + (f": {error}" if error else "")
        return ("error", answer, f"{note}; {ended}")

    def _finish(self, run: _Run, ending: Ending) -> None:
        """Finish the record and write its report; never raises (the result still counts)."""
        status, answer, error = ending
        recorder = run.recorder
        if recorder.finished:
            return
        try:
            recorder.finish(
                status,
                answer=None if answer is None else self.redact(answer),
                error=None if error is None else self.redact(error),
            )
        except Exception as exc:
            logger.exception("could not finish the run record %s", recorder.path)
            recorder.lost("run.json", exc)
            return
        try:
            write_report(recorder.path)
        except Exception as exc:  # a report bug must not lose the run's result
            logger.warning("could not write the report of %s: %s", recorder.path, exc)
            try:
                recorder.no_report()
            except Exception:
                logger.exception("could not update %s", recorder.path)

    # ------------------------------------------------------------------ one step

    def _step(self, run: _Run, index: int) -> Steps:
        """Run and record step `index`; returns an Ending to stop, else None."""
        step = _Step(StepRecord(index=index))
        record = step.record
        try:
            ending = yield from self._step_body(run, step)
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
            self._record(run, step)
            raise
        clean = yield Blocking(lambda: self._record(run, step))
        self._notify(clean)
        return ending

    def _step_body(self, run: _Run, step: _Step) -> Steps:
        """observe -> decide -> act (or done / ask_user) -> history and repeat checks."""
        record, index = step.record, step.record.index
        shot = yield from self._observe(run, step)
        reply = yield from self._decide(run, step)
        if reply.action is None:
            return self._invalid(run, record, reply.error or "no action")
        run.invalid_streak = 0
        action = reply.action
        record.action = ActionRecord(
            name=action.tool_name, args=action.model_dump(mode="json", exclude_none=True)
        )
        if isinstance(action, Done):
            logger.info("step %d: %s", index, self.redact(action.describe()))
            run.output = getattr(action, "output", None)
            return ("done" if action.success else "failed", action.answer, None)
        if isinstance(action, AskUser):
            outcome = yield from ask_human(self.ask_user, action.question, self.callback_timeout)
        else:
            outcome = yield from self._act(run, step, action, shot)
        if reply.extra_calls:
            outcome.message += (
                f" (you made {reply.extra_calls + 1} tool calls; only the first was run: "
                "make one call per reply)"
            )
        record.action.point_px = step.point
        record.outcome = OutcomeRecord(ok=outcome.ok, message=self.redact(outcome.message))
        described = self.redact(action.describe())
        run.history.add(
            HistoryEntry(
                step=index,
                kind="action",
                action=described,
                ok=outcome.ok,
                message=self.redact(outcome.message),
                url=self._clean_url(outcome.url),
            )
        )
        status = "OK" if outcome.ok else "FAILED"
        logger.info("step %d: %s -> %s: %s", index, described, status, record.outcome.message)
        return self._check_repeats(run, index, action, outcome)

    def _observe(self, run: _Run, step: _Step) -> Steps:
        """Capture the screen: the Screenshot for this step, in the history's frames."""
        shot: Screenshot = yield from self._capture(step)
        if shot.url is not None and not self.domains.allows(shot.url):
            # the page left the allow list between steps (a computer that cannot filter its
            # requests): bring it back (or end the run) before the model sees or acts on it
            back = yield from self.guard.keep_allowed(
                ActionOutcome(True, "the page moved"), run.visits
            )
            note = HistoryEntry(
                step=step.record.index, kind="note", message=self.redact(back.message)
            )
            run.history.add(note)
            shot = yield from self._capture(step)
            if shot.url is not None and not self.domains.allows(shot.url):
                raise LeftAllowedDomains(
                    f"the page is at {shot.url}, outside the allowed domains "
                    f"({self.domains.describe()}), and could not be brought back"
                )
        step.shot = shot
        step.record.url = self._clean_url(shot.url)
        step.record.screenshot_size = shot.size
        self.guard.observe(run.visits, shot.url)
        run.history.add_frame(ScreenFrame(step.record.index, shot))
        return shot

    def _capture(self, step: _Step) -> Steps:
        """One screenshot (encoded for the model off the event loop); _EndRun when it fails."""

        def capture() -> Screenshot:
            shot = self.computer.screenshot()
            shot.content_block(self.model)
            return shot

        with step.timer.phase("capture"):
            try:
                return (yield Blocking(capture))
            except Exception as exc:
                raise _EndRun(
                    "error", f"could not capture the screen: {type(exc).__name__}: {exc}"
                ) from exc

    def _decide(self, run: _Run, step: _Step) -> Steps:
        """Build the messages, call the model, read its reply (a ModelReply)."""
        record = step.record
        messages = build_messages(
            self.system_prompt,
            run.task,
            run.history,
            step=record.index,
            model=self.model,
            reminder=run.reminder,
            redact=self.redact,
        )
        run.reminder = None
        record.messages_summary = summarize_messages(messages)
        with step.timer.phase("model"):
            try:
                response = yield ModelCall(self.bound_model, messages)
            except Exception as exc:
                raise _EndRun(
                    "error", f"the model call failed: {type(exc).__name__}: {exc}"
                ) from exc
        reply: ModelReply = read_reply(response, self.tool_names, self.action_models)
        record.raw_model_output = reply.raw
        if reply.tool_name is not None:
            args = json_safe(reply.tool_args or {})  # Python-built replies: any keys, any ints
            record.tool_call = ToolCallRecord(name=safe_str(reply.tool_name), args=args)
        return reply

    def _act(self, run: _Run, step: _Step, action: Action, shot: Screenshot) -> Steps:
        """Locate the targets, check safety, execute, keep the page on allowed domains;
        returns the outcome the model is told."""
        targets = yield from self._locate(step, action, shot)
        if isinstance(targets, ActionOutcome):
            return targets
        text = None
        if isinstance(action, TypeText) and self.secrets.used_in(action.text):
            try:
                text = self.secrets.substitute(action.text)
            except UnknownSecretError as exc:
                return ActionOutcome(False, f"nothing was typed: {exc}")
        page_url = shot.url
        check_focus = None
        if text is not None:
            # judged on the page as it is now (it may have moved since the screenshot), and
            # again on where the keys go once the field is clicked
            page_url = (yield from self.guard.current_url()) or shot.url
            check_focus = self.guard.typing_check(page_url)
        refusal = yield from self.guard.check(action, page_url, run.visits)
        if refusal is not None:
            return refusal
        computer, point, end = self.computer, targets.point, targets.end
        settled = computer.settle_seconds
        with step.timer.phase("action"):
            outcome = yield computer_call(
                action.tool_name,
                lambda: execute(
                    computer,
                    action,
                    point=point,
                    end=end,
                    text=text,
                    check_focus=check_focus,
                    secret=text is not None,
                ),
            )
            outcome = yield from self.guard.keep_allowed(outcome, run.visits)
        step.timer.move("action", "settle", computer.settle_seconds - settled)
        message = outcome.message
        if text is not None and isinstance(action, TypeText):
            # execute never passes on the computer's echo of a secret; say what was typed
            # with the placeholders
            enter = " and pressed Enter" if action.submit else ""
            message = (
                f"typed {action.text!r} with the secrets filled in{enter}"
                if outcome.ok
                else self.redact(outcome.message)
            )
        elif outcome.ok and isinstance(action, POINTER_ACTIONS):
            # the computer's message repeats the pixel point; keep only its notes after it
            message = message.partition("; ")[2]
        notes = targets.notes
        if (
            outcome.url
            and outcome.url != shot.url
            and not isinstance(action, (Navigate, GoBack))
            and outcome.url not in message
        ):
            notes.append(f"the page is now {outcome.url}")
        text_out = "; ".join(p for p in (*notes, message) if p)
        return ActionOutcome(outcome.ok, text_out, outcome.url, abort=outcome.abort)

    def _locate(self, step: _Step, action: Action, shot: Screenshot) -> Steps:
        """The action's targets in screenshot pixels (_Targets), or a failed outcome saying
        why there are none: a 0..1000 point is mapped, an `element` is grounded."""
        targets = _Targets()
        for which, norm, element in target_specs(action):
            if norm is not None:
                try:
                    resolved = checked_norm_to_pixels(norm, shot.size)
                except OffScreenError as exc:
                    return ActionOutcome(False, str(exc))
            else:
                assert element is not None
                grounded = yield from self._ground(step, element, shot)
                if isinstance(grounded, ActionOutcome):
                    return grounded
                resolved, found_at = grounded
                targets.notes.append(f"found {element!r} at {found_at}")
            if which == "end":
                targets.end = resolved
            else:
                targets.point = step.point = resolved
        return targets

    def _ground(self, step: _Step, element: str, shot: Screenshot) -> Steps:
        """Ask the grounder where `element` is on `shot`: (pixel point, 0..1000 point), or a
        failed outcome. Raises _EndRun when the grounding model call raises."""
        timer = step.timer
        with timer.phase("grounding"):
            block = yield Blocking(lambda: shot.content_block(self.grounder))
            message = grounding_message(block, element, self.grounding_prompt)
        with timer.phase("grounding_model"):
            try:
                response = yield ModelCall(self.grounder, [message], self.grounding_kwargs)
            except Exception as exc:
                raise _EndRun(
                    "error", f"the grounding model call failed: {type(exc).__name__}: {exc}"
                ) from exc
        with timer.phase("grounding"):
            result = result_from_text(element, reply_text(response), shot.size)
        if step.record.grounding is None:
            step.record.grounding = GroundingRecord(
                description=element,
                raw=result.raw_text,
                box_norm=result.box_norm,
                point_px=result.point,
            )
            step.box = result.box
        if result.point is None:
            return ActionOutcome(
                False,
                f"could not locate {element!r} on the screenshot ({result.error}). "
                "Describe it differently or give x and y.",
            )
        return result.point, result.point_norm

    def _invalid(self, run: _Run, record: StepRecord, error: str) -> Ending | None:
        """Count a reply without a usable tool call; end the run after too many in a row."""
        run.invalid_streak += 1
        error = self.redact(error)
        record.error = error
        run.history.add(HistoryEntry(step=record.index, kind="invalid", ok=False, message=error))
        run.reminder = f"Your last reply was not a valid tool call:\n{error}"
        logger.info(
            "step %d: invalid reply (%d in a row): %s", record.index, run.invalid_streak, error
        )
        if run.invalid_streak > self.max_retries:
            return (
                "error",
                None,
                f"the model gave no valid tool call {run.invalid_streak} times in a row "
                f"(max_retries={self.max_retries}); last problem: {error}",
            )
        return None

    def _check_repeats(
        self, run: _Run, index: int, action: Action, outcome: ActionOutcome
    ) -> Ending | None:
        """Warn about, then stop, the same action failing again and again."""
        if outcome.abort:
            return ("stopped", None, self.redact(outcome.message))
        if outcome.ok:
            run.fail_signature, run.fail_count = None, 0
            return None
        signature = json.dumps(
            [action.tool_name, action.model_dump(mode="json")], sort_keys=True, default=str
        )
        if signature == run.fail_signature:
            run.fail_count += 1
        else:
            run.fail_signature, run.fail_count = signature, 1
        limit = self.max_repeated_failures
        described = self.redact(action.describe())
        if run.fail_count >= limit:
            return (
                "failed",
                None,
                f"the same action failed {run.fail_count} times in a row: {described}: "
                f"{self.redact(outcome.message)}",
            )
        if run.fail_count >= 2 and run.fail_count == limit - 1:
            warning = (
                f"'{described}' has failed {run.fail_count} times in a row; it will not work "
                "unchanged. Do something different (the run ends if it fails again)."
            )
            run.history.add(HistoryEntry(step=index, kind="note", message=warning))
            run.reminder = warning
        return None

    # ------------------------------------------------------------------ records

    def _clean_url(self, url: str | None) -> str | None:
        return self.redact(url) if url else None

    def _record(self, run: _Run, step: _Step) -> StepRecord:
        """Write the step's screenshots and its (redacted) line in steps.jsonl; returns the
        redacted StepRecord, also what on_step gets. Never raises."""
        record = step.record
        shot = step.shot
        recorder = run.recorder
        try:
            if shot is not None:
                with step.timer.phase("record"):
                    record.screenshot, record.marked_screenshot = recorder.save_screenshot(
                        record.index,
                        lambda: shot.image,  # decoded on the writer thread if not yet
                        step.point,
                        step.box,
                        png=shot.png_bytes(),
                        background=True,
                    )
        except Exception as exc:
            logger.exception("could not save the screenshots of step %d", record.index)
            recorder.lost(f"the screenshots of step {record.index}", exc)
        record.timings = step.timer.timings()
        try:
            data = redact_value(json_safe(record.model_dump()), self.redact)
            clean = StepRecord.model_validate(data)
        except Exception as exc:  # pragma: no cover - json_safe data always validates
            logger.exception("could not clean the record of step %d", record.index)
            recorder.lost(f"step {record.index}", exc)
            return StepRecord(index=record.index, error=self.redact(safe_str(record.error)))
        try:
            recorder.record_step(clean)
        except Exception as exc:
            logger.exception("could not record step %d", record.index)
            recorder.lost(f"step {record.index}", exc)
        return clean

    def _notify(self, record: StepRecord) -> None:
        if self.on_step is None:
            return
        try:
            self.on_step(record)
        except Exception:
            logger.exception("the on_step callback raised")

"""GUIAgent: a LangChain chat model driving a Computer, one tool call per step.

    agent = GUIAgent(ChatInternVL(model=...), BrowserComputer(), allowed_domains=["127.0.0.1"])
    result = agent.run("Sign in as alice", start_url="http://127.0.0.1:8000/")
    print(result.status, result.answer, result.record_path)

The model is any chat model with tool calling and image input (ChatInternVL, ChatOpenAI
against vLLM, ...). See session.py for the step loop and its rules, safety.py for the
domain patterns, risky keys and secret placeholders.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable

from internvl_agent.actions import ACTION_MODELS, BROWSER_ACTIONS, DESKTOP_ACTIONS, action_tools
from internvl_agent.agent.effects import drive_async, drive_sync
from internvl_agent.agent.history import render_system_prompt
from internvl_agent.agent.result import AgentResult
from internvl_agent.agent.safety import DEFAULT_RISKY_KEYS, DomainPolicy, RiskyKeys, Secrets
from internvl_agent.agent.session import RunSession
from internvl_agent.computers.base import Computer
from internvl_agent.errors import ConfigurationError
from internvl_agent.grounding import GROUNDING_PROMPT
from internvl_agent.records import StepRecord

__all__ = ["GUIAgent", "bind_action_tools"]

logger = logging.getLogger("internvl_agent.agent")

ConfirmCallback = Callable[[str], "bool | Awaitable[bool]"]
AskUserCallback = Callable[[str], "str | Awaitable[str | None] | None"]


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
        self.risky_keys = RiskyKeys(risky_keys)
        self.confirm = confirm
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
        call_options = {"max_tiles": max_tiles} if max_tiles is not None else {}
        self.bound_model = bind_action_tools(model, action_tools(self.tool_names), **call_options)
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
            "secrets": self.secrets.names,
            "actions": self.tool_names,
            "max_tiles": self.max_tiles,
        }

    # ------------------------------------------------------------------ running

    def _begin(self, task: str, start_url: str | None) -> RunSession:
        if not isinstance(task, str) or not task.strip():
            raise ConfigurationError("the task must be a non-empty string")
        if start_url is not None and not self.domains.allows(start_url):
            raise ConfigurationError(
                f"start_url {start_url!r} is outside allowed_domains ({self.domains.describe()})"
            )
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("this GUIAgent is already running a task")
        self._stop.clear()
        return RunSession(self, task.strip(), start_url)

    def run(self, task: str, *, start_url: str | None = None) -> AgentResult:
        """Work on `task` until done, failure, max_steps, stop() or an error.

        start_url: opened (by the agent, before step 1) with its outcome in the history.
        Raises only for bad arguments or when the record folder cannot be created; what the
        model does never raises. Model calls run in this thread.
        """
        session = self._begin(task, start_url)
        try:
            return drive_sync(session.loop())
        finally:
            self._busy.release()

    async def arun(self, task: str, *, start_url: str | None = None) -> AgentResult:
        """Async `run`: model calls are awaited (ainvoke); computer calls and disk writes run
        on `computer_executor`."""
        session = self._begin(task, start_url)
        try:
            return await drive_async(session.loop(), self.computer_executor)
        finally:
            self._busy.release()

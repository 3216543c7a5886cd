"""GUIAgent: a LangChain chat model driving a Computer, one tool call per step.

    agent = GUIAgent(ChatInternVL(model=...), BrowserComputer(), allowed_domains=["127.0.0.1"])
    result = agent.run("Sign in as alice", start_url="http://127.0.0.1:8000/")
    print(result.status, result.answer, result.record_path)

    graph = create_gui_agent(model, computer, checkpointer=InMemorySaver())  # LangGraph

The model is any chat model with tool calling and image input (ChatInternVL, ChatOpenAI
against vLLM, ...). The run is a LangGraph graph whose nodes are GUIAgent methods over a
serialisable state (state.py); `run` / `arun` stream the same graph and answer its
interrupts with the confirm / ask_user callbacks, so there is one implementation of a step:

    start    open the record, open start_url
    observe  capture the screen; it joins the history's last K screenshots (by file path)
    decide   build the messages (history.py), call the model, read one tool call (actions.py)
             -> done / an invalid reply: record; ask_user: act; else: ground
    ground   locate the targets (0..1000 -> screenshot pixels; `element` grounded by the
             grounder)
    check    the guard (safety.py): blocked, or risky -> interrupt() for a person's approval
             (approve / reject / edit: an edit goes back to ground)
    act      execute (ask_user: interrupt() for the answer) -> keep the page allowed
    record   the outcome into the history, loop detection, the step's screenshots and its
             line in steps.jsonl -> observe, or finish
    finish   the run record's end and report.html; the result

Inside a node, I/O is a generator of effects (effects.py), so the sync and async graph share
each node's code. The screenshot crosses the package once: the captured Screenshot goes to the
model as its content block (the PIL image for ChatInternVL) and its PNG bytes to the record;
the state holds its file name, and a process that resumes a run it did not observe captures
the page again (see `_ensure_observed`).

Rules (the numbers are GUIAgent settings):

- A reply without a usable tool call is shown to the model with the reason; after
  max_retries + 1 such replies in a row the run ends with "error".
- The same action (same tool, same validated arguments) failing max_repeated_failures times
  in a row ends the run with "failed"; one failure before that, the model is warned.
- An exception from the model or grounding-model call ends the run with "error"; one from
  the computer becomes a failed outcome (effects.computer_call); a failed screen capture ends
  the run with "error".
- Secrets are redacted from everything the model, the logs, the record, the graph state and
  on_step see; the recorder and the report write what they are given.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import (
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import (
    Runnable,
    RunnableConfig,
    RunnableLambda,
    RunnableWithFallbacks,
)
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.errors import GraphBubbleUp
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, Overwrite, interrupt
from PIL import Image
from pydantic import BaseModel

from internvl_agent.actions import (
    ACTION_MODELS,
    BROWSER_ACTIONS,
    DESKTOP_ACTIONS,
    POINTER_ACTIONS,
    Action,
    ActionValidationError,
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
    parse_action,
    read_reply,
)
from internvl_agent.agent.effects import (
    Blocking,
    HumanCall,
    HumanReply,
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
    Risk,
    RiskyKeys,
    Secrets,
    Visits,
    answer_outcome,
    approved,
    nobody_to_ask,
    redact_value,
    refusal,
)
from internvl_agent.agent.state import (
    DECISIONS,
    AgentInput,
    AgentState,
    Approval,
    ApprovalRequest,
    QuestionRequest,
    read_answer,
    read_approval,
)
from internvl_agent.chat.schema_view import portable_view, tool_view
from internvl_agent.computers.base import ActionOutcome, Computer, Screenshot
from internvl_agent.coordinates import Box, OffScreenError, Point, checked_norm_to_pixels
from internvl_agent.errors import ConfigurationError
from internvl_agent.grounding import (
    GROUNDING_PROMPT,
    draw_box,
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
    StepTimings,
    ToolCallRecord,
    atomic_write,
    json_safe,
    safe_str,
    summarize_messages,
)
from internvl_agent.report import write_report

__all__ = [
    "AgentResult",
    "AgentStatus",
    "GUIAgent",
    "bind_action_tools",
    "create_gui_agent",
    "model_name",
]

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

NODES = ("start", "observe", "decide", "ground", "check", "act", "record", "finish")
"""The graph's nodes, in the order a step runs them."""

_NODES_PER_STEP = 10  # recursion_limit per step: 6 nodes, plus edits (check -> ground -> check)
_RUNNER_ONLY = {
    "confirm": "the graph interrupts instead: answer with Command(resume={'decision': ...})",
    "ask_user": "the graph interrupts instead: answer with Command(resume={'answer': ...})",
    "on_step": "stream the graph instead: graph.stream(..., stream_mode='updates')",
}


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

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> AgentResult:
        """The result of a finished graph run from its final state."""
        result = state.get("result")
        if not result:
            raise ValueError("the run has not finished: its state has no result")
        path = result.get("record_path")
        return cls(
            status=result["status"],
            answer=result.get("answer"),
            steps=result.get("steps", 0),
            record_path=None if path is None else Path(path),
            error=result.get("error"),
            history=[HistoryEntry(**entry) for entry in state.get("history", [])],
            output=result.get("output"),
        )


ToolSchemas = Literal["auto", "exact", "portable"]
OPENAI_HOSTS = ("api.openai.com",)
"""Hosts of OpenAI's own API, which refuses anyOf / oneOf / allOf at the top of a tool's
parameters (HTTP 400 invalid_function_parameters), as Azure OpenAI and Anthropic do."""
PORTABLE_HINT = (
    "; this API refuses the action tools' exact schemas (anyOf at the top): pass "
    "GUIAgent(tool_schemas='portable')"
)


def _takes_exact_schemas(model: Any) -> bool:
    """ChatInternVL decodes a forced call under the exact schemas; so do the servers that
    serve InternVL behind ChatOpenAI (vLLM, lmdeploy, ``internvl-agent serve``: any base URL
    but OpenAI's own). OpenAI, Azure OpenAI, Anthropic and the rest get the portable form."""
    llm_type = getattr(model, "_llm_type", None)
    if llm_type == "internvl":
        return True
    if llm_type != "openai-chat":
        return False
    client = getattr(model, "root_client", None)
    base_url = str(getattr(client, "base_url", "") or getattr(model, "openai_api_base", "") or "")
    host = (urlsplit(base_url).hostname or "").lower() if base_url else "api.openai.com"
    return host not in OPENAI_HOSTS


def tool_schemas_for(model: Any, schemas: ToolSchemas = "auto") -> Literal["exact", "portable"]:
    """Which schemas `model` is given: `schemas`, or for "auto" "exact" where a forced call is
    decoded under them (`_takes_exact_schemas`), "portable" everywhere else."""
    if schemas not in ("auto", "exact", "portable"):
        raise ConfigurationError(f"tool_schemas must be auto, exact or portable, got {schemas!r}")
    if schemas != "auto":
        return schemas
    # a model with fallbacks binds the same tools to each of them: exact only if all take it
    models = (
        [model.runnable, *model.fallbacks] if isinstance(model, RunnableWithFallbacks) else [model]
    )
    return "exact" if all(_takes_exact_schemas(m) for m in models) else "portable"


def _model_call_error(exc: Exception) -> str:
    """The run's error for a failed model call, with the fix when the API refused the
    exact schemas (a hosted OpenAI-compatible gateway given them by "auto")."""
    text = f"the model call failed: {type(exc).__name__}: {exc}"
    lowered = str(exc).lower()
    refused = "anyof" in lowered and ("top level" in lowered or "top-level" in lowered)
    return text + PORTABLE_HINT if refused else text


def bind_action_tools(
    model: Any, tools: Sequence[Any], *, schemas: ToolSchemas = "auto", **kwargs: Any
) -> Runnable:
    """`model.bind_tools(tools, tool_choice="any")`, or without tool_choice when the model
    rejects "any"; ConfigurationError when the model has no tool calling at all.

    `schemas` (see `tool_schemas_for`): "exact" binds the tools as they are; "portable"
    binds OpenAI tool dicts whose parameters are `portable_view` (no anyOf at the top, which
    the OpenAI, Azure OpenAI and Anthropic APIs refuse); the agent validates every call
    against the exact schema.
    """
    if not hasattr(model, "bind_tools"):
        raise ConfigurationError(f"{type(model).__name__} has no bind_tools: it cannot call tools")
    if tool_schemas_for(model, schemas) == "portable":
        tools = [tool_view(convert_to_openai_tool(t), portable_view) for t in tools]
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


def create_gui_agent(
    model: BaseChatModel,
    computer: Computer,
    *,
    checkpointer: BaseCheckpointSaver | None = None,
    human_in_the_loop: bool = True,
    name: str = "gui_agent",
    interrupt_before: Sequence[str] | None = None,
    interrupt_after: Sequence[str] | None = None,
    **options: Any,
) -> CompiledStateGraph:
    """The GUI agent as a compiled LangGraph graph (see docs/langgraph.md).

    options: GUIAgent's (grounder, max_steps, allowed_domains, sensitive_data, record_dir,
    approve_every_action, ...), except its callbacks: risky actions and ask_user interrupt
    the graph (``human_in_the_loop=False`` refuses them instead), and progress comes from
    ``graph.stream(..., stream_mode="updates")``. Input: ``{"task": ..., "start_url": ...}``
    or ``{"messages": [HumanMessage(task)]}``; the answer is appended to ``messages``.
    """
    for option, instead in _RUNNER_ONLY.items():
        if options.get(option) is not None:
            raise ConfigurationError(f"create_gui_agent does not take {option}: {instead}")
    agent = GUIAgent(model, computer, **options)
    return agent.graph(
        checkpointer,
        human_in_the_loop=human_in_the_loop,
        name=name,
        interrupt_before=interrupt_before,
        interrupt_after=interrupt_after,
    )


class _EndRun(Exception):
    """Raised inside a step to end the run with a status."""

    def __init__(self, status: AgentStatus, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


@dataclass
class _Live:
    """What this process holds of a run besides its state: the recorder and the screenshots
    it captured or loaded. A process resuming a run from a checkpoint starts without one."""

    recorder: RunRecorder
    shots: dict[int, Screenshot] = field(default_factory=dict)
    observed: int | None = None  # the step whose screen this process captured


@dataclass
class _Run:
    """One run, as a node works on it (read from the state, written back as its update)."""

    task: str
    live: _Live
    history: History
    frames: list[dict[str, Any]] = field(default_factory=list)  # the state's frames
    visits: Visits = field(default_factory=Visits)  # the guard's memory of pages
    steps: int = 0
    reminder: str | None = None  # told to the model at the next step only
    invalid_streak: int = 0  # replies in a row without a usable tool call
    fail_signature: str | None = None  # the last failing action...
    fail_count: int = 0  # ...and how many times in a row it failed
    output: Any = None  # done's output as JSON, redacted (with output_schema)

    @property
    def recorder(self) -> RunRecorder:
        return self.live.recorder


@dataclass
class _Step:
    """The step in progress, as a node works on it."""

    record: StepRecord
    timer: PhaseTimer = field(default_factory=PhaseTimer)
    spent: dict[str, float] = field(default_factory=dict)  # timings of the earlier nodes
    shot: Screenshot | None = None
    action: Action | None = None
    extra_calls: int = 0
    edited: str | None = None  # the model's action as described, when a person edited it
    located: bool = False  # point / end / notes are the action's targets
    point: Point | None = None  # the action's target, in screenshot pixels
    end: Point | None = None  # drag end
    box: Box | None = None  # the first grounded box, for the marked screenshot
    notes: list[str] = field(default_factory=list)  # "found 'X' at (x, y)"
    page_url: str | None = None  # the page the guard judged
    outcome: ActionOutcome | None = None
    approved: str | None = None
    ending: Ending | None = None


@dataclass(frozen=True)
class _Mode:
    """What a compiled graph may do with a person: confirmations, questions."""

    can_confirm: bool
    can_ask: bool
    system_prompt: str
    name: str = "gui_agent"  # the graph's name, also on its answer message


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


def _signature(action: Action) -> str:
    """Same tool, same validated arguments: the same signature."""
    return json.dumps(
        [action.tool_name, action.model_dump(mode="json")], sort_keys=True, default=str
    )


def _pair(value: Any) -> Any:
    return None if value is None else tuple(value)


def _frame_name(index: int) -> str:
    return f"step-{index:03d}.png"


class GUIAgent:
    """Runs tasks on a computer with a vision-language chat model.

    `run` / `arun` stream the agent's LangGraph graph (`graph()`, `create_gui_agent`) with an
    in-memory checkpointer, answer its interrupts with `confirm` / `ask_user` and hand each
    step's record to `on_step`.

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
    approve_every_action: every action (not done or ask_user) needs a person's approval, as
        risky ones do: `confirm` is asked, or the graph interrupts.
    approval_image: how an approval interrupt shows the screenshot with the target marked:
        "path" (a PNG in the run folder) or "data_url".
    block_foreign_requests: with allowed_domains, a browser never sends a request for a
        document (page, frame, form submission, popup, redirect) outside them; True also
        blocks every other request (images, fetch/XHR, beacons) to foreign hosts, which
        could carry typed secrets out. Default: True when sensitive_data is given.
    output_schema: a pydantic model class or a JSON schema (dict): `done` then carries the
        result in that schema (constrained decoding with ChatInternVL follows it), an invalid
        one is fed back like any invalid call, and `AgentResult.output` is the validated
        object (a model instance, or the JSON value for a dict schema).
    tool_schemas: the action tools' schemas as the model is given them: "exact" (what
        constrained decoding needs), "portable" (a summary without anyOf at the top, which
        the OpenAI, Azure OpenAI and Anthropic APIs refuse; the rules are in the tools'
        descriptions) or "auto": exact for ChatInternVL and for ChatOpenAI with a base URL
        other than OpenAI's (vLLM, lmdeploy, ``internvl-agent serve`` decode a forced call
        under them), portable for any other model (and for a model with fallbacks unless
        every one of them takes exact). Every call is validated against the exact schema.
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
        approve_every_action: bool = False,
        approval_image: Literal["path", "data_url"] = "path",
        output_schema: type[BaseModel] | Mapping[str, Any] | None = None,
        tool_schemas: ToolSchemas = "auto",
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
        if approval_image not in ("path", "data_url"):
            raise ConfigurationError(
                f"approval_image must be 'path' or 'data_url', got {approval_image!r}"
            )
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
        self.approve_every_action = bool(approve_every_action)
        self.approval_image = approval_image
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
        self.bound_model = bind_action_tools(model, tools, schemas=tool_schemas, **call_options)
        self.grounder: Runnable = grounder if grounder is not None else model
        self.grounding_kwargs: dict[str, Any] = dict(call_options)
        if grounding_max_tiles is not None:
            self.grounding_kwargs["max_tiles"] = grounding_max_tiles
        self._prompt_template = system_prompt
        self.system_prompt = self._render_prompt(human_available=ask_user is not None)
        self._stop = threading.Event()
        self._busy = threading.Lock()
        self._executor = executor
        self._own_executor: ThreadPoolExecutor | None = None
        self._lives: OrderedDict[str, _Live] = OrderedDict()  # run folder -> live objects
        self._runner: tuple[CompiledStateGraph, InMemorySaver] | None = None

    def _restrict_requests(self) -> None:
        self.computer.restrict_requests(
            self.domains.allows_request if self.domains.restricted else None,
            subresources=self.block_foreign_requests,
        )

    def _render_prompt(self, *, human_available: bool) -> str:
        return render_system_prompt(
            tools=self.tool_names,
            environment="a web browser"
            if self.computer.kind == "browser"
            else "a computer desktop",
            secret_names=self.secrets.names,
            allowed_domains=self.domains.describe(),
            human_available=human_available,
            template=self._prompt_template,
        )

    # ------------------------------------------------------------------ control

    def stop(self) -> None:
        """Ask the run in progress to end with status "stopped" at the next step boundary.

        Thread-safe; a stop() before a run starts is cleared when it starts.
        """
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        """Whether stop() was called during this run."""
        return self._stop.is_set()

    @property
    def computer_executor(self) -> Executor:
        """The executor `arun` (and the async graph) runs computer calls on (created on
        first use)."""
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

    # ------------------------------------------------------------------ the graph

    def graph(
        self,
        checkpointer: BaseCheckpointSaver | None = None,
        *,
        human_in_the_loop: bool = True,
        name: str = "gui_agent",
        interrupt_before: Sequence[str] | None = None,
        interrupt_after: Sequence[str] | None = None,
    ) -> CompiledStateGraph:
        """This agent's run as a compiled LangGraph graph (nodes: `NODES`).

        human_in_the_loop: risky actions (and every action with approve_every_action) and
        ask_user interrupt the graph (`interrupt()`) for a person's say; False refuses them
        as a run without anyone watching does. Resuming needs a checkpointer and the same
        ``thread_id``. The graph's default recursion_limit fits max_steps.
        """
        mode = _Mode(
            can_confirm=human_in_the_loop,
            can_ask=human_in_the_loop,
            system_prompt=self._render_prompt(human_available=human_in_the_loop),
            name=name,
        )
        return self._compile(mode, checkpointer, interrupt_before, interrupt_after)

    def _compile(
        self,
        mode: _Mode,
        checkpointer: BaseCheckpointSaver | None,
        interrupt_before: Sequence[str] | None = None,
        interrupt_after: Sequence[str] | None = None,
    ) -> CompiledStateGraph:
        builder = StateGraph(AgentState, input_schema=AgentInput)
        nodes: dict[str, Callable[[_Mode, AgentState], Steps]] = {
            "start": self._start_node,
            "observe": self._step_node(self._observe_phase, new_step=True),
            "decide": self._step_node(self._decide_phase),
            "ground": self._step_node(self._ground_phase),
            "check": self._step_node(self._check_phase),
            "act": self._step_node(self._act_phase),
            "record": self._record_node,
            "finish": self._finish_node,
        }
        for node, body in nodes.items():
            builder.add_node(node, self._runnable(node, body, mode))
        builder.add_edge(START, "start")
        builder.add_conditional_edges("start", _after_start, ["observe", "finish"])
        builder.add_conditional_edges("observe", _after_observe, ["decide", "record", "finish"])
        builder.add_conditional_edges("decide", _after_decide, ["ground", "act", "record"])
        builder.add_conditional_edges("ground", _after_ground, ["check", "record"])
        builder.add_conditional_edges("check", _after_check, ["act", "ground", "record"])
        builder.add_edge("act", "record")
        builder.add_conditional_edges("record", _after_record, ["observe", "finish"])
        builder.add_edge("finish", END)
        compiled = builder.compile(
            checkpointer=checkpointer,
            name=mode.name,
            interrupt_before=list(interrupt_before) if interrupt_before else None,
            interrupt_after=list(interrupt_after) if interrupt_after else None,
        )
        return compiled.with_config(recursion_limit=_NODES_PER_STEP * (self.max_steps + 1))

    def _runnable(
        self, name: str, body: Callable[[_Mode, AgentState], Steps], mode: _Mode
    ) -> Runnable:
        """A node that drives `body`'s effects in the calling thread (graph.invoke /
        stream) or awaits them, with blocking work on `computer_executor` (ainvoke /
        astream)."""

        def run_sync(state: AgentState) -> dict[str, Any]:
            return drive_sync(body(mode, state))

        async def run_async(state: AgentState) -> dict[str, Any]:
            return await drive_async(body(mode, state), self.computer_executor)

        return RunnableLambda(run_sync, afunc=run_async, name=name)

    # ------------------------------------------------------------------ running

    def run(self, task: str, *, start_url: str | None = None) -> AgentResult:
        """Work on `task` until done, failure, max_steps, stop() or an error.

        start_url: opened (by the agent, before step 1) with its outcome in the history.
        Raises only for bad arguments or when the record folder cannot be created; what the
        model does never raises. Model calls run in this thread.
        """
        task = self._begin(task, start_url)
        graph, saver = self._runner_graph()
        config: RunnableConfig = {"configurable": {"thread_id": uuid.uuid4().hex}}
        value: Any = {"task": task, "start_url": start_url}
        try:  # _begin took the agent: nothing may raise before this try
            while True:
                pending: list[Any] = []
                for chunk in graph.stream(value, config, stream_mode="updates"):
                    pending += self._take_update(chunk)
                if not pending:
                    return self._result(graph.get_state(config).values)
                value = Command(resume=drive_sync(self._answer(pending[0].value)))
        finally:
            saver.delete_thread(config["configurable"]["thread_id"])
            self._busy.release()

    async def arun(self, task: str, *, start_url: str | None = None) -> AgentResult:
        """Async `run`: model calls are awaited (ainvoke); computer calls and disk writes run
        on `computer_executor`."""
        task = self._begin(task, start_url)
        graph, saver = self._runner_graph()
        config: RunnableConfig = {"configurable": {"thread_id": uuid.uuid4().hex}}
        value: Any = {"task": task, "start_url": start_url}
        try:  # _begin took the agent: nothing may raise before this try
            while True:
                pending: list[Any] = []
                async for chunk in graph.astream(value, config, stream_mode="updates"):
                    pending += self._take_update(chunk)
                if not pending:
                    state = await graph.aget_state(config)
                    return self._result(state.values)
                answer = await drive_async(self._answer(pending[0].value), self.computer_executor)
                value = Command(resume=answer)
        finally:
            saver.delete_thread(config["configurable"]["thread_id"])
            self._busy.release()

    def _result(self, state: Mapping[str, Any]) -> AgentResult:
        result = AgentResult.from_state(state)
        result.output = self._output_value(result.output)
        return result

    def _begin(self, task: str, start_url: str | None) -> str:
        """Check the arguments and take the agent for one run; returns the task, stripped."""
        task = self._check_task(task, start_url)
        self._runner_graph()  # built before the agent is taken
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("this GUIAgent is already running a task")
        self._stop.clear()
        return task

    def _check_task(self, task: Any, start_url: str | None) -> str:
        if not isinstance(task, str) or not task.strip():
            raise ConfigurationError("the task must be a non-empty string")
        if start_url is not None and not self.domains.allows(start_url):
            raise ConfigurationError(
                f"start_url {start_url!r} is outside allowed_domains ({self.domains.describe()})"
            )
        return task.strip()

    def _runner_graph(self) -> tuple[CompiledStateGraph, InMemorySaver]:
        """The graph run / arun stream: the callbacks say who can answer."""
        if self._runner is None:
            saver = InMemorySaver()
            mode = _Mode(
                can_confirm=self.guard.confirm_callback is not None,
                can_ask=self.ask_user is not None,
                system_prompt=self.system_prompt,
            )
            self._runner = (self._compile(mode, saver), saver)
        return self._runner

    def _take_update(self, chunk: Mapping[str, Any]) -> list[Any]:
        """One "updates" chunk: on_step gets a finished step's record; returns interrupts."""
        pending: list[Any] = []
        for node, update in chunk.items():
            if node == "__interrupt__":
                pending.extend(update)
            elif node == "record" and update and update.get("record"):
                self._notify(StepRecord.model_validate(update["record"]))
        return pending

    def _answer(self, request: Mapping[str, Any]) -> Steps:
        """The resume value for an interrupt, from the confirm / ask_user callback."""
        if request.get("type") == "ask_user":
            reply: HumanReply = yield HumanCall(
                self.ask_user or (lambda _q: None), request["question"], self.callback_timeout
            )
            if reply.error is not None:
                return {"error": reply.error}
            return {"answer": None if reply.value is None else safe_str(reply.value)}
        callback = self.guard.confirm_callback or (lambda _d: False)
        reply = yield HumanCall(callback, request["description"], self.callback_timeout)
        if reply.error is not None:
            return {"decision": "reject", "reason": f"the confirmation failed ({reply.error})"}
        return {"decision": "approve" if approved(reply.value) else "reject"}

    # ------------------------------------------------------------------ state <-> run

    def _live(self, run_dir: str) -> _Live:
        """This process's objects of a run: made at the start, or reopened from the run
        folder when the run was started elsewhere (a checkpoint resumed in a new process)."""
        live = self._lives.get(run_dir)
        if live is None:
            live = _Live(RunRecorder.reopen(run_dir))
            self._keep_live(run_dir, live)
        return live

    def _keep_live(self, run_dir: str, live: _Live) -> None:
        self._lives[run_dir] = live
        self._lives.move_to_end(run_dir)
        while len(self._lives) > 8:  # runs left at an interrupt and never resumed
            self._lives.popitem(last=False)

    def _load(self, state: AgentState, *, new_step: bool = False) -> tuple[_Run, _Step]:
        """The run and the step in progress from the state (a new step for observe)."""
        live = self._live(state["run_dir"])
        history = History(self.screenshots_in_history)
        history.entries = [HistoryEntry(**entry) for entry in state.get("history", [])]
        visits = state.get("visits") or {}
        run = _Run(
            task=state.get("task") or "",
            live=live,
            history=history,
            frames=list(state.get("frames") or []),
            visits=Visits(set(visits.get("seen_hosts", [])), visits.get("last_allowed_url")),
            steps=state.get("steps", 0),
            reminder=state.get("reminder"),
            invalid_streak=state.get("invalid_streak", 0),
            fail_signature=state.get("fail_signature"),
            fail_count=state.get("fail_count", 0),
            output=state.get("output"),
        )
        if new_step:
            return run, _Step(StepRecord(index=run.steps + 1))
        record = StepRecord.model_validate(state.get("record") or {"index": run.steps + 1})
        step = _Step(record, spent=dict(state.get("timings") or {}))
        step.shot = self._shot(run, record.index)
        stored = state.get("action")
        if stored:
            step.action = self.action_models[stored["name"]].model_validate(stored["args"])
            step.edited = stored.get("edited")
        step.extra_calls = state.get("extra_calls", 0)
        targets = state.get("targets")
        if targets is not None:
            step.located = True
            step.point, step.end = _pair(targets.get("point")), _pair(targets.get("end"))
            step.box = _pair(targets.get("box"))
            step.notes = list(targets.get("notes", []))
            step.page_url = targets.get("page_url")
        outcome = state.get("outcome")
        if outcome is not None:
            step.outcome = ActionOutcome(**outcome)
        step.approved = state.get("approved")
        ending = state.get("ending")
        if ending:
            step.ending = (ending["status"], ending.get("answer"), ending.get("error"))
        return run, step

    def _shot(self, run: _Run, index: int) -> Screenshot | None:
        """Screenshot `index` of the run: the one this process holds, else its file."""
        shot = run.live.shots.get(index)
        if shot is not None:
            return shot
        frame = next((f for f in run.frames if f["step"] == index), None)
        path = run.recorder.path / (frame["path"] if frame else _frame_name(index))
        if not path.is_file():
            return None
        url = frame.get("url") if frame else None
        title = frame.get("title") if frame else None
        shot = Screenshot(url=url, title=title, png=path.read_bytes())  # decoded when needed
        run.live.shots[index] = shot
        return shot

    def _dump(
        self, run: _Run, step: _Step, state: AgentState, *, full: bool = False
    ) -> dict[str, Any]:
        """The node's update: what changed in the state (text redacted; everything when
        `full`), and the record."""
        redact = self.redact
        action = None
        if step.action is not None:
            args = redact_value(step.action.model_dump(mode="json"), redact)
            action = {"name": step.action.tool_name, "args": args}
            if step.edited is not None:
                action["edited"] = step.edited
        outcome = None
        if step.outcome is not None:
            o = step.outcome
            url = redact(o.url) if o.url else None
            outcome = {"ok": o.ok, "message": redact(o.message), "url": url, "abort": o.abort}
        ending = None
        if step.ending is not None:
            status, answer, error = step.ending
            ending = {
                "status": status,
                "answer": None if answer is None else redact(answer),
                "error": None if error is None else redact(error),
            }
        targets = None
        if step.located:
            targets = {
                "point": step.point,
                "end": step.end,
                "box": step.box,
                "notes": [redact(n) for n in step.notes],
                "page_url": step.page_url,
            }
        update: dict[str, Any] = {
            "frames": run.frames,
            "visits": {
                "seen_hosts": sorted(run.visits.seen_hosts),
                "last_allowed_url": run.visits.last_allowed_url,
            },
            "steps": run.steps,
            "reminder": run.reminder,
            "invalid_streak": run.invalid_streak,
            "fail_signature": run.fail_signature,
            "fail_count": run.fail_count,
            "output": run.output,
            "action": action,
            "extra_calls": step.extra_calls,
            "targets": json_safe(targets),
            "timings": self._timings(step),
            "outcome": outcome,
            "approved": step.approved,
            "ending": ending,
        }
        changed = {k: v for k, v in update.items() if full or state.get(k) != v}
        new_entries = run.history.entries[len(state.get("history", [])) :]
        if new_entries:
            changed["history"] = [asdict(entry) for entry in new_entries]
        changed["record"] = self._clean(step.record)
        return changed

    def _timings(self, step: _Step) -> dict[str, float]:
        """The step's phase seconds: the earlier nodes' plus this one's."""
        spent = dict(step.spent)
        now = step.timer.timings().model_dump(exclude={"framework_overhead"})
        for name, seconds in now.items():
            spent[name] = spent.get(name, 0.0) + seconds
        return spent

    def _clean(self, record: StepRecord) -> dict[str, Any]:
        return redact_value(json_safe(record.model_dump()), self.redact)

    # ------------------------------------------------------------------ nodes

    def _step_node(
        self, phase: Callable[[_Mode, _Run, _Step], Steps], *, new_step: bool = False
    ) -> Callable[[_Mode, AgentState], Steps]:
        """A node running one phase of the step: an error becomes the step's ending (the
        record node writes it); KeyboardInterrupt / cancellation records the step, finishes
        the run as "stopped" and is raised again; an interrupt() passes through."""

        def body(mode: _Mode, state: AgentState) -> Steps:
            if new_step and self.stop_requested:  # asked between steps (on_step included)
                ending = {"status": "stopped", "answer": None, "error": "stopped by stop()"}
                return {"ending": ending, "record": None}
            run, step = self._load(state, new_step=new_step)
            record = step.record
            try:
                yield from phase(mode, run, step)
            except GraphBubbleUp:
                raise
            except _EndRun as end:
                record.error = self.redact(record.error or end.error)
                step.ending = (end.status, None, end.error)
            except LeftAllowedDomains as exc:
                record.error = self.redact(str(exc))
                step.ending = ("failed", None, record.error)
            except Exception as exc:
                logger.exception("step %d failed", record.index)
                record.error = self.redact(f"internal error: {type(exc).__name__}: {exc}")
                step.ending = ("error", None, record.error)
            except BaseException as exc:  # KeyboardInterrupt, CancelledError: record, re-raise
                self._interrupted(run, step, exc)
                raise
            return self._dump(run, step, state)

        return body

    def _interrupted(self, run: _Run, step: _Step | None, exc: BaseException) -> None:
        what = f"interrupted ({type(exc).__name__})"
        if step is not None:
            step.record.error = what
            step.record.timings = StepTimings(**self._timings(step))
            self._record(run, step)
        self._finish(run, ("stopped", None, what))
        self._lives.pop(str(run.recorder.path), None)

    def _start_node(self, mode: _Mode, state: AgentState) -> Steps:
        """Open the record, open start_url; the whole state of a new run."""
        task = state.get("task")
        if not task:
            task = _task_from_messages(state.get("messages") or [])
        start_url = state.get("start_url")
        task = self._check_task(task, start_url)
        self._stop.clear()
        # on the computer's thread (sync Playwright is bound to it), before anything is opened
        yield Blocking(self._restrict_requests)
        meta = redact_value(self.record_meta(start_url), self.redact)
        recorder = yield Blocking(
            lambda: RunRecorder(self.record_dir, task=self.redact(task), meta=meta)
        )
        live = _Live(recorder)
        self._keep_live(str(recorder.path), live)
        run = _Run(task, live, History(self.screenshots_in_history))
        yield Blocking(lambda: self.computer.use_download_dir(recorder.path / "downloads"))
        logger.info("run %s started: %s", recorder.run_id, self.redact(task))
        ending: Ending | None = None
        try:
            ending = (yield from self._open_start(run, start_url)) if start_url else None
        except Exception as exc:  # a bug in the agent itself: keep the record
            logger.exception("the agent loop failed")
            ending = ("error", None, f"internal error: {type(exc).__name__}: {exc}")
        except BaseException as exc:
            self._interrupted(run, None, exc)
            raise
        step = _Step(StepRecord(index=0), ending=ending)
        update = self._dump(run, step, {}, full=True)
        update.update(
            task=task,
            start_url=start_url,
            run_dir=str(recorder.path),
            history=Overwrite([asdict(e) for e in run.history.entries]),
            record=None,
            result=None,
        )
        return update

    def _observe_phase(self, mode: _Mode, run: _Run, step: _Step) -> Steps:
        yield from self._observe(run, step)

    def _decide_phase(self, mode: _Mode, run: _Run, step: _Step) -> Steps:
        """The model's reply: done and invalid replies end the step here."""
        record, index = step.record, step.record.index
        reply = yield from self._decide(mode, run, step)
        if reply.action is None:
            step.ending = self._invalid(run, record, reply.error or "no action")
            return
        run.invalid_streak = 0
        action = reply.action
        record.action = ActionRecord(
            name=action.tool_name, args=action.model_dump(mode="json", exclude_none=True)
        )
        if isinstance(action, Done):
            logger.info("step %d: %s", index, self.redact(action.describe()))
            output = getattr(action, "output", None)
            if output is not None:
                dumped = output.model_dump(mode="json") if isinstance(output, BaseModel) else output
                run.output = redact_value(json_safe(dumped), self.redact)
            step.ending = ("done" if action.success else "failed", action.answer, None)
            return
        step.action, step.extra_calls = action, reply.extra_calls

    def _ground_phase(self, mode: _Mode, run: _Run, step: _Step) -> Steps:
        """The action's targets in screenshot pixels, or a failed outcome."""
        assert step.action is not None
        yield from self._ensure_observed(run, step)
        assert step.shot is not None
        yield from self._locate_into(step, step.action, step.shot)

    def _locate_into(self, step: _Step, action: Action, shot: Screenshot) -> Steps:
        """Locate `action`'s targets on `shot` into `step`; False (with step.outcome set) when
        they cannot be located."""
        targets = yield from self._locate(step, action, shot)
        if isinstance(targets, ActionOutcome):
            step.outcome = targets
            return False
        step.located, step.point, step.end, step.notes = (
            True,
            targets.point,
            targets.end,
            targets.notes,
        )
        return True

    def _check_phase(self, mode: _Mode, run: _Run, step: _Step) -> Steps:
        """The guard's say: blocked, or fine, or risky (and every action with
        approve_every_action): a person approves, refuses or edits it."""
        action = step.action
        assert action is not None
        filled = self.secrets.typed_text(action)
        if isinstance(filled, ActionOutcome):
            step.outcome = filled
            return
        # a secret is judged on the page as it is now (it may have moved since the screenshot)
        step.page_url = yield from self._page_url(run, step, now=filled is not None)
        verdict = self.guard.assess(action, step.page_url, run.visits)
        if isinstance(verdict, ActionOutcome):
            step.outcome = verdict
            return
        if verdict is None and not self.approve_every_action:
            return
        if step.approved == _signature(action):
            return  # a person approved (or wrote) this very action
        risk = verdict or Risk(
            action.describe(), "every action needs approval in this run (approve_every_action)"
        )
        description = self.redact(risk.description)
        if not mode.can_confirm:
            step.outcome = refusal(description, "nobody can confirm it in this run")
            return
        approval, edited = yield from self._approval(run, step, action, risk)
        if approval.decision == "reject":
            step.outcome = refusal(description, approval.reason)
            return
        if edited is None:
            logger.info("confirmed: %s", description)
            step.approved = _signature(action)
            return
        logger.info("edited: %s -> %s", description, self.redact(edited.describe()))
        step.edited = step.edited or self.redact(action.describe())
        step.action, step.approved = edited, _signature(edited)
        step.record.action = ActionRecord(
            name=edited.tool_name, args=edited.model_dump(mode="json", exclude_none=True)
        )
        step.record.grounding, step.box = None, None
        step.located, step.point, step.end, step.notes = False, None, None, []

    def _page_url(self, run: _Run, step: _Step, *, now: bool) -> Steps:
        """The page the guard judges: the screenshot's (or, `now`, the computer's) URL; the
        recorded URL when this process did not capture the step (it captures it again
        before acting)."""
        if run.live.observed != step.record.index:
            return step.record.url
        shot_url = step.shot.url if step.shot is not None else None
        if now:
            return (yield from self.guard.current_url()) or shot_url
        return shot_url

    def _approval(self, run: _Run, step: _Step, action: Action, risk: Risk) -> Steps:
        """interrupt() until the resume value reads as a decision; an edit is validated
        like the model's action. Returns (Approval, the edited action or None)."""
        request = yield Blocking(lambda: self._approval_request(run, step, action, risk))
        yield Blocking(run.recorder.flush)  # the run may be resumed elsewhere: files on disk
        error: str | None = None
        while True:
            value = interrupt({**request, "error": error})
            answer = read_approval(value)
            if isinstance(answer, str):
                error = answer
                continue
            if answer.decision != "edit":
                return answer, None
            edited = self._edited(action, answer)
            if isinstance(edited, str):
                error = edited
                continue
            return answer, edited

    def _edited(self, action: Action, answer: Approval) -> Action | str:
        """The edited action, validated as a model's would be, or why it is not valid."""
        name = answer.name or action.tool_name
        if name in ("done", "ask_user"):
            return f"an edit must stay an action on the computer, not {name}"
        try:
            return parse_action(
                name, answer.args or {}, allowed=self.tool_names, models=self.action_models
            )
        except ActionValidationError as exc:
            return f"the edited action is not valid: {exc}"

    def _approval_request(
        self, run: _Run, step: _Step, action: Action, risk: Risk
    ) -> ApprovalRequest:
        """The interrupt payload: the action, why it is risky, its target marked on the
        screenshot (a PNG written next to the step's, as a path or a data URL)."""
        redact, index = self.redact, step.record.index
        image_path = run.recorder.path / f"step-{index:03d}-approval.png"
        shot = step.shot
        if shot is not None:
            raw = run.recorder.path / _frame_name(index)
            if not raw.exists():  # so another process resuming the run has the screenshot
                atomic_write(raw, shot.png_bytes())
            marked = draw_box(shot.image, box=step.box, point=step.point)
            if step.end is not None:
                marked = draw_box(marked, point=step.end)
            atomic_write(image_path, _png(marked))
        screenshot: str | None = None
        if image_path.is_file():
            screenshot = str(image_path.resolve())
            if self.approval_image == "data_url":
                encoded = base64.b64encode(image_path.read_bytes()).decode("ascii")
                screenshot = "data:image/png;base64," + encoded
        args = redact_value(action.model_dump(mode="json", exclude_none=True), redact)
        description = redact(risk.description)
        element = getattr(action, "element", None) or getattr(action, "from_element", None)
        return {
            "type": "approve_action",
            "step": index,
            "action": {"name": action.tool_name, "args": args},
            "description": description,
            "reason": redact(risk.reason),
            "url": redact(step.page_url) if step.page_url else None,
            "target": {
                "point": list(step.point) if step.point else None,
                "end": list(step.end) if step.end else None,
                "box": list(step.box) if step.box else None,
                "element": redact(element) if element else None,
            },
            "screenshot": screenshot,
            "screenshot_size": list(shot.size) if shot is not None else None,
            "decisions": list(DECISIONS),
            "args_schema": self.action_models[action.tool_name].model_json_schema(),
            "error": None,
            "action_requests": [
                {"name": action.tool_name, "args": args, "description": description}
            ],
            "review_configs": [
                {"action_name": action.tool_name, "allowed_decisions": list(DECISIONS)}
            ],
        }

    def _act_phase(self, mode: _Mode, run: _Run, step: _Step) -> Steps:
        """Run the action (ask_user: put the question to a person)."""
        action = step.action
        assert action is not None
        if isinstance(action, AskUser):
            step.outcome = yield from self._ask(mode, run, step, action.question)
            return
        if (yield from self._ensure_observed(run, step)) or not step.located:
            # captured again (another process resumed the run): locate on the new screen,
            # and the hard rules again (a person's approval does not lift a block)
            assert step.shot is not None
            if not (yield from self._locate_into(step, action, step.shot)):
                return
            step.page_url = step.shot.url
            verdict = self.guard.assess(action, step.page_url, run.visits)
            if isinstance(verdict, ActionOutcome):
                step.outcome = verdict
                return
        assert step.shot is not None
        step.outcome = yield from self._act(run, step, action, step.shot)

    def _ask(self, mode: _Mode, run: _Run, step: _Step, question: str) -> Steps:
        """The ask_user outcome: interrupt() until the resume value reads as an answer."""
        if not mode.can_ask:
            return nobody_to_ask()
        yield Blocking(run.recorder.flush)  # the run may be resumed elsewhere: files on disk
        request: QuestionRequest = {
            "type": "ask_user",
            "step": step.record.index,
            "question": self.redact(question),
            "error": None,
        }
        error: str | None = None
        while True:
            reply = read_answer(interrupt({**request, "error": error}))
            if isinstance(reply, str):
                error = reply
                continue
            return answer_outcome(reply)

    def _record_node(self, mode: _Mode, state: AgentState) -> Steps:
        """The outcome into the history, loop detection, the step's record; the ending."""
        run, step = self._load(state)
        record = step.record
        try:
            if step.ending is None and step.action is not None and step.outcome is not None:
                step.ending = self._conclude(run, step, step.action, step.outcome)
        except Exception as exc:
            logger.exception("step %d failed", record.index)
            record.error = self.redact(f"internal error: {type(exc).__name__}: {exc}")
            step.ending = ("error", None, record.error)
        run.steps = record.index
        try:
            clean = yield Blocking(lambda: self._record(run, step))
        except BaseException as exc:
            self._interrupted(run, None, exc)
            raise
        if step.ending is None and run.steps >= self.max_steps:
            step.ending = (
                "max_steps",
                None,
                f"reached max_steps={self.max_steps} before the task was done",
            )
        update = self._dump(run, step, state)
        update["record"] = clean.model_dump(mode="json")
        return update

    def _conclude(
        self, run: _Run, step: _Step, action: Action, outcome: ActionOutcome
    ) -> Ending | None:
        """What the model is told of the action, into the history; the repeat checks."""
        record, index = step.record, step.record.index
        if step.edited is not None:
            outcome.message = (
                f"the user changed your action ({step.edited}) to "
                f"{action.describe()}: {outcome.message}"
            )
        if step.extra_calls:
            outcome.message += (
                f" (you made {step.extra_calls + 1} tool calls; only the first was run: "
                "make one call per reply)"
            )
        if record.action is not None:
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

    def _finish_node(self, mode: _Mode, state: AgentState) -> Steps:
        """Finish the record and its report; the result (and the answer as a message)."""
        run, step = self._load(state)
        ending: Ending = step.ending or ("error", None, "internal error: the run has no ending")
        ending = self._check_record(run, ending)
        yield Blocking(lambda: self._finish(run, ending))
        ending = self._check_record(run, ending)  # finishing itself may have failed
        status, answer, error = ending
        logger.info("run %s ended: %s", run.recorder.run_id, status)
        answer = None if answer is None else self.redact(answer)
        error = None if error is None else self.redact(error)
        self._lives.pop(state["run_dir"], None)
        text = answer or (f"{status}: {error}" if error else status)
        return {
            "ending": {"status": status, "answer": answer, "error": error},
            "result": {
                "status": status,
                "answer": answer,
                "error": error,
                "steps": run.steps,
                "record_path": str(run.recorder.path),
                "output": run.output if status == "done" else None,
            },
            "messages": [AIMessage(content=text, name=mode.name)],
        }

    # ------------------------------------------------------------------ the phases

    def _output_value(self, output: Any) -> Any:
        """done's output from the state (JSON, secrets redacted) as the output_schema's model
        instance; the JSON itself for a dict schema, or when redaction made it invalid."""
        schema = self.output_schema
        if output is None or not (isinstance(schema, type) and issubclass(schema, BaseModel)):
            return output
        try:
            return schema.model_validate(output)
        except Exception:
            return output

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
        self._add_frame(run, step.record.index, shot)
        return shot

    def _add_frame(self, run: _Run, index: int, shot: Screenshot) -> None:
        """The step's screenshot joins the last K frames (the state keeps its file name,
        this process the Screenshot itself)."""
        live = run.live
        live.shots[index], live.observed = shot, index
        frame = {
            "step": index,
            "path": _frame_name(index),
            "url": self._clean_url(shot.url),
            "title": None if shot.title is None else self.redact(shot.title),
        }
        frames = [f for f in run.frames if f["step"] != index] + [frame]
        run.frames = frames[-self.screenshots_in_history :]
        kept = {f["step"] for f in run.frames}
        for old in [i for i in live.shots if i not in kept]:
            del live.shots[old]

    def _ensure_observed(self, run: _Run, step: _Step) -> Steps:
        """Capture the screen again when this process did not capture this step (the run
        was resumed from a checkpoint elsewhere): the page is reopened at the step's URL
        first when the computer shows another one. True when it captured again."""
        index = step.record.index
        if run.live.observed == index:
            return False
        downloads = run.recorder.path / "downloads"
        yield Blocking(lambda: self.computer.use_download_dir(downloads))
        url = step.record.url
        reopened = ""
        if url and self.domains.allows(url):
            now = yield from self.guard.current_url()
            if now != url:
                computer = self.computer
                yield computer_call("navigate", lambda: computer.navigate(url))
                reopened = f"reopened {url} and "
        yield from self._observe(run, step)
        message = (
            f"the run was resumed in another session: the agent {reopened}captured the screen "
            "again before going on"
        )
        run.history.add(HistoryEntry(step=index, kind="note", message=self.redact(message)))
        logger.info("step %d: %s", index, message)
        return True

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

    def _frames(self, run: _Run, step: _Step) -> Steps:
        """The history's screenshots (the last K, the current one last), from this process
        or from their files; the current one is captured again when it is neither."""
        if self._shot(run, step.record.index) is None:
            yield from self._ensure_observed(run, step)
        for frame in run.frames:
            shot = self._shot(run, frame["step"])
            if shot is not None:
                run.history.add_frame(ScreenFrame(frame["step"], shot))

    def _decide(self, mode: _Mode, run: _Run, step: _Step) -> Steps:
        """Build the messages, call the model, read its reply (a ModelReply)."""
        record = step.record
        yield from self._frames(run, step)
        messages = build_messages(
            mode.system_prompt,
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
                raise _EndRun("error", _model_call_error(exc)) from exc
        reply: ModelReply = read_reply(response, self.tool_names, self.action_models)
        record.raw_model_output = reply.raw
        if reply.tool_name is not None:
            args = json_safe(reply.tool_args or {})  # Python-built replies: any keys, any ints
            record.tool_call = ToolCallRecord(name=safe_str(reply.tool_name), args=args)
        return reply

    def _act(self, run: _Run, step: _Step, action: Action, shot: Screenshot) -> Steps:
        """Execute the checked action at its targets, keep the page on allowed domains;
        returns the outcome the model is told."""
        text = self.secrets.typed_text(action)
        if isinstance(text, ActionOutcome):
            return text
        check_focus = None
        if text is not None:
            # judged again on where the keys go once the field is clicked
            check_focus = self.guard.typing_check(step.page_url or shot.url)
        computer, point, end = self.computer, step.point, step.end
        self._save_screenshots(run, step)  # the marked copy is drawn while the page settles
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
        notes = list(step.notes)
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

    def _save_screenshots(self, run: _Run, step: _Step) -> None:
        """Write the step's screenshot, and hand its marked copy to the recorder's writer
        thread, once. Called just before the action runs, so the drawing overlaps the
        action and the page settling instead of the next capture. Never raises."""
        record, shot = step.record, step.shot
        if shot is None or record.screenshot is not None:
            return
        try:
            with step.timer.phase("record"):
                record.screenshot, record.marked_screenshot = run.recorder.save_screenshot(
                    record.index,
                    lambda: shot.image,  # decoded on the writer thread if not yet
                    step.point,
                    step.box,
                    png=shot.png_bytes(),
                    background=True,
                )
        except Exception as exc:
            logger.exception("could not save the screenshots of step %d", record.index)
            run.recorder.lost(f"the screenshots of step {record.index}", exc)

    def _record(self, run: _Run, step: _Step) -> StepRecord:
        """Write the step's screenshots and its (redacted) line in steps.jsonl; returns the
        redacted StepRecord, also what on_step gets. Never raises."""
        record = step.record
        recorder = run.recorder
        self._save_screenshots(run, step)  # a step that ran no action
        record.timings = StepTimings(**self._timings(step))  # the earlier nodes' phases too
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


# --------------------------------------------------------------------------- routing


def _after_start(state: AgentState) -> str:
    return "finish" if state.get("ending") else "observe"


def _after_observe(state: AgentState) -> str:
    if state.get("ending"):
        return "finish" if state.get("record") is None else "record"  # stopped / failed
    return "decide"


def _after_decide(state: AgentState) -> str:
    action = state.get("action")
    if state.get("ending") or not action:
        return "record"
    return "act" if action["name"] == "ask_user" else "ground"


def _after_ground(state: AgentState) -> str:
    return "record" if state.get("ending") or state.get("outcome") else "check"


def _after_check(state: AgentState) -> str:
    if state.get("ending") or state.get("outcome"):
        return "record"
    return "act" if state.get("targets") is not None else "ground"  # an edit: locate it


def _after_record(state: AgentState) -> str:
    return "finish" if state.get("ending") else "observe"


def _task_from_messages(messages: Sequence[Any]) -> str:
    """The task in the langgraph convention: the text of the last human message."""
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            content = message.content
            if isinstance(content, str):
                return content
            return " ".join(
                block if isinstance(block, str) else str(block.get("text", ""))
                for block in content
                if isinstance(block, str) or block.get("type") == "text"
            )
    return ""


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()

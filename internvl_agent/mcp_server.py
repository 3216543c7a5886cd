"""The computer as an MCP server (the official `mcp` SDK, its MCPServer), for any MCP client.

    server = create_server(BrowserComputer(), model=lambda: ChatInternVL(model=...),
                           allowed_domains=["127.0.0.1"])
    server.run("stdio")            # or: internvl-agent mcp --browser --transport stdio

Tools (their arguments are the agent's own action schemas, actions.py, so MCP clients and
GUIAgent's model share one contract):

- ``screenshot``: the screen as an image, plus its size and URL in text. Coordinates of
  the action tools are integers **0..1000 of the latest screenshot** (as for the agent's
  model; 0 = left/top edge, 1000 = right/bottom), whatever its pixel size; ``element``
  (a description) instead of x/y is grounded by InternVL on the latest screenshot.
- ``click``, ``type_text``, ``press_key``, ``scroll``, ``drag``, ``navigate``, ``go_back``,
  ``wait``: one action each, run through `actions.execute`.
- ``ground``: description -> box and point (pixels of the screenshot and 0..1000) with the
  InternVL model (ChatInternVL through `grounding`), on a new screenshot.
- ``run_task``: a whole GUIAgent run (its model, grounding, records), with one MCP progress
  notification per recorded step.

Safety is the agent's (agent/safety.py `Guard`): navigation outside ``allowed_domains`` is
refused before anything is sent; ``type_text`` fills ``<secret>NAME</secret>`` placeholders
and every text returned is redacted; risky actions (a site not seen yet and not listed, a
secret typed on an unlisted page, a risky key) need confirmation, which is asked through MCP
elicitation when the connection can carry it (a client with the elicitation capability on a
protocol with server-to-client requests); otherwise the action is refused. All computer
calls run on one worker thread (sync Playwright stays on the thread that launched it).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

from langchain_core.language_models import BaseChatModel
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, ImageContent, TextContent
from pydantic import BaseModel, Field

from internvl_agent.actions import (
    ACTION_MODELS,
    BROWSER_ACTIONS,
    DESKTOP_ACTIONS,
    Action,
    ActionValidationError,
    execute,
    parse_action,
)
from internvl_agent.agent.agent import GUIAgent, target_specs
from internvl_agent.agent.effects import Steps, computer_call, drive_async
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
from internvl_agent.grounding import GroundingResult, aground

__all__ = ["LOOPBACK_HOSTS", "ComputerTools", "Confirmation", "create_server"]

logger = logging.getLogger("internvl_agent.mcp")

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
ModelSource = BaseChatModel | Callable[[], BaseChatModel] | None
NOT_ACTIONS = ("done", "ask_user")  # the agent's own control tools, not computer actions


class Confirmation(BaseModel):
    """What the elicitation asks the person: approve the risky action or not."""

    approve: bool = Field(description="Allow the action?")


class ComputerTools:
    """The state behind the MCP tools: the computer, its guard, the model, the latest shot."""

    def __init__(
        self,
        computer: Computer,
        *,
        model: ModelSource = None,
        allowed_domains: Iterable[str] | str | None = None,
        sensitive_data: Mapping[str, str] | None = None,
        risky_keys: Iterable[str] = DEFAULT_RISKY_KEYS,
        record_dir: str | Path = "runs",
        max_tiles: int | None = None,
        confirm_timeout: float | None = 300.0,
    ) -> None:
        self.computer = computer
        self.domains = DomainPolicy(allowed_domains)
        self.secrets = Secrets(sensitive_data)
        self._sensitive = dict(sensitive_data or {})
        self.risky_keys = RiskyKeys(risky_keys)
        self.record_dir = Path(record_dir)
        self.max_tiles = max_tiles
        self.confirm_timeout = confirm_timeout
        self.visits = Visits()
        self.executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="internvl-mcp-computer"
        )
        self.tool_names = [
            n
            for n in (BROWSER_ACTIONS if computer.kind == "browser" else DESKTOP_ACTIONS)
            if n not in NOT_ACTIONS
        ]
        self._model_source = model
        self._model: BaseChatModel | None = None
        self._shot: Screenshot | None = None
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ plumbing

    async def blocking(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the computer's thread."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn)

    def model(self) -> BaseChatModel:
        """The InternVL chat model (built on first use); ToolError when none is configured."""
        if self._model is None:
            source = self._model_source
            if source is None:
                raise ToolError("no model is configured: start the server with --model")
            self._model = source if isinstance(source, BaseChatModel) else source()
        return self._model

    def guard(self, ctx: Context | None) -> Guard:
        """The agent's Guard; its confirmation goes through `ctx`'s elicitation when it can."""
        return Guard(
            domains=self.domains,
            secrets=self.secrets,
            risky_keys=self.risky_keys,
            computer=self.computer,
            confirm=elicitor(ctx),
            timeout=self.confirm_timeout,
        )

    def close(self) -> None:
        """Close the computer on its thread and stop the thread."""
        self.executor.submit(self.computer.close).result()
        self.executor.shutdown(wait=True)

    # ------------------------------------------------------------------ tools

    async def screenshot(self) -> CallToolResult:
        """A new screenshot (the one later coordinates refer to), as image content."""
        async with self._lock:
            shot = await self._capture()
        url = self.secrets.redact(shot.url) if shot.url else "none"
        width, height = shot.size
        text = (
            f"screenshot {width}x{height} px, url {url}. Coordinates for the other tools are "
            "0..1000 of this screenshot's width and height."
        )
        data = shot.data_url().split(",", 1)[1]
        return CallToolResult(
            content=[
                ImageContent(type="image", data=data, mime_type="image/png"),
                TextContent(type="text", text=text),
            ]
        )

    async def act(self, name: str, args: Mapping[str, Any], ctx: Context | None) -> str:
        """Validate one action with the agent's schema, check it, run it; the outcome text.
        Refusals, blocks and failures raise ToolError (an is_error result)."""
        try:
            action = parse_action(name, {k: v for k, v in args.items() if v is not None})
        except ActionValidationError as exc:
            raise ToolError(str(exc)) from None
        async with self._lock:
            shot = self._shot or await self._capture()
            point, end = await self._locate(action, shot)
            outcome = await drive_async(self._run(action, shot, point, end, ctx), self.executor)
            self._shot = None  # the next action needs a new look unless a screenshot is taken
        message = self.secrets.redact(outcome.message)
        if outcome.url:
            message += f" (page: {self.secrets.redact(outcome.url)})"
        if not outcome.ok:
            raise ToolError(message)
        return message or "ok"

    async def ground(self, description: str) -> dict[str, Any]:
        """Where `description` is on a new screenshot: box and point, pixels and 0..1000."""
        async with self._lock:
            shot = await self._capture()
            result = await self._ground(description, shot)
        return {
            "description": description,
            "found": result.ok,
            "box": result.box,
            "point": result.point,
            "box_norm": result.box_norm,
            "point_norm": result.point_norm,
            "image_size": result.image_size,
            "raw": result.raw_text,
            "error": result.error,
        }

    async def run_task(
        self, task: str, start_url: str | None, max_steps: int, ctx: Context | None
    ) -> dict[str, Any]:
        """A whole GUIAgent run with the server's model and safety; progress per step."""
        loop = asyncio.get_running_loop()
        sent: list[asyncio.Task[None]] = []

        def progress(record: Any) -> None:  # called on the event loop (the agent's loop)
            if ctx is None:
                return
            action = record.action.name if record.action else "no action"
            ok = record.outcome.ok if record.outcome else False
            line = f"step {record.index}: {action} {'ok' if ok else 'failed'}"
            sent.append(loop.create_task(ctx.report_progress(record.index, max_steps, line)))

        model = self.model()
        try:
            agent = GUIAgent(
                model,
                self.computer,
                max_steps=max_steps,
                allowed_domains=self.domains.patterns,
                sensitive_data=self._sensitive or None,
                risky_keys=self.risky_keys.combos,
                confirm=elicitor(ctx),
                record_dir=self.record_dir,
                max_tiles=self.max_tiles,
                on_step=progress,
                executor=self.executor,
                callback_timeout=self.confirm_timeout,
            )
        except ConfigurationError as exc:
            raise ToolError(str(exc)) from None
        async with self._lock:
            try:
                result = await agent.arun(task, start_url=start_url)
            except ConfigurationError as exc:
                raise ToolError(str(exc)) from None
            self._shot = None
        await asyncio.gather(*sent, return_exceptions=True)
        return {
            "status": result.status,
            "answer": result.answer,
            "steps": result.steps,
            "error": result.error,
            "record": str(result.record_path) if result.record_path else None,
        }

    # ------------------------------------------------------------------ helpers

    async def _capture(self) -> Screenshot:
        shot: Screenshot = await self.blocking(self.computer.screenshot)
        self.guard(None).observe(self.visits, shot.url)
        self._shot = shot
        return shot

    async def _ground(self, description: str, shot: Screenshot) -> GroundingResult:
        model = self.model()
        kwargs: dict[str, Any] = {"max_tiles": self.max_tiles} if self.max_tiles else {}
        try:
            return await aground(model, shot.image, description, **kwargs)
        except ConfigurationError as exc:
            raise ToolError(str(exc)) from None

    async def _locate(self, action: Action, shot: Screenshot) -> tuple[Point | None, Point | None]:
        """The action's targets in screenshot pixels: 0..1000 mapped, elements grounded."""
        point: Point | None = None
        end: Point | None = None
        for which, norm, element in target_specs(action):
            if norm is not None:
                try:
                    resolved = checked_norm_to_pixels(norm, shot.size)
                except OffScreenError as exc:
                    raise ToolError(str(exc)) from None
            else:
                assert element is not None
                found = await self._ground(element, shot)
                if found.point is None:
                    raise ToolError(
                        f"could not locate {element!r} on the screenshot ({found.error}); "
                        "describe it differently or give x and y (0..1000)"
                    )
                resolved = found.point
            if which == "end":
                end = resolved
            else:
                point = resolved
        return point, end

    def _run(
        self, action: Action, shot: Screenshot, point: Point | None, end: Point | None, ctx: Any
    ) -> Steps:
        """Secrets, Guard.check, execute, Guard.keep_allowed: the agent's order."""
        text = self.secrets.typed_text(action)
        if isinstance(text, ActionOutcome):
            return text
        guard = self.guard(ctx)
        refusal = yield from guard.check(action, shot.url, self.visits)
        if refusal is not None:
            return refusal
        computer = self.computer
        outcome = yield computer_call(
            action.tool_name, lambda: execute(computer, action, point=point, end=end, text=text)
        )
        try:
            outcome = yield from guard.keep_allowed(outcome, self.visits)
        except LeftAllowedDomains as exc:
            return ActionOutcome(False, str(exc))
        if text is not None:  # the computer may echo part of the text
            outcome = ActionOutcome(
                outcome.ok, "typed the text with the secrets filled in", outcome.url
            )
        return outcome


def elicitor(ctx: Context | None) -> Callable[[str], Awaitable[bool]] | None:
    """A confirm callback asking through `ctx`'s MCP elicitation, or None when the client
    declared no elicitation or the connection cannot carry a server-to-client request."""
    if ctx is None:
        return None
    try:
        capabilities = ctx.client_capabilities
        can_send = bool(ctx.session.can_send_request)
    except (ValueError, AttributeError):
        return None
    if capabilities is None or capabilities.elicitation is None or not can_send:
        return None

    async def confirm(description: str) -> bool:
        answer = await ctx.elicit(f"The agent wants to: {description}. Allow it?", Confirmation)
        return answer.action == "accept" and bool(answer.data.approve)

    return confirm


# --------------------------------------------------------------------------- the server


def _action_tool(tools: ComputerTools, name: str) -> Callable[..., Awaitable[str]]:
    """An MCP tool function for action `name` whose parameters are its pydantic fields."""
    model = ACTION_MODELS[name]

    async def tool(ctx: Context, **kwargs: Any) -> str:
        return await tools.act(name, kwargs, ctx)

    params = [inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context)]
    for field_name, info in model.model_fields.items():
        metadata = (info.annotation, *info.metadata, Field(description=info.description))
        annotation = Annotated.__class_getitem__(metadata)  # type: ignore[attr-defined]
        required = info.is_required()
        default = (
            inspect.Parameter.empty if required else info.get_default(call_default_factory=True)
        )
        params.append(
            inspect.Parameter(
                field_name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
            )
        )
    tool.__signature__ = inspect.Signature(params, return_annotation=str)  # type: ignore[attr-defined]
    tool.__name__ = name
    return tool


def create_server(
    computer: Computer,
    *,
    model: ModelSource = None,
    allowed_domains: Iterable[str] | str | None = None,
    sensitive_data: Mapping[str, str] | None = None,
    risky_keys: Iterable[str] = DEFAULT_RISKY_KEYS,
    record_dir: str | Path = "runs",
    max_tiles: int | None = None,
    name: str = "internvl-agent",
) -> MCPServer:
    """An MCPServer whose tools act on `computer` (see the module docstring).

    model: the InternVL chat model for ``ground``, ``element`` targets and ``run_task`` (or a
    function building it on first use). The ComputerTools behind the server is
    ``server.computer_tools``.
    """
    tools = ComputerTools(
        computer,
        model=model,
        allowed_domains=allowed_domains,
        sensitive_data=sensitive_data,
        risky_keys=risky_keys,
        record_dir=record_dir,
        max_tiles=max_tiles,
    )
    domains = tools.domains.describe() or "any"
    secret_names = ", ".join(tools.secrets.names) or "none"
    server: MCPServer = MCPServer(
        name,
        instructions=(
            f"Drives a {computer.kind}. Call screenshot first; coordinates are integers 0..1000 "
            "of the latest screenshot's width and height (or give element, a description, "
            f"instead of x and y). Allowed domains: {domains}. Write secrets as "
            f"<secret>NAME</secret> in type_text (available: {secret_names})."
        ),
    )

    @server.tool(structured_output=False)
    async def screenshot() -> CallToolResult:
        """Capture the screen. Later coordinates (0..1000) refer to this screenshot."""
        return await tools.screenshot()

    for action in tools.tool_names:
        doc = " ".join((ACTION_MODELS[action].__doc__ or action).split())
        server.add_tool(
            _action_tool(tools, action),
            name=action,
            description=f"{doc} Coordinates are 0..1000 of the latest screenshot.",
            structured_output=False,
        )

    @server.tool(structured_output=False)
    async def ground(
        description: Annotated[str, Field(min_length=1, description="The element to find.")],
    ) -> str:
        """Find an element on a new screenshot with InternVL: its box and click point in
        screenshot pixels and in 0..1000 (point_norm is what click's x and y take)."""
        return json.dumps(await tools.ground(description))

    @server.tool(structured_output=False)
    async def run_task(
        ctx: Context,
        task: Annotated[str, Field(min_length=1, description="What the agent should do.")],
        start_url: Annotated[str | None, Field(description="Page to open first.")] = None,
        max_steps: Annotated[int, Field(ge=1, le=100, description="Most model calls.")] = 15,
    ) -> str:
        """Run the GUI agent (InternVL) on a whole task; one progress notification per step.
        Returns status, answer, steps, error and the run record's folder as JSON."""
        return json.dumps(await tools.run_task(task, start_url, max_steps, ctx))

    server.computer_tools = tools  # type: ignore[attr-defined]
    return server


def check_host(host: str, allow_remote: bool) -> None:
    """ConfigurationError for a non-loopback HTTP host unless `allow_remote`."""
    if host not in LOOPBACK_HOSTS and not allow_remote:
        raise ConfigurationError(
            f"--host {host} would let other machines drive this computer; the MCP server "
            f"listens on loopback ({', '.join(LOOPBACK_HOSTS)}) unless you pass --allow-remote"
        )

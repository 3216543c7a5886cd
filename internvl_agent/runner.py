"""Run the GUI agent on one task with a live progress display (used by the CLI and the demo)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from internvl_agent.agent import AgentResult, GUIAgent
from internvl_agent.errors import ConfigurationError
from internvl_agent.records import StepRecord

# Exit status of `internvl-agent run` for each outcome (2 is a usage or configuration error).
EXIT_CODES = {"done": 0, "failed": 1, "max_steps": 3, "stopped": 4, "error": 5}


@dataclass
class RunOptions:
    """What `internvl-agent run` was asked to do."""

    task: str
    url: str | None = None
    model: str | None = None
    device: str = "auto"
    max_steps: int = 15
    max_tiles: int = 6
    headed: bool = False
    record_dir: Path = Path("runs")
    viewport: tuple[int, int] = (1280, 800)
    device_scale_factor: float = 1.0
    allowed_domains: Sequence[str] = ()
    secrets: Mapping[str, str] = field(default_factory=dict)
    assume_yes: bool = False
    browser_path: str | None = None
    desktop: bool = False  # the whole desktop instead of a browser
    monitor: str = "1"  # desktop: 1-based monitor number, "primary" or "all"
    scale_factor: float | None = None  # desktop: override the detected HiDPI factor


def parse_secret_specs(specs: Sequence[str]) -> dict[str, str]:
    """NAME=ENV_VAR pairs → {NAME: value of ENV_VAR}; values never come from the command line."""
    secrets: dict[str, str] = {}
    for spec in specs:
        name, sep, env = spec.partition("=")
        if not sep or not name or not env:
            raise ConfigurationError(
                f"--secret {spec!r}: write NAME=ENV_VAR (the value is read from the "
                "environment so that it never appears in your shell history)"
            )
        if env not in os.environ:
            raise ConfigurationError(f"--secret {name}: environment variable {env} is not set")
        secrets[name] = os.environ[env]
    return secrets


def parse_viewport(text: str) -> tuple[int, int]:
    """'1280x800' -> (1280, 800); anything else is a ConfigurationError showing the form."""
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit() or 0 in (int(width), int(height)):
        raise ConfigurationError(f"--viewport {text!r}: write WIDTHxHEIGHT, e.g. 1280x800")
    return int(width), int(height)


def print_step(console: Console, step: StepRecord) -> None:
    """One line per recorded step: action, target, outcome, time."""
    action = step.action.name if step.action else (step.tool_call.name if step.tool_call else "?")
    args = step.action.args if step.action else {}
    detail = escape(", ".join(f"{k}={v!r}" for k, v in args.items() if v not in (None, "")))
    point = f" @ {step.action.point_px}" if step.action and step.action.point_px else ""
    ok = step.outcome.ok if step.outcome else False
    message = escape(step.outcome.message if step.outcome else (step.error or ""))
    mark = "[green]✓[/]" if ok else "[red]✗[/]"
    console.print(
        f"{mark} step {step.index:>2} [bold]{action}[/]({detail[:80]}){point} "
        f"[dim]{step.timings.total:.1f}s[/] {message[:100]}"
    )


def _terminal_confirm(console: Console):
    def confirm(description: str) -> bool:
        if not sys.stdin.isatty():
            return False
        console.print(f"[yellow]The agent wants to: {escape(description)}[/]")
        return input("Allow? [y/N] ").strip().lower() in ("y", "yes")

    return confirm


def _terminal_ask(console: Console):
    def ask(question: str) -> str:
        console.print(f"[cyan]The agent asks:[/] {escape(question)}")
        return input("> ")

    return ask


def build_computer(options: RunOptions):
    """A DesktopComputer or a BrowserComputer, as the options say (not launched yet)."""
    if options.desktop:
        from internvl_agent.computers.desktop import DesktopComputer

        monitor: int | str = int(options.monitor) if options.monitor.isdigit() else options.monitor
        return DesktopComputer(monitor=monitor, scale_factor=options.scale_factor)
    from internvl_agent.computers.browser import BrowserComputer

    return BrowserComputer(
        headless=not options.headed,
        viewport=options.viewport,
        device_scale_factor=options.device_scale_factor,
        browser_path=options.browser_path,
    )


def build_model(options: RunOptions):
    """ChatInternVL for `options.model` (a hub id or local folder)."""
    from internvl_agent.chat.chat_model import ChatInternVL

    kwargs = {"model": options.model} if options.model else {}
    return ChatInternVL(
        device=options.device, max_tiles=options.max_tiles, max_tokens=256, **kwargs
    )


def run_agent(options: RunOptions, console: Console | None = None) -> AgentResult:
    """Open the browser (or take the desktop), run the agent, print progress and the outcome."""
    from internvl_agent.engine.tiny import NOISE_NOTICE, is_random_checkpoint

    console = console or Console(stderr=True, soft_wrap=True)
    model = build_model(options)
    if is_random_checkpoint(model.model):
        console.print(f"[yellow]{NOISE_NOTICE}[/]")
    interactive = sys.stdin.isatty()
    confirm = (lambda _d: True) if options.assume_yes else _terminal_confirm(console)
    if options.desktop and options.url:
        raise ConfigurationError(
            "--url opens a page in a browser; it cannot be used with --desktop"
        )
    computer = build_computer(options)
    with computer:
        agent = GUIAgent(
            model,
            computer,
            max_steps=options.max_steps,
            max_tiles=options.max_tiles,
            allowed_domains=list(options.allowed_domains) or None,
            sensitive_data=dict(options.secrets) or None,
            confirm=confirm,
            ask_user=_terminal_ask(console) if interactive else None,
            record_dir=options.record_dir,
            on_step=lambda step: print_step(console, step),
        )
        console.print(f"[bold]task:[/] {escape(options.task)}")
        result = agent.run(options.task, start_url=options.url)
    colour = "green" if result.status == "done" else "red"
    console.print(f"[bold {colour}]{result.status}[/] after {result.steps} step(s)")
    if result.answer:
        console.print(f"[bold]answer:[/] {escape(result.answer)}")
    if result.error:
        console.print(f"[bold red]error:[/] {escape(result.error)}")
    if result.record_path:
        console.print(f"record: {result.record_path}  (open {result.record_path}/report.html)")
    return result

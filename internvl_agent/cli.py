"""The `internvl-agent` command line (also ``python -m internvl_agent``).

    internvl-agent tiny-checkpoint | convert | chat | run | ground | serve | report | demo
    internvl-agent replay | mcp
    internvl-agent eval miniwob | eval grounding

Every command parses and checks its options here, then calls the library: ChatInternVL,
GUIAgent, ground, the server, the evaluation harnesses. The terminal side of an agent run
(progress lines, confirm and ask prompts) lives here too; nothing else parses a command line.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from internvl_agent.errors import ConfigurationError, InternVLAgentError
from internvl_agent.evaluation.miniwob import DEFAULT_TASKS

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from internvl_agent.agent import AgentResult
    from internvl_agent.chat.chat_model import ChatInternVL
    from internvl_agent.computers.base import Computer
    from internvl_agent.evaluation.miniwob import EpisodeResult, TimeLimit
    from internvl_agent.records import StepRecord
    from internvl_agent.replay import ReplayStep

app = typer.Typer(
    name="internvl-agent",
    help="InternVL vision-language models as LangChain chat models and GUI agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
eval_app = typer.Typer(
    help="Benchmarks: MiniWoB++ web tasks and ScreenSpot-style grounding.",
    no_args_is_help=True,
)
app.add_typer(eval_app, name="eval")
console = Console(stderr=True, soft_wrap=True)  # progress, notices and errors
stdout = Console(soft_wrap=True)  # results (tables)

# Exit status of `internvl-agent run` for each outcome (2 is a usage or configuration error).
EXIT_CODES = {"done": 0, "failed": 1, "max_steps": 3, "stopped": 4, "error": 5}
REPLAY_EXIT_CODES = {"done": 0, "failed": 1, "stopped": 4, "error": 5, "changed": 6}
LOG_LEVELS = ("debug", "info", "warning", "error")

ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Hub id or local folder of an InternVL checkpoint, native or original (converted "
        "on first use) (default: $INTERNVL_AGENT_MODEL or OpenGVLab/InternVL3-2B-hf).",
    ),
]
DeviceOption = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
AllowedDomainOption = Annotated[
    list[str] | None,
    typer.Option(help="Only visit these hosts (repeatable; '*.example.com' allowed)."),
]


def fail(error: Exception, code: int = 2) -> typer.Exit:
    """Print an error the way a user should see it (no traceback) and pick the exit code."""
    console.print(f"[bold red]error:[/] {escape(str(error))}")
    return typer.Exit(code)


def chat_model(
    model: str | None, device: str, max_tiles: int, max_tokens: int, **options: Any
) -> ChatInternVL:
    """ChatInternVL for `model` (None: its default checkpoint)."""
    from internvl_agent.chat.chat_model import ChatInternVL

    if model:
        options["model"] = model
    return ChatInternVL(device=device, max_tiles=max_tiles, max_tokens=max_tokens, **options)


def warn_if_random(checkpoint: str | None) -> None:
    """Say so when `checkpoint` is a random-weight one (its answers are noise)."""
    from internvl_agent.engine.tiny import NOISE_NOTICE, is_random_checkpoint

    if checkpoint and is_random_checkpoint(checkpoint):
        console.print(f"[yellow]{NOISE_NOTICE}[/]")


# --------------------------------------------------------------------------- option parsing


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


def parse_time_limit(text: str) -> TimeLimit:
    """--time-limit: "none" (lifted), "task" (the page's own) or seconds."""
    from internvl_agent.evaluation.miniwob import episode_max_time_ms

    value = text.strip().lower()
    if value in ("none", "off", "0"):
        return None
    if value == "task":
        return "task"
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigurationError(
            f"--time-limit {text!r}: write none, task, or a number of seconds"
        ) from None
    episode_max_time_ms(seconds)
    return seconds


# --------------------------------------------------------------------------- an agent run


@dataclass(frozen=True)
class RunOptions:
    """What `internvl-agent run` (or `demo`) was asked to do."""

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
    output_schema: dict[str, Any] | None = None  # JSON schema of done's output
    upload_dirs: Sequence[Path] = ()  # folders upload_file may take files from
    cdp_url: str | None = None  # attach to a running Chrome instead of launching one
    user_data_dir: Path | None = None  # persistent browser profile
    storage_state: Path | None = None  # saved cookies/localStorage to load
    save_storage_state: Path | None = None  # where to save them at the end


def print_step(step: StepRecord) -> None:
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


def print_replay_step(step: ReplayStep) -> None:
    """One line per replayed step: recorded step, action, verdict, patch difference."""
    good = step.verdict in ("matched", "regrounded", "done", "skipped")
    diff = "" if step.difference is None else f" (diff {step.difference:.3f})"
    console.print(
        f"{'[green]✓[/]' if good else '[red]✗[/]'} step {step.source_index:>2} "
        f"[bold]{step.action}[/] {step.verdict}{diff} [dim]{escape(step.reason[:100])}[/]"
    )


def terminal_confirm(description: str) -> bool:
    """Ask on the terminal before a risky action; no terminal means no."""
    if not sys.stdin.isatty():
        return False
    console.print(f"[yellow]The agent wants to: {escape(description)}[/]")
    return input("Allow? [y/N] ").strip().lower() in ("y", "yes")


def terminal_ask(question: str) -> str:
    """Put the agent's question to the person at the terminal."""
    console.print(f"[cyan]The agent asks:[/] {escape(question)}")
    return input("> ")


def build_computer(options: RunOptions) -> Computer:
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
        upload_dirs=options.upload_dirs,
        cdp_url=options.cdp_url,
        user_data_dir=options.user_data_dir,
        storage_state=options.storage_state,
    )


def load_output_schema(path: Path | None) -> dict[str, Any] | None:
    """The JSON schema in `path` (for --output-schema), or a ConfigurationError saying why not."""
    if path is None:
        return None
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"--output-schema: cannot read {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"--output-schema: {path} is not JSON ({exc})") from exc
    if not isinstance(schema, dict):
        raise ConfigurationError(f"--output-schema: {path} must hold a JSON object (a schema)")
    return schema


def run_agent(options: RunOptions) -> AgentResult:
    """Open the browser (or take the desktop), run the agent, print progress and the outcome."""
    from internvl_agent.agent import GUIAgent

    model = chat_model(options.model, options.device, options.max_tiles, 256)
    warn_if_random(model.model)
    if options.desktop and options.url:
        raise ConfigurationError(
            "--url opens a page in a browser; it cannot be used with --desktop"
        )
    confirm: Callable[[str], bool] = (lambda _d: True) if options.assume_yes else terminal_confirm
    with build_computer(options) as computer:
        agent = GUIAgent(
            model,
            computer,
            max_steps=options.max_steps,
            max_tiles=options.max_tiles,
            allowed_domains=list(options.allowed_domains) or None,
            sensitive_data=dict(options.secrets) or None,
            confirm=confirm,
            ask_user=terminal_ask if sys.stdin.isatty() else None,
            record_dir=options.record_dir,
            on_step=print_step,
            output_schema=options.output_schema,
        )
        console.print(f"[bold]task:[/] {escape(options.task)}")
        result = agent.run(options.task, start_url=options.url)
        if options.save_storage_state is not None and hasattr(computer, "save_storage_state"):
            computer.save_storage_state(options.save_storage_state)
            console.print(f"storage state saved to {options.save_storage_state}")
    colour = "green" if result.status == "done" else "red"
    console.print(f"[bold {colour}]{result.status}[/] after {result.steps} step(s)")
    if result.answer:
        console.print(f"[bold]answer:[/] {escape(result.answer)}")
    if result.output is not None:
        console.print_json(json.dumps(result.output, ensure_ascii=False, default=str))
    if result.error:
        console.print(f"[bold red]error:[/] {escape(result.error)}")
    if result.record_path:
        console.print(f"record: {result.record_path}  (open {result.record_path}/report.html)")
    return result


# --------------------------------------------------------------------------- commands


@app.command("tiny-checkpoint")
def tiny_checkpoint(
    directory: Annotated[Path, typer.Argument(help="Folder to write the checkpoint to.")],
    size: Annotated[str, typer.Option(help="tiny (<1 MB), 1b or 2b (real layer sizes).")] = "tiny",
    seed: Annotated[int, typer.Option(help="Random seed of the weights.")] = 0,
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help="native (InternVLForConditionalGeneration) or original (InternVL's "
            "remote-code layout, as the model cards ship it).",
        ),
    ] = "native",
    llm: Annotated[
        str, typer.Option(help="Language model of an original checkpoint: qwen2 or internlm2.")
    ] = "qwen2",
) -> None:
    """Write a RANDOM-weight InternVL checkpoint with the real architecture (output is noise)."""
    from internvl_agent.engine.tiny import (
        NOISE_NOTICE,
        write_original_checkpoint,
        write_random_checkpoint,
    )

    try:
        if format == "original":
            path = write_original_checkpoint(directory, llm, size, seed=seed)
        elif format == "native":
            path = write_random_checkpoint(directory, size=size, seed=seed)
        else:
            raise ConfigurationError(f"--format {format!r}: use native or original")
    except InternVLAgentError as exc:
        raise fail(exc) from None
    total = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    console.print(f"wrote {path} ({total / 1024:.0f} KiB)")
    console.print(f"[yellow]{NOISE_NOTICE}[/]")
    print(path)


@app.command("convert")
def convert_command(
    source: Annotated[
        str, typer.Argument(help="Original InternVL checkpoint: a folder or a hub id.")
    ],
    destination: Annotated[Path, typer.Argument(help="New folder for the native checkpoint.")],
    revision: Annotated[str | None, typer.Option(help="Hub revision of SOURCE.")] = None,
) -> None:
    """Convert an original (remote-code) InternVL checkpoint to the native transformers layout,
    e.g. to serve it with vLLM or lmdeploy. No code from the checkpoint is run."""
    from internvl_agent.engine.convert import convert_checkpoint, download_source

    try:
        folder = download_source(source, revision)
        path = convert_checkpoint(folder, destination, source_id=source, revision=revision)
    except InternVLAgentError as exc:
        raise fail(exc) from None
    console.print(f"converted {source} -> {path}")
    print(path)


@app.command()
def chat(
    prompt: Annotated[str, typer.Argument(help="What to ask.")],
    image: Annotated[
        list[str] | None, typer.Option("--image", "-i", help="Image path or URL (repeatable).")
    ] = None,
    model: ModelOption = None,
    device: DeviceOption = "auto",
    max_tiles: Annotated[int, typer.Option(help="Most tiles per image.")] = 12,
    max_tokens: Annotated[int, typer.Option(help="Most tokens to generate.")] = 512,
    temperature: Annotated[float, typer.Option(help="0 decodes greedily.")] = 0.0,
) -> None:
    """Ask ChatInternVL about images and stream the answer to stdout."""
    llm = chat_model(model, device, max_tiles, max_tokens, temperature=temperature)
    warn_if_random(llm.model)
    content: list[str | dict[str, Any]] = [{"type": "image", "url": src} for src in image or []]
    content.append({"type": "text", "text": prompt})
    usage = None
    try:
        for chunk in llm.stream([("human", content)]):
            sys.stdout.write(chunk.text)
            sys.stdout.flush()
            usage = chunk.usage_metadata or usage
    except InternVLAgentError as exc:
        raise fail(exc) from None
    print()
    if usage:
        console.print(
            f"[dim]{usage['input_tokens']} input tokens, {usage['output_tokens']} output tokens[/]"
        )


@app.command()
def run(
    task: Annotated[str, typer.Option("--task", "-t", help="What the agent should do.")],
    url: Annotated[str | None, typer.Option(help="Page to open first.")] = None,
    model: ModelOption = None,
    device: DeviceOption = "auto",
    max_steps: Annotated[int, typer.Option(help="Most model calls in the run.")] = 15,
    max_tiles: Annotated[int, typer.Option(help="Most tiles per screenshot.")] = 6,
    headed: Annotated[bool, typer.Option(help="Show the browser window.")] = False,
    record: Annotated[Path, typer.Option(help="Folder for run records.")] = Path("runs"),
    viewport: Annotated[str, typer.Option(help="Browser viewport, WIDTHxHEIGHT.")] = "1280x800",
    scale: Annotated[float, typer.Option(help="Device scale factor (HiDPI).")] = 1.0,
    allowed_domain: AllowedDomainOption = None,
    secret: Annotated[
        list[str] | None,
        typer.Option(help="NAME=ENV_VAR: the model types <secret>NAME</secret> (repeatable)."),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Allow risky actions unasked.")] = False,
    browser: Annotated[str | None, typer.Option(help="Chromium executable to use.")] = None,
    desktop: Annotated[
        bool, typer.Option("--desktop", help="Act on the whole desktop (pyautogui + mss).")
    ] = False,
    monitor: Annotated[
        str, typer.Option(help="Desktop: monitor number (1 = first), 'primary' or 'all'.")
    ] = "1",
    scale_factor: Annotated[
        float | None, typer.Option(help="Desktop: HiDPI scale factor (default: detected).")
    ] = None,
    output_schema: Annotated[
        Path | None,
        typer.Option(help="JSON schema file: done returns its result in this schema."),
    ] = None,
    upload_dir: Annotated[
        list[Path] | None,
        typer.Option(help="A folder upload_file may take files from (repeatable)."),
    ] = None,
    cdp_url: Annotated[
        str | None,
        typer.Option(help="Attach to a running Chrome (http://127.0.0.1:9222) instead."),
    ] = None,
    user_data_dir: Annotated[
        Path | None, typer.Option(help="Persistent browser profile folder (kept between runs).")
    ] = None,
    storage_state: Annotated[
        Path | None, typer.Option(help="Load cookies and localStorage saved in this file.")
    ] = None,
    save_storage_state: Annotated[
        Path | None, typer.Option(help="Save cookies and localStorage here when the run ends.")
    ] = None,
) -> None:
    """Run the GUI agent on a task in a browser (or, with --desktop, on the desktop).
    Exit status: 0 done, 1 failed, 3 max steps, 4 stopped, 5 error (2: bad options)."""
    try:
        options = RunOptions(
            task=task,
            url=url,
            model=model,
            device=device,
            max_steps=max_steps,
            max_tiles=max_tiles,
            headed=headed,
            record_dir=record,
            viewport=parse_viewport(viewport),
            device_scale_factor=scale,
            allowed_domains=allowed_domain or (),
            secrets=parse_secret_specs(secret or []),
            assume_yes=yes,
            browser_path=browser,
            desktop=desktop,
            monitor=monitor,
            scale_factor=scale_factor,
            output_schema=load_output_schema(output_schema),
            upload_dirs=tuple(upload_dir or ()),
            cdp_url=cdp_url,
            user_data_dir=user_data_dir,
            storage_state=storage_state,
            save_storage_state=save_storage_state,
        )
        result = run_agent(options)
    except InternVLAgentError as exc:
        raise fail(exc) from None
    raise typer.Exit(EXIT_CODES.get(result.status, 5))


@app.command()
def demo(
    model: Annotated[
        str | None,
        typer.Option(
            help="Hub id or local checkpoint folder (default: $INTERNVL_AGENT_MODEL, else a "
            "tiny random-weight checkpoint built in .cache/)."
        ),
    ] = None,
    max_steps: Annotated[int, typer.Option(help="Most model calls in the run.")] = 4,
    headed: Annotated[bool, typer.Option(help="Show the browser window.")] = False,
    record: Annotated[Path, typer.Option(help="Folder for run records.")] = Path("runs"),
) -> None:
    """The quick start's main job: the GUI agent logs in and shops on the bundled web app.
    Exit status: 0 when a random-weight model ran cleanly to a complete record, else as run."""
    from internvl_agent import demo as demo_app
    from internvl_agent.engine.tiny import is_random_checkpoint

    try:
        with demo_app.example_webapp() as url:
            console.print(f"example web app at {url}")
            options = RunOptions(
                task=demo_app.TASK,
                url=url,
                model=demo_app.demo_model(model),
                max_steps=max_steps,
                max_tiles=4,
                headed=headed,
                record_dir=record,
                allowed_domains=("127.0.0.1",),
                secrets=demo_app.SECRETS,
            )
            result = run_agent(options)
    except InternVLAgentError as exc:
        raise fail(exc) from None
    if result.record_path is None or not (result.record_path / "report.html").exists():
        raise typer.Exit(5)
    if is_random_checkpoint(options.model or ""):
        # Random weights cannot do the task; the demo shows the whole stack ran and the run
        # ended cleanly with a complete record.
        console.print("[yellow]random weights: the outcome above is noise, the plumbing is real[/]")
        raise typer.Exit(0)
    raise typer.Exit(EXIT_CODES.get(result.status, 5))


@app.command()
def ground(
    image: Annotated[Path, typer.Argument(help="Screenshot or image file.")],
    description: Annotated[str, typer.Argument(help="The element or region to find.")],
    model: ModelOption = None,
    device: DeviceOption = "auto",
    max_tiles: Annotated[int, typer.Option(help="Most tiles for the image.")] = 12,
    out: Annotated[Path | None, typer.Option(help="Save a copy with the box drawn.")] = None,
) -> None:
    """Find DESCRIPTION in IMAGE with InternVL's grounding; print the box and click point."""
    from internvl_agent.chat.content import load_image
    from internvl_agent.grounding import draw_box
    from internvl_agent.grounding import ground as ground_description

    llm = chat_model(model, device, max_tiles, 128)
    try:
        picture = load_image(image).image
        result = ground_description(llm, picture, description)
    except InternVLAgentError as exc:
        raise fail(exc) from None
    found = {
        "description": description,
        "box": result.box,
        "point": result.point,
        "box_norm": result.box_norm,
        "image_size": result.image_size,
        "raw": result.raw_text,
        "error": result.error,
    }
    print(json.dumps(found, ensure_ascii=False))
    if out is not None and result.ok:
        draw_box(picture, result).save(out)
        console.print(f"saved {out}")
    raise typer.Exit(0 if result.ok else 1)


@app.command()
def serve(
    model: ModelOption = None,
    host: Annotated[
        str,
        typer.Option(help="Address to bind: 127.0.0.1 = this machine only; 0.0.0.0 exposes it."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    device: DeviceOption = "auto",
    dtype: Annotated[str, typer.Option(help="auto, bfloat16, float16 or float32.")] = "auto",
    served_model_name: Annotated[
        list[str] | None, typer.Option(help="Name clients send as 'model' (repeatable).")
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="INTERNVL_AGENT_API_KEY", help="Require 'Authorization: Bearer KEY'."),
    ] = None,
    max_tiles: Annotated[int | None, typer.Option(help="Default tiles per image.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Default most tokens per answer.")] = None,
    remote_images: Annotated[
        bool,
        typer.Option(help="Fetch http(s) image URLs named in requests (public addresses only)."),
    ] = False,
    preload: Annotated[bool, typer.Option(help="Load weights before accepting requests.")] = True,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve the model over the OpenAI chat-completions API (images, tools, streaming)."""
    level = log_level.lower()
    try:
        if level not in LOG_LEVELS:
            raise ConfigurationError(f"--log-level {log_level!r}: use {', '.join(LOG_LEVELS)}")
        logging.basicConfig(level=level.upper(), format="%(levelname)s: %(message)s")
        from internvl_agent import server

        server.serve(
            model,
            host=host,
            port=port,
            device=device,
            dtype=dtype,
            served_model_name=served_model_name,
            api_key=api_key,
            max_tiles=max_tiles,
            max_tokens=max_tokens,
            allow_remote_images=remote_images,
            preload=preload,
            log_level=level,
        )
    except InternVLAgentError as exc:
        raise fail(exc) from None


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="A run folder.")]) -> None:
    """Rebuild report.html of a run (e.g. after a crash)."""
    from internvl_agent.report import write_report

    print(write_report(run_dir))


# --------------------------------------------------------------------------- replay


@app.command()
def replay(
    run_dir: Annotated[Path, typer.Argument(help="The recorded run folder to replay.")],
    url: Annotated[
        str | None,
        typer.Option(help="Start here instead of the run's start page (same paths, new origin)."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Re-ground `element` targets with this InternVL checkpoint "
            "(default: use the recorded points).",
        ),
    ] = None,
    continue_on_change: Annotated[
        bool, typer.Option(help="Go on past a step whose page changed (report it only).")
    ] = False,
    threshold: Annotated[
        float,
        typer.Option(help="Patch difference (0..1) around a target above which it changed."),
    ] = 0.08,
    secret: Annotated[
        list[str] | None,
        typer.Option(help="NAME=ENV_VAR for the run's <secret:NAME> placeholders (repeatable)."),
    ] = None,
    record: Annotated[
        Path | None, typer.Option(help="Folder for the replay's record (default: beside the run).")
    ] = None,
    device: DeviceOption = "auto",
    max_tiles: Annotated[int, typer.Option(help="Most tiles per screenshot (grounding).")] = 6,
    viewport: Annotated[
        str | None,
        typer.Option(help="Browser viewport WIDTHxHEIGHT (default: the recorded screenshot size)."),
    ] = None,
    scale: Annotated[float, typer.Option(help="Device scale factor (HiDPI).")] = 1.0,
    headed: Annotated[bool, typer.Option(help="Show the browser window.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Allow risky actions unasked.")] = False,
    browser: Annotated[str | None, typer.Option(help="Chromium executable to use.")] = None,
) -> None:
    """Re-execute a recorded run's actions without the model, with its safety settings.
    Exit status: 0 every step matched, 1 a step failed or was blocked, 6 the page changed
    (stopped, or went on with --continue-on-change), 5 error, 2 bad options."""
    from internvl_agent.records import load_run
    from internvl_agent.replay import replay_run

    try:
        if not (run_dir / "run.json").is_file():
            raise ConfigurationError(f"{run_dir} is not a run folder (it has no run.json)")
        source = load_run(run_dir)
        desktop = source.info.meta.get("computer") == "desktop"
        if viewport is not None:
            size = parse_viewport(viewport)
        else:
            shot = next((s.screenshot_size for s in source.steps if s.screenshot_size), None)
            size = (round(shot[0] / scale), round(shot[1] / scale)) if shot else (1280, 800)
        options = RunOptions(
            task=source.info.task or "replay",
            headed=headed,
            viewport=size,
            device_scale_factor=scale,
            browser_path=browser,
            desktop=desktop,
        )
        secrets = parse_secret_specs(secret or [])
        grounder = chat_model(model, device, max_tiles, 128) if model else None
        if grounder is not None:
            warn_if_random(grounder.model)
        settings: dict[str, Any] = {
            "grounder": grounder,
            "start_url": url,
            "secrets": secrets,
            "continue_on_change": continue_on_change,
            "threshold": threshold,
            "record_dir": record,
            "confirm": (lambda _d: True) if yes else terminal_confirm,
            "on_step": print_replay_step,
        }
        with build_computer(options) as computer:
            result = replay_run(run_dir, computer, **settings)
    except InternVLAgentError as exc:
        raise fail(exc) from None
    colour = "green" if result.status == "done" else "red"
    console.print(f"[bold {colour}]{result.status}[/] after {len(result.steps)} step(s)")
    if result.reason:
        console.print(f"[bold red]stopped:[/] {escape(result.reason)}")
    console.print(f"record: {result.record_path}  (open {result.record_path}/report.html)")
    raise typer.Exit(REPLAY_EXIT_CODES.get(result.status, 5))


# --------------------------------------------------------------------------- mcp


@app.command("mcp")
def mcp_command(
    browser_: Annotated[
        bool, typer.Option("--browser", help="Serve a headless Chromium (the default).")
    ] = False,
    desktop: Annotated[
        bool, typer.Option("--desktop", help="Serve the whole desktop (pyautogui + mss).")
    ] = False,
    transport: Annotated[str, typer.Option(help="stdio or streamable-http.")] = "stdio",
    host: Annotated[
        str, typer.Option(help="HTTP address; loopback only unless --allow-remote.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8000,
    allow_remote: Annotated[
        bool, typer.Option(help="Allow a non-loopback --host (anyone reaching it drives this).")
    ] = False,
    model: ModelOption = None,
    device: DeviceOption = "auto",
    max_tiles: Annotated[int, typer.Option(help="Most tiles per screenshot.")] = 6,
    url: Annotated[str | None, typer.Option(help="Page to open first (browser).")] = None,
    allowed_domain: AllowedDomainOption = None,
    secret: Annotated[
        list[str] | None,
        typer.Option(help="NAME=ENV_VAR: clients type <secret>NAME</secret> (repeatable)."),
    ] = None,
    record: Annotated[Path, typer.Option(help="Folder for run_task records.")] = Path("runs"),
    viewport: Annotated[str, typer.Option(help="Browser viewport, WIDTHxHEIGHT.")] = "1280x800",
    scale: Annotated[float, typer.Option(help="Device scale factor (HiDPI).")] = 1.0,
    headed: Annotated[bool, typer.Option(help="Show the browser window.")] = False,
    browser_path: Annotated[
        str | None, typer.Option("--browser-path", help="Chromium executable to use.")
    ] = None,
    monitor: Annotated[
        str, typer.Option(help="Desktop: monitor number (1 = first), 'primary' or 'all'.")
    ] = "1",
) -> None:
    """Serve the computer to MCP clients: screenshot, click, type_text, press_key, scroll,
    drag, navigate, go_back, wait, ground and run_task (see docs/mcp.md)."""
    try:
        from internvl_agent.mcp_server import check_host, create_server
    except ImportError as exc:
        raise fail(ConfigurationError(f"{exc}: pip install 'internvl-agent[mcp]'")) from None
    try:
        if browser_ and desktop:
            raise ConfigurationError("--browser and --desktop exclude each other: pick one")
        if transport not in ("stdio", "streamable-http"):
            raise ConfigurationError(f"--transport {transport!r}: use stdio or streamable-http")
        if desktop and url:
            raise ConfigurationError("--url opens a page in a browser; not with --desktop")
        check_host(host, allow_remote)
        options = RunOptions(
            task="mcp",
            headed=headed,
            viewport=parse_viewport(viewport),
            device_scale_factor=scale,
            browser_path=browser_path,
            desktop=desktop,
            monitor=monitor,
        )
        secrets = parse_secret_specs(secret or [])
        domains = list(allowed_domain or []) or None
        if url:
            from internvl_agent.agent.safety import DomainPolicy

            if not DomainPolicy(domains).allows(url):
                raise ConfigurationError(f"--url {url} is outside the allowed domains")
        server = create_server(
            build_computer(options),
            model=(lambda: chat_model(model, device, max_tiles, 256)) if model else None,
            allowed_domains=domains,
            sensitive_data=secrets,
            record_dir=record,
            max_tiles=max_tiles,
        )
        tools = server.computer_tools  # type: ignore[attr-defined]
        if url:
            tools.executor.submit(tools.computer.navigate, url).result()
        console.print(f"[dim]internvl-agent MCP server ({transport}) on a {tools.computer.kind}[/]")
        try:
            if transport == "stdio":
                server.run("stdio")
            else:
                server.run("streamable-http", host=host, port=port)
        finally:
            tools.close()
    except InternVLAgentError as exc:
        raise fail(exc) from None


# --------------------------------------------------------------------------- eval


def _episode_line(result: EpisodeResult) -> str:
    if result.error is not None:
        return f"[red]![/] {result.task} #{result.episode}: harness error: {escape(result.error)}"
    mark = "[green]✓[/]" if result.success else "[red]✗[/]"
    return (
        f"{mark} {result.task} #{result.episode} (seed {result.seed}) reward "
        f"{result.raw_reward:+.2f} in {result.steps} step(s), agent {result.agent_status}"
        f" [dim]{escape(result.instruction or '')}[/]"
    )


@eval_app.command("miniwob")
def eval_miniwob(
    tasks: Annotated[
        list[str] | None,
        typer.Option(
            "--tasks",
            "-t",
            help="MiniWoB++ tasks (repeatable or comma-separated; 'all' for every task). "
            f"Default: {', '.join(DEFAULT_TASKS)}.",
        ),
    ] = None,
    episodes: Annotated[int, typer.Option(min=1, help="Episodes per task.")] = 5,
    concurrency: Annotated[
        int, typer.Option(min=1, help="Episodes at once (a browser and a model each).")
    ] = 1,
    model: ModelOption = None,
    device: DeviceOption = "auto",
    max_steps: Annotated[int, typer.Option(min=1, help="Agent steps per episode.")] = 10,
    max_tiles: Annotated[int, typer.Option(min=1, help="Most tiles per screenshot.")] = 6,
    max_tokens: Annotated[int, typer.Option(min=1, help="Most tokens per model reply.")] = 256,
    seed: Annotated[int, typer.Option(help="Episode i of each task uses seed + i.")] = 0,
    time_limit: Annotated[
        str,
        typer.Option(help="Episode timer: none (lifted), task (the page's own), or seconds."),
    ] = "none",
    viewport: Annotated[str, typer.Option(help="Page size in CSS px, WIDTHxHEIGHT.")] = "160x210",
    scale: Annotated[float, typer.Option(help="Device scale factor.")] = 2.0,
    record: Annotated[
        Path | None, typer.Option(help="Keep every agent run record under this folder.")
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the JSON report.")
    ] = Path("miniwob_report.json"),
    headed: Annotated[bool, typer.Option(help="Show the browser windows.")] = False,
    browser: Annotated[str | None, typer.Option(help="Chromium executable to use.")] = None,
) -> None:
    """Evaluate the GUI agent on MiniWoB++ tasks; rewards come from the task pages.

    Prints a table (per task: success rate, mean reward, mean steps, time per step) and writes
    the JSON report. Exit status 0, or 1 when no episode could be run, 2 for bad options.
    """
    from internvl_agent.evaluation.miniwob import miniwob_table, run_miniwob_eval

    try:
        limit = parse_time_limit(time_limit)
        size = parse_viewport(viewport)
        warn_if_random(model)
        report = run_miniwob_eval(
            lambda _computer: chat_model(model, device, max_tiles, max_tokens),
            tasks,
            episodes,
            concurrency,
            seed=seed,
            max_steps=max_steps,
            record_dir=record,
            time_limit=limit,
            viewport=size,
            device_scale_factor=scale,
            headless=not headed,
            browser_path=browser,
            agent_kwargs={"max_tiles": max_tiles},
            on_episode=lambda result: console.print(_episode_line(result)),
            model_name=model or "(default: $INTERNVL_AGENT_MODEL or InternVL3-2B-hf)",
        )
    except InternVLAgentError as exc:
        raise fail(exc) from None
    path = report.write_json(output)
    stdout.print(miniwob_table(report))
    console.print(f"report: {path}")
    ran_any = any(e.error is None for e in report.episodes)
    raise typer.Exit(0 if ran_any else 1)


@eval_app.command("grounding")
def eval_grounding(
    dataset_dir: Annotated[
        Path,
        typer.Argument(help="Folder with dataset.json (or ScreenSpot's *.json) and images."),
    ],
    model: ModelOption = None,
    device: DeviceOption = "auto",
    max_tiles: Annotated[int, typer.Option(min=1, help="Most tiles per image.")] = 12,
    max_tokens: Annotated[int, typer.Option(min=1, help="Most tokens per answer.")] = 128,
    limit: Annotated[int | None, typer.Option(min=1, help="Evaluate the first N items.")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Items in flight at once.")] = 1,
    bbox_format: Annotated[
        str,
        typer.Option(
            help="auto (screenspot*.json files: xywh, others: xyxy), xyxy or xywh; "
            "an item's own bbox_format field wins."
        ),
    ] = "auto",
    prompt: Annotated[
        str, typer.Option(help="gui (InternVL's UI-element prompt) or region (its own).")
    ] = "gui",
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the JSON report.")
    ] = Path("grounding_report.json"),
) -> None:
    """Grounding accuracy on a ScreenSpot-format dataset: the centre of the predicted box must
    fall inside the target box. Exit status 0, 1 when no item could be evaluated, 2 for bad
    options."""
    from internvl_agent.evaluation.grounding_eval import (
        PROMPTS,
        grounding_table,
        run_grounding_eval,
    )

    try:
        if bbox_format not in ("auto", "xyxy", "xywh"):
            raise ConfigurationError(f"--bbox-format {bbox_format!r}: use auto, xyxy or xywh")
        if prompt not in PROMPTS:
            raise ConfigurationError(f"--prompt {prompt!r}: use {' or '.join(PROMPTS)}")
        warn_if_random(model)
        report = run_grounding_eval(
            chat_model(model, device, max_tiles, max_tokens),
            dataset_dir,
            limit=limit,
            concurrency=concurrency,
            bbox_format=bbox_format,  # type: ignore[arg-type]
            prompt=PROMPTS[prompt],
        )
    except InternVLAgentError as exc:
        raise fail(exc) from None
    path = report.write_json(output)
    stdout.print(grounding_table(report))
    console.print(f"report: {path}")
    evaluated = any(item.status != "error" for item in report.items)
    raise typer.Exit(0 if evaluated or not report.items else 1)

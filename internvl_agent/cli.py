"""The `internvl-agent` command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from internvl_agent.cli_options import DeviceOption, ModelOption
from internvl_agent.errors import InternVLAgentError

app = typer.Typer(
    name="internvl-agent",
    help="InternVL vision-language models as LangChain chat models and GUI agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True, soft_wrap=True)


def fail(error: Exception, code: int = 2) -> typer.Exit:
    """Print an error the way a user should see it (no traceback) and pick the exit code."""
    console.print(f"[bold red]error:[/] {escape(str(error))}")
    return typer.Exit(code)


@app.command("tiny-checkpoint")
def tiny_checkpoint(
    directory: Annotated[Path, typer.Argument(help="Folder to write the checkpoint to.")],
    size: Annotated[str, typer.Option(help="tiny (<1 MB), 1b or 2b (real layer sizes).")] = "tiny",
    seed: Annotated[int, typer.Option(help="Random seed of the weights.")] = 0,
) -> None:
    """Write a RANDOM-weight InternVL checkpoint with the real architecture (output is noise)."""
    from internvl_agent.engine.tiny import NOISE_NOTICE, write_random_checkpoint

    try:
        path = write_random_checkpoint(directory, size=size, seed=seed)
    except InternVLAgentError as exc:
        raise fail(exc) from None
    total = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    console.print(f"wrote {path} ({total / 1024:.0f} KiB)")
    console.print(f"[yellow]{NOISE_NOTICE}[/]")
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
    from internvl_agent.chat.chat_model import ChatInternVL
    from internvl_agent.engine.tiny import NOISE_NOTICE, is_random_checkpoint

    kwargs = {"model": model} if model else {}
    llm = ChatInternVL(
        device=device,
        max_tiles=max_tiles,
        max_tokens=max_tokens,
        temperature=temperature,
        **kwargs,
    )
    if is_random_checkpoint(llm.model):
        console.print(f"[yellow]{NOISE_NOTICE}[/]")
    content: list[dict[str, str]] = [{"type": "image", "url": src} for src in image or []]
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
    allowed_domain: Annotated[
        list[str] | None,
        typer.Option(help="Only visit these hosts (repeatable; '*.example.com' allowed)."),
    ] = None,
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
) -> None:
    """Run the GUI agent on a task in a browser (or, with --desktop, on the desktop).
    Exit status: 0 done, 1 failed, 3 max steps, 4 stopped, 5 error (2: bad options)."""
    from internvl_agent.runner import (
        EXIT_CODES,
        RunOptions,
        parse_secret_specs,
        parse_viewport,
        run_agent,
    )

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
        )
        result = run_agent(options, console)
    except InternVLAgentError as exc:
        raise fail(exc) from None
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
    import json

    from internvl_agent.chat.chat_model import ChatInternVL
    from internvl_agent.chat.content import load_image
    from internvl_agent.grounding import draw_box
    from internvl_agent.grounding import ground as ground_description

    kwargs = {"model": model} if model else {}
    llm = ChatInternVL(device=device, max_tiles=max_tiles, max_tokens=128, **kwargs)
    try:
        picture = load_image(image).image
        result = ground_description(llm, picture, description)
    except InternVLAgentError as exc:
        raise fail(exc) from None
    print(
        json.dumps(
            {
                "description": description,
                "box": result.box,
                "point": result.point,
                "box_norm": result.box_norm,
                "image_size": result.image_size,
                "raw": result.raw_text,
                "error": result.error,
            },
            ensure_ascii=False,
        )
    )
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
        bool, typer.Option(help="Fetch http(s) image URLs named in requests.")
    ] = True,
    preload: Annotated[bool, typer.Option(help="Load weights before accepting requests.")] = True,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve the model over the OpenAI chat-completions API (images, tools, streaming)."""
    import logging

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s: %(message)s")
    from internvl_agent.server import serve as run_server

    try:
        run_server(
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
            log_level=log_level.lower(),
        )
    except InternVLAgentError as exc:
        raise fail(exc) from None


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="A run folder.")]) -> None:
    """Rebuild report.html of a run (e.g. after a crash)."""
    from internvl_agent.report import write_report

    print(write_report(run_dir))


def _eval_app() -> typer.Typer:
    from internvl_agent.evaluation.grounding_eval import eval_grounding_command
    from internvl_agent.evaluation.miniwob import eval_miniwob_command

    eval_app = typer.Typer(
        help="Benchmarks: MiniWoB++ web tasks and ScreenSpot-style grounding.",
        no_args_is_help=True,
    )
    eval_app.command("miniwob")(eval_miniwob_command)
    eval_app.command("grounding")(eval_grounding_command)
    return eval_app


app.add_typer(_eval_app(), name="eval")


def main() -> None:
    app()


if __name__ == "__main__":
    main()

"""The `internvl-agent` command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from internvl_agent.errors import InternVLAgentError

app = typer.Typer(
    name="internvl-agent",
    help="InternVL vision-language models as LangChain chat models and GUI agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Hub id or local folder of a native InternVL checkpoint "
        "(default: $INTERNVL_AGENT_MODEL or OpenGVLab/InternVL3-2B-hf).",
    ),
]
DeviceOption = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]


def fail(error: Exception, code: int = 2) -> typer.Exit:
    """Print an error the way a user should see it (no traceback) and pick the exit code."""
    console.print(f"[bold red]error:[/] {error}")
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()

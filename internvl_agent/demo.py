"""The quick start's main job: the GUI agent on the bundled example web app.

    python -m internvl_agent.demo [--model M] [--max-steps N] [--headed]

Model: --model, else $INTERNVL_AGENT_MODEL, else a tiny random-weight checkpoint built offline
in .cache/ (the whole stack runs for real; its answers are noise, and it says so). The web app
(examples/webapp in a source checkout) is served on 127.0.0.1; the run record lands in runs/.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rich.console import Console

from internvl_agent.errors import InternVLAgentError

REPO = Path(__file__).resolve().parents[1]
WEBAPP = REPO / "examples" / "webapp"
TINY = REPO / ".cache" / "tiny-internvl"
TASK = (
    "Log in with username alice and password <secret>password</secret>, then add the "
    "'Travel mug' to the cart on the shop page and report the cart count."
)


def demo_model(explicit: str | None) -> str:
    """The checkpoint to use; builds the tiny random one when nothing else is named."""
    chosen = explicit or os.environ.get("INTERNVL_AGENT_MODEL")
    if chosen:
        return chosen
    if not (TINY / "config.json").exists():
        from internvl_agent.engine.tiny import write_random_checkpoint

        write_random_checkpoint(TINY)
    return str(TINY)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="hub id or local checkpoint folder")
    parser.add_argument("--max-steps", type=int, default=4)
    parser.add_argument("--headed", action="store_true")
    parser.add_argument("--record", type=Path, default=Path("runs"))
    args = parser.parse_args(argv)
    console = Console(stderr=True, soft_wrap=True)
    if not WEBAPP.is_dir():
        console.print(f"[red]error:[/] the example web app is not at {WEBAPP} (source checkout)")
        return 2
    sys.path.insert(0, str(WEBAPP))
    from serve import serve  # examples/webapp/serve.py

    from internvl_agent.runner import EXIT_CODES, RunOptions, run_agent

    url, server = serve(WEBAPP)
    console.print(f"example web app at {url}")
    try:
        options = RunOptions(
            task=TASK,
            url=url,
            model=demo_model(args.model),
            max_steps=args.max_steps,
            max_tiles=4,
            headed=args.headed,
            record_dir=args.record,
            allowed_domains=("127.0.0.1",),
            secrets={"password": "wonderland"},
        )
        result = run_agent(options, console)
    except InternVLAgentError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        return 2
    finally:
        server.shutdown()
        server.server_close()
    complete = result.record_path is not None and (result.record_path / "report.html").exists()
    if not complete:
        return 5
    from internvl_agent.engine.tiny import is_random_checkpoint

    if is_random_checkpoint(options.model or ""):
        # Random weights cannot do the task; the demo shows the whole stack ran and the run
        # ended cleanly with a complete record.
        console.print("[yellow]random weights: the outcome above is noise, the plumbing is real[/]")
        return 0
    return EXIT_CODES.get(result.status, 5)


if __name__ == "__main__":
    sys.exit(main())

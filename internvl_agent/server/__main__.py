"""``python -m internvl_agent.server``: serve InternVL over the OpenAI chat-completions API."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m internvl_agent.server",
        description="Serve an InternVL checkpoint over the OpenAI chat-completions API.",
    )
    parser.add_argument("--model", "-m", help="hub id or local folder of a native checkpoint")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1: local clients only; 0.0.0.0 exposes the "
        "model to the network)",
    )
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--served-model-name",
        action="append",
        help="name clients use in 'model' (repeatable; default: the checkpoint)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("INTERNVL_AGENT_API_KEY"),
        help="require 'Authorization: Bearer KEY' (default: $INTERNVL_AGENT_API_KEY)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument(
        "--max-tiles", type=int, help="default tiles per image (requests may override)"
    )
    parser.add_argument("--max-tokens", type=int, help="default most tokens per answer")
    parser.add_argument(
        "--no-remote-images",
        action="store_true",
        help="refuse http(s) image URLs (data: URLs only)",
    )
    parser.add_argument("--no-preload", action="store_true", help="load the weights lazily")
    parser.add_argument("--log-level", default="info")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s: %(message)s")
    from internvl_agent.server import serve

    serve(
        args.model,
        host=args.host,
        port=args.port,
        served_model_name=args.served_model_name,
        api_key=args.api_key,
        device=args.device,
        dtype=args.dtype,
        max_tiles=args.max_tiles,
        max_tokens=args.max_tokens,
        allow_remote_images=not args.no_remote_images,
        preload=not args.no_preload,
        log_level=args.log_level.lower(),
    )


if __name__ == "__main__":
    main()

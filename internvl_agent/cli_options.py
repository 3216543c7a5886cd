"""Command-line options shared by every `internvl-agent` command that loads a model."""

from __future__ import annotations

from typing import Annotated

import typer

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

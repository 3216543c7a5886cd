"""How evaluation results are shown and kept: rich tables for the terminal, JSON files on disk.

The reports themselves (`MiniWobReport`, `GroundingReport`) live beside their harnesses; this
module only formats them, so it imports neither harness at run time.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

if TYPE_CHECKING:
    from internvl_agent.evaluation.grounding_eval import GroundingReport, GroupScore
    from internvl_agent.evaluation.miniwob import MiniWobReport, TaskSummary

__all__ = ["format_rate", "grounding_table", "miniwob_table", "ratio", "write_json"]


def ratio(part: float, whole: float) -> float:
    """part / whole, 0.0 when whole is 0."""
    return part / whole if whole else 0.0


def format_rate(value: float) -> str:
    """0.857 -> '85.7%'."""
    return f"{100 * value:.1f}%"


def _seconds(value: float) -> str:
    return "-" if not value or math.isnan(value) else f"{value:.2f}s"


def write_json(path: str | Path, payload: Mapping[str, Any]) -> Path:
    """Write `payload` as indented UTF-8 JSON, atomically (a temp file renamed into place).

    Parent folders are created. Returns the path written.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(payload, indent=2, ensure_ascii=False, default=str)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


# --------------------------------------------------------------------------- MiniWoB


def _task_row(summary: TaskSummary) -> list[str]:
    return [
        summary.task,
        f"{summary.successes}/{summary.episodes}",
        format_rate(summary.success_rate),
        f"{summary.mean_reward:+.2f}",
        f"{summary.mean_steps:.1f}",
        _seconds(summary.seconds_per_step),
        _seconds(summary.model_seconds_per_step),
        str(summary.harness_errors) if summary.harness_errors else "-",
    ]


def miniwob_table(report: MiniWobReport) -> Table:
    """Per task and overall: successes/episodes, success rate, mean raw reward, mean steps,
    seconds per step (all / in model calls) and harness errors (episodes that could not be
    run: page did not load, browser crashed; they count as failures)."""
    table = Table(title="MiniWoB++ evaluation", title_justify="left")
    for name, justify in (
        ("task", "left"),
        ("success", "right"),
        ("rate", "right"),
        ("reward", "right"),
        ("steps", "right"),
        ("s/step", "right"),
        ("model s/step", "right"),
        ("errors", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for summary in report.task_summaries():
        table.add_row(*_task_row(summary))
    table.add_section()
    table.add_row(*_task_row(report.overall()), style="bold")
    return table


# --------------------------------------------------------------------------- grounding


def _group_row(name: str, score: GroupScore) -> list[str]:
    return [
        name,
        str(score.total),
        str(score.correct),
        format_rate(score.accuracy),
        str(score.parse_failures) if score.parse_failures else "-",
        str(score.errors) if score.errors else "-",
    ]


def grounding_table(report: GroundingReport) -> Table:
    """Accuracy per data_type, per platform, per "platform/data_type" and overall (groups a
    dataset does not have are left out)."""
    table = Table(title=f"Grounding accuracy: {report.dataset}", title_justify="left")
    for name, justify in (
        ("group", "left"),
        ("items", "right"),
        ("correct", "right"),
        ("accuracy", "right"),
        ("parse failures", "right"),
        ("errors", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    sections = (
        ("data_type=", report.by_data_type()),
        ("platform=", report.by_platform()),
        ("", report.by_platform_and_type()),  # keys read "platform/data_type"
    )
    for prefix, groups in sections:
        if not groups or set(groups) <= {None, "?/?"}:
            continue  # the dataset has no such field
        for key, score in groups.items():
            table.add_row(*_group_row(f"{prefix}{key if key is not None else '?'}", score))
        table.add_section()
    table.add_row(*_group_row("overall", report.overall()), style="bold")
    return table

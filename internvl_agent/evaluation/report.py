"""What both evaluation harnesses share: ratios, number formats for their tables, JSON files.

The reports (`MiniWobReport`, `GroundingReport`) and their rich tables live beside their
harnesses, which import this module (never the other way round).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from internvl_agent.records import atomic_write

__all__ = ["format_rate", "format_seconds", "ratio", "write_json"]


def ratio(part: float, whole: float) -> float:
    """part / whole, 0.0 when whole is 0."""
    return part / whole if whole else 0.0


def format_rate(value: float) -> str:
    """0.857 -> '85.7%'."""
    return f"{100 * value:.1f}%"


def format_seconds(value: float) -> str:
    """2.345 -> '2.35s'; 0 or NaN -> '-'."""
    return "-" if not value or math.isnan(value) else f"{value:.2f}s"


def write_json(path: str | Path, payload: Mapping[str, Any]) -> Path:
    """Write `payload` as indented UTF-8 JSON, atomically; parent folders are created.

    Returns the path written.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(payload, indent=2, ensure_ascii=False, default=str)
    atomic_write(target, (text + "\n").encode("utf-8"))
    return target

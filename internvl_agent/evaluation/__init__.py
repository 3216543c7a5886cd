"""Benchmarks for InternVL GUI agents: MiniWoB++ episodes and ScreenSpot-style grounding.

    from internvl_agent.evaluation import run_miniwob_eval, run_grounding_eval

    report = run_miniwob_eval(lambda _: ChatInternVL(max_tiles=6), ["click-button"], 10, 2)
    print(report.success_rate); report.write_json("miniwob.json")

    report = run_grounding_eval(ChatInternVL(), "screenspot/")
    print(report.overall().accuracy)

Names load on first use, so importing this package does not start Playwright or torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "run_miniwob_eval": "internvl_agent.evaluation.miniwob",
    "MiniWobReport": "internvl_agent.evaluation.miniwob",
    "EpisodeResult": "internvl_agent.evaluation.miniwob",
    "TaskSummary": "internvl_agent.evaluation.miniwob",
    "DEFAULT_TASKS": "internvl_agent.evaluation.miniwob",
    "available_tasks": "internvl_agent.evaluation.miniwob",
    "run_grounding_eval": "internvl_agent.evaluation.grounding_eval",
    "load_grounding_dataset": "internvl_agent.evaluation.grounding_eval",
    "GroundingReport": "internvl_agent.evaluation.grounding_eval",
    "GroundingSample": "internvl_agent.evaluation.grounding_eval",
    "GroundingItemResult": "internvl_agent.evaluation.grounding_eval",
    "GroupScore": "internvl_agent.evaluation.grounding_eval",
    "miniwob_table": "internvl_agent.evaluation.miniwob",
    "grounding_table": "internvl_agent.evaluation.grounding_eval",
    "write_json": "internvl_agent.evaluation.report",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'internvl_agent.evaluation' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)

"""What the agent tests share: checking a finished run's record, running arun on a new thread."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from internvl_agent.agent import AgentResult
from internvl_agent.records import load_run


def check_record(result: AgentResult) -> list[dict]:
    """The run folder is complete and finished; returns the steps.jsonl lines."""
    assert result.record_path is not None and result.record_path.is_dir()
    path = result.record_path
    info = json.loads((path / "run.json").read_text())
    assert info["status"] == result.status  # finished: no longer "running"
    assert info["step_count"] == result.steps
    lines = [json.loads(line) for line in (path / "steps.jsonl").read_text().splitlines()]
    assert len(lines) == result.steps
    for line in lines:
        if line["screenshot"]:
            assert (path / line["screenshot"]).is_file()
            assert (path / line["marked_screenshot"]).is_file()
    assert (path / "report.html").is_file()
    assert not load_run(path).problems
    return lines


def run_async(coroutine: Coroutine[Any, Any, AgentResult]) -> AgentResult:
    """asyncio.run in a fresh thread: sync Playwright in this process marks the main
    thread's event loop as running while a browser fixture is open."""
    with ThreadPoolExecutor(max_workers=1) as loop_thread:
        return loop_thread.submit(asyncio.run, coroutine).result()

"""SIGKILL of a process in the middle of agent runs leaves every steps.jsonl line valid and a
report that can be rebuilt."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from internvl_agent.records import load_run
from internvl_agent.report import write_report

ROOT = Path(__file__).resolve().parents[2]


def test_sigkill_mid_run_keeps_every_line_valid(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.path.insert(0, sys.argv[2])
        from internvl_agent.agent import GUIAgent
        from tests.support.fuzz import FuzzModel, FuzzScreen
        seed = 0
        while True:  # runs until killed
            agent = GUIAgent(FuzzModel(seed=seed), FuzzScreen(), record_dir=sys.argv[1],
                             max_steps=50, max_retries=50)
            agent.run("fuzz until killed")
            print(seed, flush=True)
            seed += 1
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path), str(ROOT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    killed: Path | None = None
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # one run finished: the next ones follow
        deadline = time.monotonic() + 30
        while killed is None and time.monotonic() < deadline:
            candidate = _run_in_progress(tmp_path)
            if candidate is None:
                time.sleep(0.01)
                continue
            os.kill(proc.pid, signal.SIGSTOP)  # frozen: the run cannot finish behind our back
            if _run_in_progress(tmp_path) == candidate:
                killed = candidate
                break
            os.kill(proc.pid, signal.SIGCONT)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert killed is not None, "no run was caught in progress"
    runs = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    assert len(runs) >= 2
    for run in runs:
        for line in (run / "steps.jsonl").read_text(encoding="utf-8").splitlines():
            json.loads(line)  # never half a line: each is written whole, then fsync'd
        data = load_run(run)
        assert data.problems == [], run.name
        assert write_report(run).is_file()
    unfinished = [run for run in runs if not load_run(run).finished]
    assert unfinished == [killed]  # the one that was killed says so; every other one ended


def _run_in_progress(root: Path) -> Path | None:
    """A run folder whose run.json still says running and that has recorded a step."""
    for run in root.iterdir():
        steps = run / "steps.jsonl"
        try:
            running = json.loads((run / "run.json").read_text(encoding="utf-8"))["status"]
            has_step = steps.is_file() and steps.stat().st_size > 0
        except (OSError, ValueError, KeyError):
            continue
        if running == "running" and has_step:
            return run
    return None

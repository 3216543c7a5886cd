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
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # one run finished: the next is in progress
        time.sleep(0.3)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    runs = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    assert len(runs) >= 2
    for run in runs:
        for line in (run / "steps.jsonl").read_text(encoding="utf-8").splitlines():
            json.loads(line)  # never half a line: each is written whole, then fsync'd
        data = load_run(run)
        assert data.problems == [], run.name
        assert write_report(run).is_file()
    assert not load_run(runs[-1]).finished  # the one that was killed says so

"""A seeded fuzz of model replies over a fake computer: whatever the model returns, nothing
escapes run/arun, no run ends with an internal error, every record is complete and readable,
no action lands off screen, no risky key is pressed without approval, and the secret's value
never reaches the model, the result or the record.

Bounded to about FUZZ_SECONDS (default 3) per test; set INTERNVL_AGENT_FUZZ_SECONDS for a
longer run and INTERNVL_AGENT_FUZZ_SEED to start elsewhere. A failure names its seed.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from pathlib import Path

import pytest

from internvl_agent.agent import GUIAgent
from internvl_agent.agent.safety import RiskyKeys, encoded_forms
from internvl_agent.records import load_run
from tests.support.fuzz import SCREEN, SECRET, SECRET_NAME, FuzzModel, FuzzScreen

FUZZ_SECONDS = float(os.environ.get("INTERNVL_AGENT_FUZZ_SECONDS", "3"))
FIRST_SEED = int(os.environ.get("INTERNVL_AGENT_FUZZ_SEED", "0"))
LEAKS = [form for form in encoded_forms(SECRET) if len(form) >= 6] + [SECRET[:7]]


def _agent(seed: int, tmp_path: Path) -> tuple[GUIAgent, FuzzModel, FuzzScreen, list[str]]:
    rng = random.Random(seed)
    model = FuzzModel(seed=seed)
    screen = FuzzScreen()
    approved: list[str] = []

    def confirm(description: str) -> bool:
        yes = rng.random() < 0.5
        if yes:
            approved.append(description)
        return yes

    agent = GUIAgent(
        model,
        screen,
        record_dir=tmp_path / f"seed-{seed}",
        max_steps=rng.randint(1, 12),
        max_retries=rng.randint(1, 5),
        allowed_domains=["127.0.0.1:8000"] if rng.random() < 0.5 else None,
        sensitive_data={SECRET_NAME: SECRET},
        confirm=confirm if rng.random() < 0.7 else None,
        ask_user=(lambda q: "\ud800 yes") if rng.random() < 0.5 else None,
        screenshots_in_history=rng.randint(1, 3),
    )
    return agent, model, screen, approved


class Tally:
    """What the fuzz saw, for the assertion messages and the report."""

    def __init__(self) -> None:
        self.runs = self.replies = self.groundings = self.steps = 0
        self.statuses: dict[str, int] = {}


def _check(seed: int, agent: GUIAgent, model, screen, approved, result, tally: Tally) -> None:
    where = f"seed {seed}"
    tally.runs += 1
    tally.replies += model.replies
    tally.groundings += model.groundings
    tally.steps += result.steps
    tally.statuses[result.status] = tally.statuses.get(result.status, 0) + 1
    assert "internal error" not in (result.error or ""), f"{where}: {result.error}"
    # the record: finished, complete, every line readable
    path = result.record_path
    info = json.loads((path / "run.json").read_text(encoding="utf-8"))
    assert info["status"] == result.status != "running", where
    assert not info.get("record_incomplete"), f"{where}: {info.get('record_problems')}"
    lines = (path / "steps.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == result.steps, where
    for line in lines:
        json.loads(line)
    data = load_run(path)
    assert not data.problems and len(data.steps) == result.steps, where
    assert (path / "report.html").is_file(), where
    # the computer: no point off the screenshot, no risky key without approval
    width, height = SCREEN
    assert all(0 <= x < width and 0 <= y < height for x, y in screen.clicks), where
    risky = RiskyKeys()
    for keys in screen.keys:
        if risky.matches(keys):
            assert any(d == f"press {keys}" for d in approved), f"{where}: {keys}"
    # the secret: typed only where allowed or approved, never shown
    shown = "\n".join(model.seen_text) + (result.answer or "") + (result.error or "")
    shown += repr(result.history)
    files = b"".join(
        p.read_bytes() for p in path.rglob("*") if p.suffix in (".json", ".jsonl", ".html")
    )
    for leak in LEAKS:
        assert leak not in shown, f"{where}: {leak!r} shown to the model or in the result"
        assert leak.encode() not in files, f"{where}: {leak!r} in the record"


def _fuzz(tmp_path: Path, run_one) -> Tally:
    tally = Tally()
    deadline = time.monotonic() + FUZZ_SECONDS
    seed = FIRST_SEED
    while time.monotonic() < deadline or tally.runs < 5:
        agent, model, screen, approved = _agent(seed, tmp_path)
        try:
            result = run_one(agent)
        except Exception as exc:  # the point of the test: nothing may escape
            pytest.fail(f"seed {seed}: {type(exc).__name__} escaped the run: {exc!r}")
        _check(seed, agent, model, screen, approved, result, tally)
        seed += 1
    print(
        f"fuzz: {tally.runs} runs, {tally.replies} replies, {tally.groundings} grounding "
        f"answers, {tally.steps} steps recorded, statuses {tally.statuses}"
    )
    return tally


def test_fuzzed_replies_never_escape_run(tmp_path: Path) -> None:
    tally = _fuzz(tmp_path, lambda agent: agent.run("fuzz the agent"))
    assert tally.replies > 0 and tally.groundings > 0  # both kinds of call were fuzzed


def test_fuzzed_replies_never_escape_arun(tmp_path: Path) -> None:
    def run_one(agent: GUIAgent):
        try:
            return asyncio.run(agent.arun("fuzz the agent"))
        finally:
            agent.close()

    tally = _fuzz(tmp_path, run_one)
    assert tally.replies > 0

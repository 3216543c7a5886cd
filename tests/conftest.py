"""Shared fixtures: a tiny random-weight InternVL checkpoint built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path to a random-weight InternVL checkpoint with the real architecture (< 1 MB)."""
    from internvl_agent.engine.tiny import write_random_checkpoint

    cached = os.environ.get("INTERNVL_AGENT_TINY_CHECKPOINT")
    if cached and Path(cached, "config.json").exists():
        return Path(cached)
    return write_random_checkpoint(tmp_path_factory.mktemp("tiny-internvl"))

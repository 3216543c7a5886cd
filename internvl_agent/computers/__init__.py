"""Computers the agent acts on: a browser (Playwright) and, later, the desktop."""

from internvl_agent.computers.base import ActionOutcome, Computer, Screenshot

__all__ = ["ActionOutcome", "Computer", "Screenshot"]

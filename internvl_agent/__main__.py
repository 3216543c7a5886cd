"""``python -m internvl_agent``: the same as ``internvl-agent``."""

from __future__ import annotations

from internvl_agent.cli import app

if __name__ == "__main__":
    app(prog_name="internvl-agent")

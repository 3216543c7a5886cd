"""``python -m internvl_agent.server``: the same as ``internvl-agent serve``."""

from __future__ import annotations

import sys


def main() -> None:
    from internvl_agent.cli import app

    app(args=["serve", *sys.argv[1:]], prog_name="python -m internvl_agent.server")


if __name__ == "__main__":
    main()

"""Computers the agent acts on: a browser (Playwright) and the desktop (pyautogui + mss).

`BrowserComputer` and `DesktopComputer` are imported from their modules on first use, so that
importing this package needs neither Playwright nor a display.
"""

from __future__ import annotations

import importlib
from typing import Any

from internvl_agent.computers.base import ActionOutcome, Computer, Screenshot

_LAZY = {
    "BrowserComputer": "internvl_agent.computers.browser",
    "DesktopComputer": "internvl_agent.computers.desktop",
}

__all__ = ["ActionOutcome", "BrowserComputer", "Computer", "DesktopComputer", "Screenshot"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)

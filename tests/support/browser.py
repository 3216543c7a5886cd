"""What the browser tests share: whether a browser is here, and the example web app's server."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

WEBAPP = Path(__file__).resolve().parents[2] / "examples" / "webapp"


def browser_skip_reason() -> str | None:
    """None when Playwright and a Chromium are here, else why the browser tests skip."""
    from internvl_agent.computers.chromium import find_browser
    from internvl_agent.errors import ConfigurationError

    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install 'internvl-agent[browser]')"
    try:
        find_browser()
    except ConfigurationError as exc:
        return str(exc)
    return None


SKIP_REASON = browser_skip_reason()
needs_browser = pytest.mark.skipif(SKIP_REASON is not None, reason=f"no browser: {SKIP_REASON}")


def skip_without_browser() -> None:
    """Skip the calling test (with the reason) when no browser can be launched."""
    if SKIP_REASON is not None:
        pytest.skip(f"no browser: {SKIP_REASON}")


def load_webapp_serve() -> ModuleType:
    """examples/webapp/serve.py as a module (its `serve(directory)` runs the app locally)."""
    spec = importlib.util.spec_from_file_location("webapp_serve", WEBAPP / "serve.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

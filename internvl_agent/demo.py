"""What the quick start's main job (``internvl-agent demo``) runs on: the bundled web app and
a model that is always there.

Model: the one named, else $INTERNVL_AGENT_MODEL, else a tiny random-weight checkpoint built
offline in .cache/ (the whole stack runs for real; its answers are noise, and it says so). The
web app (examples/webapp in a source checkout) is served on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

from internvl_agent.errors import ConfigurationError

REPO = Path(__file__).resolve().parents[1]
WEBAPP = REPO / "examples" / "webapp"
TINY = REPO / ".cache" / "tiny-internvl"
TASK = (
    "Log in with username alice and password <secret>password</secret>, then add the "
    "'Travel mug' to the cart on the shop page and report the cart count."
)
SECRETS = {"password": "wonderland"}
"""The web app's demo password, typed by the agent as <secret>password</secret>."""


def demo_model(explicit: str | None) -> str:
    """The checkpoint to use; builds the tiny random one when nothing else is named."""
    chosen = explicit or os.environ.get("INTERNVL_AGENT_MODEL")
    if chosen:
        return chosen
    if not (TINY / "config.json").exists():
        from internvl_agent.engine.tiny import write_random_checkpoint

        write_random_checkpoint(TINY)
    return str(TINY)


@contextlib.contextmanager
def example_webapp() -> Iterator[str]:
    """Serve examples/webapp on 127.0.0.1 in a thread; yields its URL (ends in /)."""
    if not WEBAPP.is_dir():
        raise ConfigurationError(f"the example web app is not at {WEBAPP} (source checkout)")
    spec = importlib.util.spec_from_file_location("webapp_serve", WEBAPP / "serve.py")
    if spec is None or spec.loader is None:
        raise ConfigurationError(f"cannot load {WEBAPP / 'serve.py'}")
    webapp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(webapp)
    url, server = webapp.serve(WEBAPP)
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()

"""Fixtures the integration tests share: the bundled example web app served on 127.0.0.1.

Whether a browser is here (`needs_browser`, `skip_without_browser`) lives in
tests/support/browser.py, since test modules use it as a decorator as well.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.browser import WEBAPP, load_webapp_serve


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    """Base URL (ending in /) of the example web app (examples/webapp) on 127.0.0.1."""
    url, server = load_webapp_serve().serve(WEBAPP)
    yield url
    server.shutdown()
    server.server_close()

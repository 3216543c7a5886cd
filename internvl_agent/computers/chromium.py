"""Getting Chromium ready for Playwright: find the executable, share the driver per thread.

Browser lookup order: an explicit path, then ``$INTERNVL_AGENT_BROWSER``, then Playwright's
own downloaded Chromium (when its executable exists), then browsers installed on the system.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from internvl_agent.errors import ConfigurationError

if TYPE_CHECKING:
    from playwright.sync_api import Playwright

BROWSER_ENV = "INTERNVL_AGENT_BROWSER"

SYSTEM_COMMANDS: tuple[str, ...] = (
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
)

COMMON_PATHS: tuple[str, ...] = (
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/lib/chromium/chromium",
    "/snap/bin/chromium",
    "/usr/bin/google-chrome",
    "/usr/bin/google-chrome-stable",
    "/opt/google/chrome/chrome",
    "/Applications/Chromium.app/Contents/MacOS/Chromium",
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
    r"C:\Program Files\Google\Chrome\Application\chrome.exe",
    r"C:\Program Files (x86)\Google\Chrome\Application\chrome.exe",
)

INSTALL_HINT = (
    "Install one with `apt-get install chromium` (Debian/Ubuntu) or "
    "`playwright install chromium`, or pass browser_path=... "
    f"(or set ${BROWSER_ENV}) to a Chromium or Chrome executable."
)


def _executable(candidate: str) -> str | None:
    """The absolute path of `candidate` (a path or a command name) if it can be run."""
    path = Path(candidate).expanduser()
    if path.is_file() and os.access(path, os.X_OK):
        return str(path)
    if os.sep not in candidate and (found := shutil.which(candidate)):
        return found
    return None


def system_browsers(
    commands: Iterable[str] = SYSTEM_COMMANDS, paths: Iterable[str] = COMMON_PATHS
) -> list[str]:
    """Every system browser found, commands on PATH first, without duplicates."""
    found: list[str] = []
    for candidate in (*commands, *paths):
        resolved = _executable(candidate)
        if resolved and resolved not in found:
            found.append(resolved)
    return found


def find_browser(
    browser_path: str | None = None,
    *,
    playwright_executable: str | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """The browser executable to launch; ConfigurationError naming the fix when there is none.

    `playwright_executable` is where Playwright would put its own Chromium
    (``playwright.chromium.executable_path``); it is used only if the file exists.
    """
    env = dict(os.environ) if env is None else env
    if browser_path:
        resolved = _executable(browser_path)
        if resolved is None:
            raise ConfigurationError(
                f"browser_path={browser_path!r} is not an executable file. {INSTALL_HINT}"
            )
        return resolved
    if from_env := env.get(BROWSER_ENV, "").strip():
        resolved = _executable(from_env)
        if resolved is None:
            raise ConfigurationError(
                f"${BROWSER_ENV}={from_env!r} is not an executable file. {INSTALL_HINT}"
            )
        return resolved
    if playwright_executable and (resolved := _executable(playwright_executable)):
        return resolved
    if found := system_browsers():
        return found[0]
    looked = ", ".join((*SYSTEM_COMMANDS, "Playwright's browser folder"))
    raise ConfigurationError(
        f"No Chromium or Chrome browser found (looked for {looked}). {INSTALL_HINT}"
    )


# --------------------------------------------------------------------------- driver


class _Driver:
    """A thread's Playwright instance and how many computers use it."""

    def __init__(self, playwright: Playwright) -> None:
        self.playwright = playwright
        self.users = 0


_local = threading.local()


def acquire_playwright() -> Playwright:
    """This thread's Playwright driver, started on first use and reference-counted.

    Playwright's sync API allows one driver per thread (it marks the thread's asyncio loop as
    running between calls), so every computer on a thread shares it.
    """
    driver: _Driver | None = getattr(_local, "driver", None)
    if driver is None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise ConfigurationError(
                "BrowserComputer uses Playwright's sync API, which cannot run inside an asyncio "
                "event loop: create and use it in a dedicated worker thread "
                "(e.g. a ThreadPoolExecutor(max_workers=1))."
            )
        try:
            from playwright.sync_api import sync_playwright
        except ImportError as exc:
            raise ConfigurationError(
                "BrowserComputer needs Playwright: pip install 'internvl-agent[browser]'"
            ) from exc
        driver = _local.driver = _Driver(sync_playwright().start())
    driver.users += 1
    return driver.playwright


def release_playwright(playwright: Playwright) -> None:
    """Drop one use of this thread's driver; the last one stops it."""
    driver: _Driver | None = getattr(_local, "driver", None)
    if driver is None or driver.playwright is not playwright:
        return
    driver.users -= 1
    if driver.users <= 0:
        _local.driver = None
        playwright.stop()

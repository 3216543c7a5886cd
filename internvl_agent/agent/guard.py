"""The safety checks of one run, before and after each action.

Before: `navigate` outside allowed_domains is blocked; risky actions need the user's
confirmation (see human.confirm): opening a site not seen in this run and not listed in
allowed_domains, typing a secret on a page not listed in allowed_domains, pressing one of
the risky keys. After: when the page has left the allowed domains (a link, a redirect, a
submitted form), the guard goes back, or reopens the last allowed page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from internvl_agent.actions import Action, Navigate, PressKey, TypeText
from internvl_agent.agent import human
from internvl_agent.agent.effects import Blocking
from internvl_agent.agent.safety import host_of
from internvl_agent.computers.base import ActionOutcome

if TYPE_CHECKING:
    from internvl_agent.agent.loop import GUIAgent

__all__ = ["Guard", "LeftAllowedDomains"]

logger = logging.getLogger("internvl_agent.agent")
Steps = Generator[Any, Any, Any]


class LeftAllowedDomains(Exception):
    """The page left the allowed domains and could not be brought back."""


def _is_http(url: str | None) -> bool:
    return bool(url) and urlsplit(url or "").scheme.lower() in ("http", "https")


def _safely(fn: Callable[[], ActionOutcome]) -> ActionOutcome:
    try:
        return fn()
    except Exception as exc:
        return ActionOutcome(False, f"{type(exc).__name__}: {exc}")


class Guard:
    """Per-run safety state: the sites seen so far and the last page on an allowed domain."""

    def __init__(self, agent: GUIAgent) -> None:
        self.agent = agent
        self.redact = agent.secrets.redact
        self.seen_hosts: set[str] = set()
        self.last_allowed_url: str | None = None

    def observe(self, url: str | None) -> None:
        """Remember the URL's site as seen, and the URL as the last allowed page."""
        host = host_of(url)
        if host:
            self.seen_hosts.add(host)
        if _is_http(url) and self.agent.domains.allows(url):
            self.last_allowed_url = url

    def check(self, action: Action, page_url: str | None) -> Steps:
        """None when `action` may run, else a failed outcome (blocked or refused)."""
        agent = self.agent
        policy = agent.domains
        if isinstance(action, Navigate):
            if not policy.allows(action.url):
                return ActionOutcome(
                    False,
                    f"blocked: {action.url} is outside the allowed domains "
                    f"({policy.describe()}); nothing was done",
                )
            host = host_of(action.url)
            scheme = urlsplit(action.url).scheme.lower()
            new_site = host not in self.seen_hosts if host else scheme != "about"
            if new_site and not policy.listed(action.url):
                return (yield from self.confirm(f"open {action.url}, a site not visited yet"))
        if isinstance(action, PressKey):
            if agent.computer.is_blocked(action.keys):
                return ActionOutcome(
                    False, f"refused: {action.keys} is blocked on this computer; nothing was done"
                )
            if agent.risky_keys.matches(action.keys):
                return (yield from self.confirm(f"press {action.keys}"))
        if isinstance(action, TypeText):
            names = agent.secrets.used_in(action.text)
            if names and not policy.listed(page_url):
                listed = ", ".join(sorted(set(names)))
                where = page_url or "the screen"
                return (yield from self.confirm(f"type the secret(s) {listed} on {where}"))
        return None

    def confirm(self, description: str) -> Steps:
        """None when the user approves, else a failed outcome saying why nothing was done."""
        agent = self.agent
        description = self.redact(description)
        reason = yield from human.confirm(agent.confirm, description, agent.callback_timeout)
        if reason is None:
            logger.info("confirmed: %s", description)
            return None
        logger.info("refused: %s (%s)", description, reason)
        return ActionOutcome(
            False,
            f"refused: '{description}' needs the user's confirmation and {reason}. Nothing was "
            "done; find another way or call done with success=false.",
        )

    def current_url(self) -> str | None:
        """The computer's URL, None when it has none or asking fails."""
        try:
            return self.agent.computer.current_url()
        except Exception:
            return None

    def keep_allowed(self, outcome: ActionOutcome) -> Steps:
        """`outcome` with the page's URL; if the page left the allowed domains, go back (or
        reopen the last allowed page) and report it as a failure. Raises LeftAllowedDomains
        when neither works."""
        policy = self.agent.domains
        url = (yield Blocking(self.current_url)) or outcome.url
        self.observe(url)
        if not policy.restricted or policy.allows(url):
            return replace(outcome, url=url)
        computer = self.agent.computer
        back = yield Blocking(lambda: _safely(computer.go_back))
        now = yield Blocking(self.current_url)
        if (not back.ok or not policy.allows(now)) and self.last_allowed_url:
            target = self.last_allowed_url
            yield Blocking(lambda: _safely(lambda: computer.navigate(target)))
            now = yield Blocking(self.current_url)
        if not policy.allows(now):
            raise LeftAllowedDomains(
                f"the page went to {url}, outside the allowed domains ({policy.describe()}), "
                "and could not be brought back"
            )
        self.observe(now)
        return ActionOutcome(
            False,
            f"{outcome.message}; but the page went to {url}, outside the allowed domains "
            f"({policy.describe()}), so the agent went back to {now}",
            now,
        )

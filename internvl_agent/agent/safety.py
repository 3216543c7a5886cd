"""Guards around what the model may do: allowed domains, risky keys, secret placeholders.

Domain patterns (``allowed_domains``), matched against the host (and port) of a page URL:

- ``example.com``: that host exactly (any port, http or https); not its subdomains.
- ``*.example.com``: example.com and every subdomain (``a.example.com``, ``a.b.example.com``).
- ``127.0.0.1:8000`` / ``localhost:3000`` / ``[::1]:8080``: that host on that port only
  (a URL without a port has its scheme's default: 80 for http, 443 for https).
- ``https://example.com``: a scheme prefix restricts the scheme too.
- ``*``: any host (http and https).

Hosts compare case-insensitively, without a trailing dot. ``about:`` pages and Chromium's
``chrome-error://`` page (shown after a failed load) are always allowed; other non-http(s)
URLs (``file:``, ``data:``, ``javascript:``...) are blocked whenever an allow list is set.

Secrets: the model never sees values, only names. It writes ``<secret>NAME</secret>`` (or
``<secret:NAME>``, the form records show) in ``type_text`` text and the agent substitutes the
value when typing. Every text that goes to the model, the logs or the run record passes
through ``Secrets.redact`` first.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from internvl_agent.computers.keys import KeySet
from internvl_agent.errors import ConfigurationError
from internvl_agent.records import Redactor, make_redactor

__all__ = [
    "DEFAULT_RISKY_KEYS",
    "DomainPolicy",
    "RiskyKeys",
    "Secrets",
    "UnknownSecretError",
    "host_of",
]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_ALWAYS_ALLOWED_SCHEMES = ("about", "chrome-error")
_HOST_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?$")


def host_of(url: str | None) -> str | None:
    """The lower-cased host of an http(s) URL without a trailing dot, else None."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme.lower() not in _DEFAULT_PORTS or not host:
        return None
    return host.lower().rstrip(".")


@dataclass(frozen=True)
class _Pattern:
    text: str
    scheme: str | None
    host: str  # "*" for any, "" with wildcard=True for "*.domain" roots
    wildcard: bool  # "*.example.com": the domain and its subdomains
    port: int | None

    def matches(self, scheme: str, host: str, port: int | None) -> bool:
        if self.scheme is not None and scheme != self.scheme:
            return False
        if self.port is not None and port != self.port:
            return False
        if self.host == "*":
            return True
        if self.wildcard:
            return host == self.host or host.endswith("." + self.host)
        return host == self.host


def _parse_pattern(text: str) -> _Pattern:
    """One allowed_domains entry; ConfigurationError explaining the syntax when malformed."""
    raw = text
    text = text.strip().lower()
    syntax = (
        f"invalid allowed_domains pattern {raw!r}: use 'example.com', '*.example.com', "
        "'127.0.0.1:8000', 'https://example.com' or '*'"
    )
    scheme = None
    if "://" in text:
        scheme, _, text = text.partition("://")
        if scheme not in _DEFAULT_PORTS:
            raise ConfigurationError(f"{syntax} (only http and https schemes)")
    text = text.rstrip("/")
    if not text or text.endswith(":") or any(c in text for c in "/?#@"):
        raise ConfigurationError(syntax)
    if text == "*":
        return _Pattern(raw, scheme, "*", False, None)
    try:
        parts = urlsplit("//" + text)
        host, port = (parts.hostname or "").rstrip("."), parts.port
    except ValueError as exc:
        raise ConfigurationError(f"{syntax} ({exc})") from None
    wildcard = host.startswith("*.")
    if wildcard:
        host = host[2:]
    if not host:
        raise ConfigurationError(syntax)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not all(_HOST_LABEL.match(label) for label in host.split(".")):
            raise ConfigurationError(syntax) from None
    return _Pattern(raw, scheme, host, wildcard, port)


class DomainPolicy:
    """Which page URLs the agent may visit; ``None`` patterns allow everything."""

    def __init__(self, patterns: Iterable[str] | str | None = None) -> None:
        if isinstance(patterns, str):
            patterns = [patterns]
        self._patterns = None if patterns is None else [_parse_pattern(p) for p in patterns]

    @property
    def restricted(self) -> bool:
        """Whether an allow list is set."""
        return self._patterns is not None

    @property
    def patterns(self) -> list[str] | None:
        """The patterns as given."""
        return None if self._patterns is None else [p.text for p in self._patterns]

    def listed(self, url: str | None) -> bool:
        """Whether an allow list is set and explicitly names this http(s) URL's host."""
        if self._patterns is None or not url:
            return False
        key = _url_key(url)
        return key is not None and any(p.matches(*key) for p in self._patterns)

    def allows(self, url: str | None) -> bool:
        """Whether the agent may be on (or open) `url`."""
        if self._patterns is None or not url:
            return True
        try:
            scheme = urlsplit(url.strip()).scheme.lower()
        except ValueError:
            return False
        if scheme in _ALWAYS_ALLOWED_SCHEMES:
            return True
        if scheme == "blob":  # blob:https://host/uuid belongs to the page's own origin
            return self.allows(url.strip()[5:])
        return self.listed(url)

    def describe(self) -> str:
        """The allow list as text for the model, or '' when there is none."""
        return "" if self._patterns is None else ", ".join(p.text for p in self._patterns)


def _url_key(url: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, effective port) of an http(s) URL."""
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    return scheme, host.lower().rstrip("."), port if port is not None else _DEFAULT_PORTS[scheme]


# --------------------------------------------------------------------------- keys

DEFAULT_RISKY_KEYS: tuple[str, ...] = (
    "alt+f4",  # close the window
    "ctrl+w",  # close the tab
    "ctrl+f4",
    "ctrl+shift+w",  # close the window
    "ctrl+q",  # quit the application
    "ctrl+shift+q",
    "meta+q",  # macOS: quit
    "meta+w",  # macOS: close the window
    "meta+shift+q",  # macOS: log out
    "meta+l",  # lock the screen (super+l)
    "ctrl+alt+delete",
    "ctrl+alt+backspace",  # kill the X server
    "ctrl+alt+l",  # lock the screen on some desktops
)
"""Key combinations that need the user's confirmation (matched as sets, any order)."""


class RiskyKeys:
    """A configurable set of key combinations that need confirmation (computers/keys.py
    parses them: aliases such as cmd/super/win/os and any order or case match)."""

    def __init__(self, combos: Iterable[str] = DEFAULT_RISKY_KEYS) -> None:
        self.combos = tuple(combos)
        self._keys = KeySet(self.combos)

    def matches(self, keys: str) -> bool:
        """Whether pressing `keys` is risky."""
        return self._keys.matches_text(keys)


# --------------------------------------------------------------------------- secrets

_PLACEHOLDER = re.compile(r"<secret>\s*([^<>]*?)\s*</secret>|<secret:([^<>]*?)>")


class UnknownSecretError(ValueError):
    """A placeholder names no secret; the message is written for the model."""


class Secrets:
    """Named sensitive values, substituted at typing time and redacted everywhere else."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        values = dict(values or {})
        for name, value in values.items():
            if not isinstance(name, str) or not name.strip() or "<" in name or ">" in name:
                raise ConfigurationError(
                    f"sensitive_data names must be non-empty strings without '<' or '>', "
                    f"got {name!r}"
                )
            if not isinstance(value, str):
                raise ConfigurationError(
                    f"sensitive_data[{name!r}] must be a string, got {type(value).__name__}"
                )
        self._values = {name.strip(): value for name, value in values.items()}
        self.redact: Redactor = make_redactor(self._values)

    @property
    def names(self) -> list[str]:
        """The placeholder names, the only thing the model is told."""
        return list(self._values)

    def __bool__(self) -> bool:
        return bool(self._values)

    @staticmethod
    def placeholder(name: str) -> str:
        """How the model writes a secret: ``<secret>NAME</secret>``."""
        return f"<secret>{name}</secret>"

    def used_in(self, text: str) -> list[str]:
        """Names of the placeholders in `text`, in order (unknown names included)."""
        return [(m.group(1) or m.group(2) or "").strip() for m in _PLACEHOLDER.finditer(text)]

    def substitute(self, text: str) -> str:
        """`text` with every placeholder replaced by its value.

        Raises UnknownSecretError (naming the known placeholders) for an unknown name.
        """

        def value(match: re.Match[str]) -> str:
            name = (match.group(1) or match.group(2) or "").strip()
            if name not in self._values:
                known = ", ".join(self.placeholder(n) for n in self._values) or "none"
                raise UnknownSecretError(f"there is no secret named {name!r}; available: {known}")
            return self._values[name]

        return _PLACEHOLDER.sub(value, text)

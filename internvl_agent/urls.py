"""URL helpers shared by the action schemas, the safety checks and the computers.

URLs are read the way the browser reads them: `parse_web_url` follows the WHATWG URL Standard
(the `ada` parser, the one Node.js uses), so ``http://localhost:9\\@127.0.0.1:8000/`` is a URL
for localhost:9, as Chromium opens it, and not for 127.0.0.1 as ``urllib.parse.urlsplit`` reads
it. Never decide where a URL goes with urlsplit.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import ada_url

__all__ = ["DEFAULT_PORTS", "WebURL", "normalize_url", "parse_web_url", "scheme_of"]

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_LOCAL_HOSTS = ("localhost",)
_SCHEMELESS = ("about", "data", "file", "javascript", "blob", "chrome-error")


@dataclass(frozen=True)
class WebURL:
    """A parsed URL: scheme without ':', host (lower case, IDNA ASCII, no trailing dot, IPv6 in
    brackets, '' when none), the effective port (the scheme's default when the URL has none;
    None for schemes without one), and the serialized URL."""

    scheme: str
    host: str
    port: int | None
    href: str

    @property
    def origin(self) -> tuple[str, str, int | None]:
        """(scheme, host, port): what the same-origin rule compares."""
        return self.scheme, self.host, self.port


def parse_web_url(url: str | None, base: str | None = None) -> WebURL | None:
    """`url` (resolved against `base` when given) as the browser parses it, or None when it
    is not a URL at all."""
    if not isinstance(url, str) or not url.strip():
        return None
    try:
        parsed = ada_url.URL(url, base) if base else ada_url.URL(url)
    except (ValueError, TypeError):
        return None
    scheme = parsed.protocol.removesuffix(":").lower()
    host = parsed.hostname.lower().rstrip(".")
    port: int | None
    port = int(parsed.port) if parsed.port else DEFAULT_PORTS.get(scheme)
    return WebURL(scheme, host, port, parsed.href)


def scheme_of(url: str | None) -> str | None:
    """The URL's scheme as the browser reads it (lower case), None when it does not parse."""
    parsed = parse_web_url(url)
    return parsed.scheme if parsed else None


def normalize_url(url: str) -> str:
    """Add a scheme when missing: http:// for localhost and IP addresses, else https://."""
    url = url.strip()
    if "://" in url or url.split(":", 1)[0].lower() in _SCHEMELESS:
        return url
    parsed = parse_web_url("http://" + url)
    host = parsed.host.strip("[]") if parsed else ""
    try:
        ipaddress.ip_address(host)
        local = True
    except ValueError:
        local = host in _LOCAL_HOSTS or host.endswith(".localhost")
    return ("http://" if local else "https://") + url

"""URL helpers shared by the action schemas and the computers."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

_LOCAL_HOSTS = ("localhost",)
_SCHEMELESS = ("about", "data", "file", "javascript")


def normalize_url(url: str) -> str:
    """Add a scheme when missing: http:// for localhost and IP addresses, else https://."""
    url = url.strip()
    if "://" in url or url.split(":", 1)[0].lower() in _SCHEMELESS:
        return url
    host = urlsplit("//" + url).hostname or ""
    try:
        ipaddress.ip_address(host)
        local = True
    except ValueError:
        local = host in _LOCAL_HOSTS or host.endswith(".localhost")
    return ("http://" if local else "https://") + url

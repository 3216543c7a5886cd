"""Fetching the http(s) images a client names, for the server, without opening an SSRF hole.

The server accepts data URLs only, unless it is started with remote images on. Then
`fetch_data_url` fetches the image itself and hands the model a data URL: the host is resolved
once, every resolved address is checked (loopback, private, link-local, shared, reserved,
multicast and unspecified addresses are refused unless private hosts are allowed), the
connection goes to the checked address (Host header and TLS name kept, so DNS rebinding cannot
swap it), and each redirect hop is checked the same way.
"""

from __future__ import annotations

import base64
import ipaddress
import socket

import httpx

from internvl_agent.errors import ImageInputError
from internvl_agent.urls import parse_web_url

__all__ = ["MAX_IMAGE_BYTES", "MAX_REDIRECTS", "fetch_data_url", "public_address"]

MAX_REDIRECTS = 5
MAX_IMAGE_BYTES = 20 * 1024 * 1024
TIMEOUT_S = 10.0


def public_address(host: str, port: int, *, allow_private: bool) -> str:
    """The address to connect to for `host`: the first one it resolves to, after checking
    that none of them is private (unless `allow_private`). ImageInputError otherwise."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ImageInputError(f"the image host {host!r} does not resolve ({exc})") from None
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise ImageInputError(f"the image host {host!r} does not resolve")
    if not allow_private:
        for text in addresses:
            ip = ipaddress.ip_address(text.split("%", 1)[0])
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            if not ip.is_global or ip.is_multicast:
                raise ImageInputError(
                    f"the image URL's host {host!r} is at {text}, a private, loopback or "
                    "link-local address, which this server does not fetch from; send the "
                    "image as a data: URL (or start the server with private image hosts "
                    "allowed)."
                )
    return addresses[0]


def fetch_data_url(
    url: str,
    *,
    allow_private: bool = False,
    timeout: float = TIMEOUT_S,
    max_bytes: int = MAX_IMAGE_BYTES,
) -> str:
    """GET the image at `url` (checked as above, redirects re-checked) as a data URL."""
    current = url
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            parsed = parse_web_url(current)
            if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
                raise ImageInputError(f"{current[:200]!r} is not an http(s) URL")
            assert parsed.port is not None
            address = public_address(parsed.host, parsed.port, allow_private=allow_private)
            target = httpx.URL(parsed.href)
            pinned = target.copy_with(host=address)
            headers = {"Host": target.netloc.decode("ascii"), "Accept": "image/*"}
            extensions = {"sni_hostname": parsed.host} if parsed.scheme == "https" else {}
            try:
                with client.stream(
                    "GET", pinned, headers=headers, extensions=extensions
                ) as response:
                    if response.is_redirect:
                        location = response.headers.get("Location", "")
                        current = (parse_web_url(location, current) or parsed).href
                        if current == parsed.href:
                            raise ImageInputError(f"{url[:200]!r} redirects nowhere")
                        continue
                    if response.status_code >= 400:
                        raise ImageInputError(
                            f"fetching {url[:200]!r} failed: HTTP {response.status_code}"
                        )
                    body = bytearray()
                    for chunk in response.iter_bytes():
                        body += chunk
                        if len(body) > max_bytes:
                            raise ImageInputError(
                                f"the image at {url[:200]!r} is larger than {max_bytes} bytes"
                            )
                    mime = response.headers.get("Content-Type", "image/png").split(";")[0]
            except httpx.HTTPError as exc:
                raise ImageInputError(f"fetching {url[:200]!r} failed ({exc})") from None
            encoded = base64.b64encode(bytes(body)).decode("ascii")
            return f"data:{mime.strip() or 'image/png'};base64,{encoded}"
    raise ImageInputError(f"{url[:200]!r} redirects more than {MAX_REDIRECTS} times")

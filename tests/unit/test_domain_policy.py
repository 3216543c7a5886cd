"""DomainPolicy reads URLs as the browser does (WHATWG), and an unreadable URL is not allowed."""

from __future__ import annotations

import pytest

from internvl_agent.agent.safety import DomainPolicy, Guard, RiskyKeys, Secrets, host_of
from internvl_agent.computers.base import ActionOutcome, Computer
from internvl_agent.urls import parse_web_url


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        ("http://localhost:9\\@127.0.0.1:8000/steal", "localhost", 9),  # '\' is '/' in http
        ("http://127.0.0.1:8000@localhost:9/", "localhost", 9),
        ("HTTP://EXAMPLE.com.:80/a", "example.com", 80),
        ("http://0x7f.1/", "127.0.0.1", 80),  # IPv4 in hex and short forms
        ("http://2130706433/", "127.0.0.1", 80),
        ("https://Bücher.example/", "xn--bcher-kva.example", 443),
        ("  http://a.test/\t\n", "a.test", 80),  # stripped as the browser strips
        ("http://[::1]:8080/", "[::1]", 8080),
        ("http:\\\\evil.test\\x", "evil.test", 80),
    ],
)
def test_urls_parse_as_the_browser_parses_them(url: str, host: str, port: int) -> None:
    parsed = parse_web_url(url)
    assert parsed is not None and (parsed.host, parsed.port) == (host, port)


def test_backslash_userinfo_trick_is_blocked() -> None:
    policy = DomainPolicy(["127.0.0.1:8000"])
    assert not policy.allows("http://localhost:9\\@127.0.0.1:8000/steal")
    assert not policy.listed("http://localhost:9\\@127.0.0.1:8000/steal")
    assert host_of("http://localhost:9\\@127.0.0.1:8000/steal") == "localhost"
    assert policy.allows("http://127.0.0.1:8000/ok")
    assert policy.allows("http://0x7f.0.0.1:8000/")  # the same host, written otherwise


@pytest.mark.parametrize("url", [None, "", "http://[::1/", "http://a b/", "http://%zz/", 3])
def test_unreadable_urls_are_not_allowed(url) -> None:
    assert DomainPolicy(["127.0.0.1"]).allows(url) is False
    assert DomainPolicy(["127.0.0.1"]).allows_request(url) is False
    assert DomainPolicy(None).allows(url) is True  # no allow list: nothing is restricted


def test_schemes() -> None:
    policy = DomainPolicy(["https://bank.test", "*.shop.test", "127.0.0.1:8000"])
    assert policy.allows("about:blank") and policy.allows("chrome-error://chromewebdata/")
    assert not policy.allows("javascript:alert(1)") and not policy.allows("file:///etc/passwd")
    assert not policy.allows("data:text/html,x") and policy.allows_request("data:image/png,x")
    assert policy.allows("blob:https://bank.test/uuid") and not policy.allows(
        "blob:https://x.test/u"
    )
    assert not policy.allows("http://bank.test/")  # the pattern names https only
    assert policy.allows("https://a.b.shop.test/") and not policy.allows("https://shop.test.evil/")
    assert policy.allows_request("ws://127.0.0.1:8000/socket")
    assert not policy.allows_request("ws://127.0.0.1:8001/socket")


@pytest.mark.parametrize(
    "pattern", ["", "a/b", "user@host", "a\\b", "ftp://x", "*.", "host:", "h:99999", "a%2eb"]
)
def test_bad_patterns_are_refused(pattern: str) -> None:
    from internvl_agent.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        DomainPolicy([pattern])


def test_patterns_are_normalised_like_urls() -> None:
    policy = DomainPolicy(["Bücher.example", "example.com:80", "[::1]:8080"])
    assert policy.allows("https://xn--bcher-kva.example/")
    assert policy.allows("http://example.com/") and not policy.allows("https://example.com/")
    assert policy.allows("http://[::1]:8080/") and not policy.allows("http://[::1]:8081/")


class _Page(Computer):
    kind = "browser"

    def screenshot(self): ...
    def click(self, x, y, *, button="left", clicks=1):
        return ActionOutcome(True)

    def type_text(self, text):
        return ActionOutcome(True)

    def press_key(self, keys):
        return ActionOutcome(True)

    def scroll(self, direction, amount=3, x=None, y=None):
        return ActionOutcome(True)

    def drag(self, a, b, c, d):
        return ActionOutcome(True)


def _guard(patterns) -> Guard:
    return Guard(
        domains=DomainPolicy(patterns),
        secrets=Secrets({"pw": "x"}),
        risky_keys=RiskyKeys(),
        computer=_Page(),
    )


def test_typing_check_follows_the_focus() -> None:
    check = _guard(None).typing_check("http://127.0.0.1:8000/login")
    assert check("http://127.0.0.1:8000/other") is None  # same origin
    assert "not typed" in check("http://127.0.0.1:8001/steal")  # another site after the click
    assert "not typed" in check(None)  # where the keys go cannot be told
    listed = _guard(["127.0.0.1:8000", "127.0.0.1:8002"]).typing_check("http://127.0.0.1:8000/")
    assert listed("http://127.0.0.1:8002/") is None
    assert listed("http://localhost:8000/") is not None

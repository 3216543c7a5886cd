"""Safety of a run: allowed domains, risky keys, secrets and their redaction, the user's say.

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
through ``Secrets.redact`` first (see `make_redactor`).

`Guard` runs the checks around each action. Before (`assess`: blocked, a `Risk`, or fine;
`check` puts a Risk to the confirm callback, the agent graph to `interrupt()`): `navigate`
outside allowed_domains is blocked; risky actions need the user's confirmation: opening a site
not seen in this run and not listed in allowed_domains, typing a secret on a page not listed
in allowed_domains, pressing one of the risky keys; a secret is judged on the page as it is
when typing starts, and `typing_check` judges again the document holding the focus after the
click on the field (a click can open another site's autofocused field). The browser itself
never sends a request for a document outside the allow list (GUIAgent hands
`DomainPolicy.allows_request` to `Computer.restrict_requests`). After an action, and before
each step: when the page is outside the allowed domains anyway (a computer that cannot
filter), the guard goes back, or reopens the last allowed page. URLs are parsed by the WHATWG
rules (internvl_agent/urls.py); a URL that does not parse is never allowed.

Redaction covers every form in `encoded_forms` (URL encodings as browsers write them, HTML,
JSON), case-insensitively.

The user's say (`confirm`, `ask_user`) is a generator step yielding one HumanCall (see
effects.py); a missing callback, one that raises or one that times out never ends the run:
the model is told and carries on.
"""

from __future__ import annotations

import html
import ipaddress
import json
import logging
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote, quote_plus

from internvl_agent.actions import Action, Navigate, PressKey, TypeText
from internvl_agent.agent.effects import HumanCall, HumanReply, Steps, computer_call
from internvl_agent.computers.base import ActionOutcome, Computer
from internvl_agent.computers.keys import KeySet
from internvl_agent.errors import ConfigurationError
from internvl_agent.urls import parse_web_url, scheme_of

__all__ = [
    "DEFAULT_RISKY_KEYS",
    "DomainPolicy",
    "Guard",
    "LeftAllowedDomains",
    "Redactor",
    "Risk",
    "RiskyKeys",
    "Secrets",
    "UnknownSecretError",
    "Visits",
    "answer_outcome",
    "approved",
    "ask_human",
    "confirm",
    "encoded_forms",
    "host_of",
    "make_redactor",
    "nobody_to_ask",
    "redact_value",
    "refusal",
]

logger = logging.getLogger("internvl_agent.agent")

Redactor = Callable[[str], str]
_WEB_SCHEMES = ("http", "https")
_ALWAYS_ALLOWED_SCHEMES = ("about", "chrome-error")
_HOST_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?$")


def host_of(url: str | None) -> str | None:
    """The host of an http(s) URL as the browser reads it (lower case, no trailing dot),
    else None."""
    parsed = parse_web_url(url)
    if parsed is None or parsed.scheme not in _WEB_SCHEMES or not parsed.host:
        return None
    return parsed.host


@dataclass(frozen=True)
class _Pattern:
    text: str
    scheme: str | None
    host: str  # "*" for any
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


_EXPLICIT_PORT = re.compile(r":(\d+)$")


def _parse_pattern(text: str) -> _Pattern:
    """One allowed_domains entry; ConfigurationError explaining the syntax when malformed.

    The host is normalised by the same WHATWG parser that reads page URLs (IDNA, IPv4 forms,
    case), so a pattern and a URL for the same host always compare equal."""
    raw = text
    text = text.strip().lower()
    syntax = (
        f"invalid allowed_domains pattern {raw!r}: use 'example.com', '*.example.com', "
        "'127.0.0.1:8000', 'https://example.com' or '*'"
    )
    scheme = None
    if "://" in text:
        scheme, _, text = text.partition("://")
        if scheme not in _WEB_SCHEMES:
            raise ConfigurationError(f"{syntax} (only http and https schemes)")
    text = text.rstrip("/")
    if not text or text.endswith(":") or any(c in text for c in "/?#@\\%"):
        raise ConfigurationError(syntax)
    if text == "*":
        return _Pattern(raw, scheme, "*", False, None)
    wildcard = text.startswith("*.")
    if wildcard:
        text = text[2:]
    explicit = _EXPLICIT_PORT.search(text)
    parsed = parse_web_url("http://" + text)
    if parsed is None or not parsed.host or "*" in parsed.host:
        raise ConfigurationError(syntax)
    port = int(explicit.group(1)) if explicit else None
    if port is not None and not 0 < port < 65536:
        raise ConfigurationError(f"{syntax} (port {port} is out of range)")
    host = parsed.host
    if not host.startswith("["):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not all(_HOST_LABEL.match(label) for label in host.split(".")):
                raise ConfigurationError(syntax) from None
    return _Pattern(raw, scheme, host, wildcard, port)


class DomainPolicy:
    """Which URLs the agent may visit; ``None`` patterns allow everything.

    URLs are read by the browser's rules (`internvl_agent.urls.parse_web_url`); with an allow
    list, a URL that does not parse (or None) is never allowed."""

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
        if self._patterns is None:
            return False
        parsed = parse_web_url(url)
        if parsed is None or parsed.scheme not in _WEB_SCHEMES or not parsed.host:
            return False
        key = (parsed.scheme, parsed.host, parsed.port)
        return any(p.matches(*key) for p in self._patterns)

    def allows(self, url: str | None) -> bool:
        """Whether the agent may be on (or open) `url`."""
        if self._patterns is None:
            return True
        parsed = parse_web_url(url)
        if parsed is None:
            return False
        if parsed.scheme in _ALWAYS_ALLOWED_SCHEMES:
            return True
        if parsed.scheme == "blob":  # blob:https://host/uuid belongs to the page's own origin
            inner = parsed.href[len("blob:") :]
            return parse_web_url(inner) is not None and self.allows(inner)
        return self.listed(parsed.href)

    def allows_request(self, url: str | None) -> bool:
        """Whether the browser may send a request for `url` (a document or a subresource):
        `allows`, plus data: URLs, which reach no server; ws(s) is checked as http(s)."""
        if self._patterns is None:
            return True
        parsed = parse_web_url(url)
        if parsed is None:
            return False
        if parsed.scheme == "data":
            return True
        if parsed.scheme in ("ws", "wss"):
            web = "http" if parsed.scheme == "ws" else "https"
            return self.listed(f"{web}://{parsed.host}:{parsed.port}/")
        return self.allows(parsed.href)

    def describe(self) -> str:
        """The allow list as text for the model, or '' when there is none."""
        return "" if self._patterns is None else ", ".join(p.text for p in self._patterns)


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


_FORM_SAFE = "*"  # with letters, digits and "-._": the application/x-www-form-urlencoded set
_URI_COMPONENT_SAFE = "!~*'()"  # encodeURIComponent leaves these (and alphanumerics, "-_.")
_URI_SAFE = "!~*'();/?:@&=+$,#"  # encodeURI
_PATH_SAFE = "".join(  # the WHATWG path/query sets: space, controls, non-ASCII and these
    c for c in map(chr, range(0x21, 0x7F)) if c not in '"#<>`?{}%'
)


def encoded_forms(value: str) -> set[str]:
    """The ways a browser, a page or a record writer may write `value`: as is (NFC and NFD),
    form-encoded (``+`` for spaces, ``%7E`` for ``~``; in UTF-8, and in windows-1252 and
    latin-1, which a page without a charset submits), encodeURIComponent, encodeURI, path
    and query percent-encoding, Python's quote/quote_plus, each encoding once more (a URL
    inside a URL), HTML-escaped, with numeric character references (``&#252;``) and
    JSON-escaped (ASCII or not, ``\\/`` or not)."""
    bases = {value, unicodedata.normalize("NFC", value), unicodedata.normalize("NFD", value)}
    # numeric character references: HTML, and what a form in a legacy charset submits
    bases.add(value.encode("ascii", "xmlcharrefreplace").decode("ascii"))
    forms: set[str] = set()
    for v in bases:
        form = quote_plus(v, safe=_FORM_SAFE).replace("~", "%7E")
        component = quote(v, safe=_URI_COMPONENT_SAFE)
        forms |= {
            v,
            form,
            component,
            quote(v, safe=_URI_SAFE),
            quote(v, safe=_PATH_SAFE),
            quote(v, safe=""),
            quote_plus(v),
            quote(form, safe=""),
            quote(component, safe=""),
            html.escape(v),
            html.escape(v, quote=False),
        }
        for charset in ("cp1252", "latin-1"):  # a page without a charset submits in these
            legacy = v.encode(charset, "xmlcharrefreplace")
            forms |= {quote_plus(legacy, safe=_FORM_SAFE).replace("~", "%7E"), quote(legacy)}
        for ascii_only in (True, False):
            escaped = json.dumps(v, ensure_ascii=ascii_only)[1:-1]
            forms |= {escaped, escaped.replace("/", "\\/")}
    forms.discard("")
    return forms


def make_redactor(secrets: Mapping[str, str]) -> Redactor:
    """Return a function replacing each secret value with ``<secret:NAME>``.

    Every form in `encoded_forms` is matched, case-insensitively (so ``%c3%bc`` and ``%C3%BC``
    alike), longest first in one pass; empty values are ignored. Applying it twice changes
    nothing.
    """
    names: dict[str, str] = {}  # casefolded form -> secret name
    for name, value in secrets.items():
        if not value:
            continue
        for form in sorted(encoded_forms(value), key=len, reverse=True):
            names.setdefault(form.casefold(), name)
    if not names:
        return _identity
    # Placeholders already written are matched as themselves, which makes redaction idempotent.
    subs = {f"<secret:{name}>".casefold(): f"<secret:{name}>" for name in names.values()}
    subs.update({form: f"<secret:{name}>" for form, name in names.items() if form not in subs})
    alternatives = sorted(subs, key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(v) for v in alternatives), re.IGNORECASE)

    def redact(text: str) -> str:
        return pattern.sub(lambda m: subs.get(m.group(0).casefold(), "<secret>"), text)

    return redact


def redact_value(value: Any, redact: Redactor | None) -> Any:
    """Apply ``redact`` to every string in nested dicts/lists/tuples (keys included)."""
    if redact is None:
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {redact_value(k, redact): redact_value(v, redact) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v, redact) for v in value]
    return value


def _identity(text: str) -> str:
    return text


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

    def typed_text(self, action: Action) -> str | ActionOutcome | None:
        """For a type_text `action` that names secrets: its text with them filled in, or the
        refusal (nothing is typed) when one is unknown. None for any other action."""
        if not (isinstance(action, TypeText) and self.used_in(action.text)):
            return None
        try:
            return self.substitute(action.text)
        except UnknownSecretError as exc:
            return ActionOutcome(False, f"nothing was typed: {exc}")


# --------------------------------------------------------------------------- the user's say

_YES = ("y", "yes", "true", "ok", "approve", "approved")


def approved(value: Any) -> bool:
    """True, or a yes-like string, approves; anything else refuses."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() in _YES
    return False


def confirm(
    callback: Callable[[str], Any] | None, description: str, timeout: float | None
) -> Steps:
    """None when the user approves `description`, else the reason it is refused."""
    if callback is None:
        return "nobody can confirm it in this run"
    reply: HumanReply = yield HumanCall(callback, description, timeout)
    if reply.error is not None:
        return f"the confirmation failed ({reply.error})"
    return None if approved(reply.value) else "the user declined"


def ask_human(callback: Callable[[str], Any] | None, question: str, timeout: float | None) -> Steps:
    """The outcome of the ask_user action: the user's answer, or why there is none."""
    if callback is None:
        return nobody_to_ask()
    reply: HumanReply = yield HumanCall(callback, question, timeout)
    return answer_outcome(reply)


def nobody_to_ask() -> ActionOutcome:
    """The outcome of ask_user in a run without anyone to answer."""
    return ActionOutcome(
        False,
        "nobody is available to answer questions in this run. Continue on your own, "
        "or call done with success=false if the task cannot be done without an answer.",
    )


def answer_outcome(reply: HumanReply) -> ActionOutcome:
    """The outcome of the ask_user action from the person's reply."""
    if reply.error:
        return ActionOutcome(
            False, f"the user could not be asked ({reply.error}). Continue on your own."
        )
    answer = "" if reply.value is None else str(reply.value).strip()
    if not answer:
        return ActionOutcome(False, "the user gave no answer. Continue on your own.")
    return ActionOutcome(True, f"the user answered: {answer}")


# --------------------------------------------------------------------------- the guard


@dataclass(frozen=True)
class Risk:
    """An action that needs the user's confirmation: what it does, and why it is risky."""

    description: str  # "press ctrl+w": what the confirm callback is asked
    reason: str  # "ctrl+w is one of the risky keys (...)"


def refusal(description: str, reason: str) -> ActionOutcome:
    """The failed outcome of a risky action that was not confirmed, as the model is told."""
    logger.info("refused: %s (%s)", description, reason)
    return ActionOutcome(
        False,
        f"refused: '{description}' needs the user's confirmation and {reason}. Nothing was "
        "done; find another way or call done with success=false.",
    )


class LeftAllowedDomains(Exception):
    """The page left the allowed domains and could not be brought back."""


@dataclass
class Visits:
    """Per-run memory of the guard: the sites seen so far, the last page on an allowed domain."""

    seen_hosts: set[str] = field(default_factory=set)
    last_allowed_url: str | None = None


def _is_http(url: str | None) -> bool:
    return scheme_of(url) in _WEB_SCHEMES


class Guard:
    """The checks before and after each action, built from explicit parts (no agent)."""

    def __init__(
        self,
        *,
        domains: DomainPolicy,
        secrets: Secrets,
        risky_keys: RiskyKeys,
        computer: Computer,
        confirm: Callable[[str], Any] | None = None,
        timeout: float | None = None,
    ) -> None:
        self.domains = domains
        self.secrets = secrets
        self.risky_keys = risky_keys
        self.computer = computer
        self.confirm_callback = confirm
        self.timeout = timeout

    def observe(self, visits: Visits, url: str | None) -> None:
        """Remember the URL's site as seen, and the URL as the last allowed page."""
        if not self.domains.allows(url):
            return  # a page outside the allow list is never "seen": it was not to be there
        host = host_of(url)
        if host:
            visits.seen_hosts.add(host)
        if _is_http(url):
            visits.last_allowed_url = url

    def assess(
        self, action: Action, page_url: str | None, visits: Visits
    ) -> ActionOutcome | Risk | None:
        """None when `action` may run, a failed outcome when it is blocked, or the Risk that
        needs the user's confirmation (nothing is asked here)."""
        policy = self.domains
        if isinstance(action, Navigate):
            if not policy.allows(action.url):
                return ActionOutcome(
                    False,
                    f"blocked: {action.url} is outside the allowed domains "
                    f"({policy.describe()}); nothing was done",
                )
            host = host_of(action.url)
            scheme = scheme_of(action.url)
            new_site = host not in visits.seen_hosts if host else scheme != "about"
            if new_site and not policy.listed(action.url):
                return Risk(
                    f"open {action.url}, a site not visited yet",
                    f"it opens {host or action.url}, a site not visited in this run and not "
                    "listed in allowed_domains",
                )
        if isinstance(action, PressKey):
            if self.computer.is_blocked(action.keys):
                return ActionOutcome(
                    False, f"refused: {action.keys} is blocked on this computer; nothing was done"
                )
            if self.risky_keys.matches(action.keys):
                return Risk(
                    f"press {action.keys}",
                    f"{action.keys} is one of the risky keys (it can close a window or tab, "
                    "lock the screen or log out)",
                )
        if isinstance(action, TypeText):
            names = self.secrets.used_in(action.text)
            if names and not policy.listed(page_url):
                listed = ", ".join(sorted(set(names)))
                where = page_url or "the screen"
                return Risk(
                    f"type the secret(s) {listed} on {where}",
                    f"it types the secret(s) {listed} on {where}, which allowed_domains "
                    "does not list",
                )
        return None

    def check(self, action: Action, page_url: str | None, visits: Visits) -> Steps:
        """None when `action` may run, else a failed outcome (blocked or refused); a Risk is
        put to the confirm callback."""
        verdict = self.assess(action, page_url, visits)
        if isinstance(verdict, Risk):
            return (yield from self.confirm(verdict.description))
        return verdict

    def typing_check(self, checked_url: str | None) -> Callable[[str | None], str | None]:
        """For `actions.execute`'s check_focus when a secret is typed: the keys may go to the
        document holding the focus after the click on the field only if it is on the allow
        list, or has the origin of `checked_url` (the page `check` judged); else the reason
        nothing is typed (clickjacking: a click that opens another site's field)."""
        checked = parse_web_url(checked_url)

        def check(focused_url: str | None) -> str | None:
            if self.domains.listed(focused_url):
                return None
            now = parse_web_url(focused_url)
            if checked_url is None and focused_url is None:
                return None  # a computer without URLs: nothing moved
            if checked is not None and now is not None and now.origin == checked.origin:
                return None
            where = focused_url or "a page whose address cannot be read"
            return (
                f"the keys would go to {where}, not to {checked_url or 'the page checked'}, "
                "where typing the secret was checked; the secret was not typed"
            )

        return check

    def confirm(self, description: str) -> Steps:
        """None when the user approves, else a failed outcome saying why nothing was done."""
        description = self.secrets.redact(description)
        reason = yield from confirm(self.confirm_callback, description, self.timeout)
        if reason is None:
            logger.info("confirmed: %s", description)
            return None
        return refusal(description, reason)

    def current_url(self) -> Steps:
        """The computer's URL, None when it has none or asking fails."""
        computer = self.computer
        asked = yield computer_call(
            "current_url", lambda: ActionOutcome(True, url=computer.current_url())
        )
        return asked.url

    def keep_allowed(self, outcome: ActionOutcome, visits: Visits) -> Steps:
        """`outcome` with the page's URL; if the page left the allowed domains, go back (or
        reopen the last allowed page) and report it as a failure. Raises LeftAllowedDomains
        when neither works."""
        policy, computer = self.domains, self.computer
        url = (yield from self.current_url()) or outcome.url
        self.observe(visits, url)
        # A computer without URLs (the desktop) has no page to keep on the allow list.
        if not policy.restricted or url is None or policy.allows(url):
            return replace(outcome, url=url)
        back = yield computer_call("go_back", computer.go_back)
        now = yield from self.current_url()
        if (not back.ok or not policy.allows(now)) and visits.last_allowed_url:
            target = visits.last_allowed_url
            yield computer_call("navigate", lambda: computer.navigate(target))
            now = yield from self.current_url()
        if not policy.allows(now):
            raise LeftAllowedDomains(
                f"the page went to {url}, outside the allowed domains ({policy.describe()}), "
                "and could not be brought back"
            )
        self.observe(visits, now)
        return ActionOutcome(
            False,
            f"{outcome.message}; but the page went to {url}, outside the allowed domains "
            f"({policy.describe()}), so the agent went back to {now}",
            now,
        )

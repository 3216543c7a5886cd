"""The messages the model gets each step: system prompt, task, text history, last K screenshots.

The cost of a step grows with the number of steps only through the text history (one short
line per past step); at most K screenshots are sent as images, the last one being the
current screen. Each image is the captured Screenshot's `content_block` for the model: the PIL
image itself for ChatInternVL, an OpenAI-style ``image_url`` PNG data URL for ChatOpenAI
(vLLM, lmdeploy).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from internvl_agent.actions import ACTION_MODELS
from internvl_agent.agent.safety import Redactor
from internvl_agent.computers.base import Screenshot
from internvl_agent.prompts import load_prompt
from internvl_agent.records import truncate

__all__ = [
    "History",
    "HistoryEntry",
    "ScreenFrame",
    "build_messages",
    "format_entry",
    "render_system_prompt",
]

SYSTEM_PROMPT = "agent_system.md"
OLD_ENTRY_CHARS = 240  # an older history line keeps its first line, cut to this
LAST_ENTRY_CHARS = 1500  # the latest entry is shown in full, up to this


EntryKind = Literal["start", "action", "invalid", "note"]


@dataclass
class HistoryEntry:
    """One line of the text history the model reads: an action and its outcome.

    kind: "start" (the agent opened start_url), "action" (a valid tool call and its outcome),
    "invalid" (a reply without a usable tool call), "note" (a warning from the agent).
    All text is already redacted.
    """

    step: int
    kind: EntryKind
    action: str = ""
    ok: bool | None = None
    message: str = ""
    url: str | None = None


@dataclass(frozen=True)
class ScreenFrame:
    """The screenshot taken before `step`, as captured (it is encoded once, when sent)."""

    step: int
    shot: Screenshot


class History:
    """Everything the model is reminded of: all past steps as text, the last K screenshots."""

    def __init__(self, max_images: int = 3) -> None:
        if max_images < 1:
            raise ValueError(f"screenshots_in_history must be at least 1, got {max_images}")
        self.entries: list[HistoryEntry] = []
        self.frames: deque[ScreenFrame] = deque(maxlen=max_images)

    def add(self, entry: HistoryEntry) -> None:
        """Append one entry (text already redacted)."""
        self.entries.append(entry)

    def add_frame(self, frame: ScreenFrame) -> None:
        """Append the newest screenshot; the oldest beyond K is dropped."""
        self.frames.append(frame)

    def text(self) -> str:
        """The numbered history, oldest first; the last entry in full, older ones shortened."""
        if not self.entries:
            return "No actions yet."
        last = len(self.entries) - 1
        return "\n".join(format_entry(e, full=i == last) for i, e in enumerate(self.entries))


def format_entry(entry: HistoryEntry, *, full: bool = False) -> str:
    """One history line: 'Step 3: click at (500, 120) -> OK: ...'."""
    message = entry.message.strip()
    if full:
        message = truncate(message, LAST_ENTRY_CHARS)
    else:
        message = truncate(message.splitlines()[0] if message else "", OLD_ENTRY_CHARS)
    if entry.kind == "start":
        status = "OK" if entry.ok else "FAILED"
        return f"Start: {entry.action} -> {status}: {message}"
    if entry.kind == "note":
        return f"Note after step {entry.step}: {message}"
    if entry.kind == "invalid":
        return f"Step {entry.step}: no valid tool call -> ERROR: {message}"
    status = "OK" if entry.ok else "FAILED"
    return f"Step {entry.step}: {entry.action} -> {status}" + (f": {message}" if message else "")


def _page(frame: ScreenFrame) -> str:
    url, title = frame.shot.url, frame.shot.title
    parts = [p for p in (url, title and f"title {title!r}") if p]
    return f" ({'; '.join(parts)})" if parts else ""


def build_messages(
    system_prompt: str,
    task: str,
    history: History,
    *,
    step: int,
    model: Any = None,
    reminder: str | None = None,
    redact: Redactor | None = None,
) -> list[BaseMessage]:
    """[SystemMessage, HumanMessage] for `step`: the task, the text history, then the last K
    screenshots (the current one last), then `reminder` (e.g. why the last reply failed).

    Images are in the form `model` takes (see Screenshot.content_block). Every text block
    goes through `redact`; image data is left alone.
    """
    clean = redact or (lambda text: text)
    if not history.frames:
        raise ValueError("build_messages needs at least the current screenshot")
    frames = list(history.frames)
    content: list[str | dict] = [
        _text(clean(f"Task: {task}\n\nHistory (oldest first):\n{history.text()}")),
    ]
    for frame in frames[:-1]:
        content.append(_text(clean(f"Screenshot taken before step {frame.step}{_page(frame)}:")))
        content.append(frame.shot.content_block(model))
    current = frames[-1]
    content.append(
        _text(
            clean(
                f"Current screenshot, before step {step}{_page(current)}. "
                "x and y (0..1000) refer to this image:"
            )
        )
    )
    content.append(current.shot.content_block(model))
    tail = f"{reminder}\n\n" if reminder else ""
    content.append(_text(clean(f"{tail}Step {step}: call exactly one tool.")))
    return [SystemMessage(content=clean(system_prompt)), HumanMessage(content=content)]


def _text(text: str) -> dict:
    return {"type": "text", "text": text}


# --------------------------------------------------------------------------- system prompt


_TOOL_HINTS = {"navigate": " Give the full URL, with http:// or https://."}


def _tools_list(names: Iterable[str]) -> str:
    lines = []
    for name in names:
        doc = " ".join((ACTION_MODELS[name].__doc__ or "").split())
        lines.append(f"- `{name}`: {doc}{_TOOL_HINTS.get(name, '')}")
    return "\n".join(lines)


def render_system_prompt(
    *,
    tools: Iterable[str],
    environment: str = "a web browser",
    secret_names: Iterable[str] = (),
    allowed_domains: str = "",
    human_available: bool = False,
    template: str | None = None,
) -> str:
    """The system prompt from prompts/agent_system.md with its ``{{...}}`` fields filled."""
    text = template if template is not None else load_prompt(SYSTEM_PROMPT)
    names = list(secret_names)
    secrets = ""
    if names:
        listed = "\n".join(f"- <secret>{n}</secret>" for n in names)
        secrets = (
            "\n## Secrets\n\nSome values are hidden from you. To type one, write its "
            "placeholder inside `type_text`'s text exactly as shown; the real value is filled "
            f"in when typing and is never shown to you:\n\n{listed}\n\n"
            "Never try to guess, reveal or ask for these values.\n"
        )
    domains = ""
    if allowed_domains:
        domains = (
            f"\n## Allowed sites\n\nOnly these sites may be opened: {allowed_domains}. "
            "Opening anything else is blocked, and if an action leads elsewhere the agent "
            "goes back.\n"
        )
    if human_available:
        human = (
            "\n## The user\n\nIf information is missing or a decision belongs to the user, "
            "call `ask_user`. Risky actions (opening a new site, typing a secret, keys that "
            "close windows or lock the screen) are confirmed with the user first and may be "
            "refused; a refusal is reported as FAILED.\n"
        )
    else:
        human = (
            "\n## The user\n\nNobody is watching this run: `ask_user` gets no answer, so decide "
            "for yourself. Risky actions (opening a new site, typing a secret, keys that close "
            "windows or lock the screen) may be refused; a refusal is reported as FAILED.\n"
        )
    fields = {
        "environment": environment,
        "tools": _tools_list(tools),
        "secrets": secrets,
        "domains": domains,
        "human": human,
    }
    for key, value in fields.items():
        text = text.replace("{{" + key + "}}", value)
    return text

"""What a GUIAgent run returns, and the text history entries it is built from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

AgentStatus = Literal["done", "failed", "max_steps", "stopped", "error"]
"""How a run ended.

- done: the model called ``done`` with success=true.
- failed: ``done`` with success=false, or the same action failed too many times in a row, or
  the agent could not get the page back onto an allowed domain.
- max_steps: the step cap was reached without ``done``.
- stopped: ``stop()`` was called (or the run was interrupted).
- error: the model (or grounding model) call raised, the model produced no valid tool call
  max_retries + 1 times in a row, or the screen could not be captured.
"""

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


@dataclass
class AgentResult:
    """The end of a run: status, the model's answer, how many steps, where the record is."""

    status: AgentStatus
    answer: str | None = None
    steps: int = 0
    record_path: Path | None = None
    error: str | None = None
    history: list[HistoryEntry] = field(default_factory=list)

    @property
    def success(self) -> bool:
        """True when the model finished the task (status "done")."""
        return self.status == "done"

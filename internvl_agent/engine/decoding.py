"""Token-by-token detokenization with stop strings.

`RowDecoder` follows one generated sequence: it turns token ids into text deltas that are safe to
show (no half UTF-8 characters, nothing that could still become a stop string) and decides when
the sequence is finished (end token, stop string, token limit or cancellation).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

FinishReason = str  # "stop" | "length" | "cancelled" | "timeout"


@dataclass
class RowDecoder:
    """Incremental decoder and stop-condition tracker for one sequence."""

    tokenizer: Any
    eos_token_ids: Collection[int]
    max_new_tokens: int
    stop: Sequence[str] = ()
    token_ids: list[int] = field(default_factory=list)
    text: str = ""  # all text decoded so far (before stop-string truncation)
    emitted: int = 0  # characters of `text` already handed out
    finish_reason: FinishReason | None = None
    _prefix_offset: int = 0
    _read_offset: int = 0

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    @property
    def num_generated(self) -> int:
        return len(self.token_ids)

    def add_token(self, token_id: int) -> str:
        """Take one generated token; return the new text that is safe to emit (maybe "")."""
        if self.done:
            return ""
        self.token_ids.append(token_id)
        if token_id in self.eos_token_ids:
            self.finish_reason = "stop"
            return self._flush()
        self.text += self._decode_new()
        if self._truncate_at_stop():
            self.finish_reason = "stop"
            return self._flush(decode_pending=False)
        if len(self.token_ids) >= self.max_new_tokens:
            self.finish_reason = "length"
            return self._flush()
        return self._take_safe()

    def cancel(self, reason: FinishReason = "cancelled") -> str:
        """Stop this sequence now (consumer gone, time up); return the text still held back."""
        if self.done:
            return ""
        self.finish_reason = reason
        return self._flush()

    def final_text(self) -> str:
        return self.text

    def _decode_new(self) -> str:
        # vLLM-style incremental detokenization: decode a short window so that byte-level
        # merges and multi-byte characters come out right, and hold back incomplete ones.
        ids = self.token_ids  # no end token here: it finishes the row before decoding
        prefix = self.tokenizer.decode(
            ids[self._prefix_offset : self._read_offset], skip_special_tokens=False
        )
        full = self.tokenizer.decode(ids[self._prefix_offset :], skip_special_tokens=False)
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            self._prefix_offset = self._read_offset
            self._read_offset = len(ids)
            return full[len(prefix) :]
        return ""

    def _truncate_at_stop(self) -> bool:
        if not self.stop:
            return False
        longest = max(len(s) for s in self.stop)
        start = max(0, self.emitted - longest)
        hits = [i for s in self.stop if s and (i := self.text.find(s, start)) >= 0]
        if not hits:
            return False
        self.text = self.text[: min(hits)]
        return True

    def _take_safe(self) -> str:
        """Emit everything except a tail that could be the beginning of a stop string."""
        keep = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, len(self.text)), 0, -1):
                if self.text.endswith(s[:n]):
                    keep = max(keep, n)
                    break
        end = max(self.emitted, len(self.text) - keep)
        delta = self.text[self.emitted : end]
        self.emitted = end
        return delta

    def _flush(self, *, decode_pending: bool = True) -> str:
        """Emit everything left; first decode held-back tokens unless a stop string ended it."""
        if decode_pending:
            ids = [t for t in self.token_ids if t not in self.eos_token_ids]
            tail = self.tokenizer.decode(ids[self._prefix_offset :], skip_special_tokens=False)
            head = self.tokenizer.decode(
                ids[self._prefix_offset : self._read_offset], skip_special_tokens=False
            )
            if len(tail) > len(head):
                self.text += tail[len(head) :]
                self._prefix_offset = self._read_offset = len(ids)
                self._truncate_at_stop()
        delta = self.text[self.emitted :]
        self.emitted = len(self.text)
        return delta

"""Bounded caches that make agent steps cheaper.

- `VisionCache`: image features (vision tower + projector output) by image content and tiling,
  so the planner call and the grounding call of one step encode the screenshot once.
- `PrefixCache`: the KV caches of recent prompts, so a prompt that starts like an earlier one
  (system prompt, tool definitions, task, the older history of an agent run) is prefilled
  only from where it differs.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any


class VisionCache:
    """LRU of image features, bounded by bytes (features stay on the model's device)."""

    def __init__(self, max_bytes: int = 256 * 1024 * 1024):
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._items

    def get(self, key: str) -> Any | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: str, features: Any) -> None:
        size = features.numel() * features.element_size()
        if size > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = features
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.numel() * old.element_size()

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    @property
    def size_bytes(self) -> int:
        return self._bytes


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading items `a` and `b` share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def crop_kv(kv: Any, length: int) -> None:
    """Cut a transformers Cache back to its first `length` tokens, in place."""
    extra = kv.get_seq_length() - length
    if extra > 0:
        kv.crop(-extra)


class PrefixCache:
    """The KV caches of recent prompts, reused for the longest prefix a new prompt shares.

    An agent's step prompt repeats the last one up to the end of its text history (system
    prompt, tools, task, older history lines), so only the new part is prefilled. Prompts are
    compared by a *signature*: token ids with every image token replaced by a marker of that
    image's content, so two different screenshots never share KV. Entries are handed over, not
    copied: the caller extends the cache during generation and stores it back afterwards.
    """

    def __init__(self, max_entries: int = 2):
        self.max_entries = max_entries
        self._items: OrderedDict[int, tuple[tuple[int, ...], Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._next = 0
        self.hits = 0
        self.misses = 0
        self.reused_tokens = 0

    def take(self, signature: Sequence[int]) -> tuple[Any | None, int]:
        """The entry sharing the longest prefix with `signature`, cut to that prefix, and its
        length; (None, 0) when nothing is shared. At least one token is left to compute."""
        limit = len(signature) - 1
        with self._lock:
            best, best_len = None, 0
            for key, (stored, _) in self._items.items():
                shared = min(common_prefix_length(stored, signature), limit)
                if shared > best_len:
                    best, best_len = key, shared
            if best is None:
                self.misses += 1
                return None, 0
            _, kv = self._items.pop(best)
            self.hits += 1
            self.reused_tokens += best_len
        crop_kv(kv, best_len)
        return kv, best_len

    def store(self, signature: Sequence[int], kv: Any) -> None:
        """Keep `kv`, cut to the prompt (`signature`), for later prompts that extend it."""
        if self.max_entries <= 0:
            return
        crop_kv(kv, len(signature))
        with self._lock:
            self._items[self._next] = (tuple(signature), kv)
            self._next += 1
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

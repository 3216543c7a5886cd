"""Bounded caches that make agent steps cheaper.

- `VisionCache`: image features (vision tower + projector output) by image content and tiling,
  so the planner call and the grounding call of one step encode the screenshot once.
- `PrefixCache`: the KV cache of a prompt's first turn (system prompt and tool definitions,
  the same at every step), so each step's prefill starts after it.
"""

from __future__ import annotations

import copy
import hashlib
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


def prefix_length(input_ids: Sequence[int], end_token_id: int, newline_id: int | None) -> int:
    """Length of the first turn: through its first end token (and the newline after it)."""
    try:
        end = list(input_ids).index(end_token_id)
    except ValueError:
        return 0
    n = end + 1
    if newline_id is not None and n < len(input_ids) and input_ids[n] == newline_id:
        n += 1
    return n


class PrefixCache:
    """LRU of KV caches of prompt prefixes, keyed by the prefix's token ids."""

    def __init__(self, max_entries: int = 4):
        self.max_entries = max_entries
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(token_ids: Sequence[int]) -> str:
        return hashlib.blake2b(repr(tuple(token_ids)).encode(), digest_size=16).hexdigest()

    def get_copy(self, key: str) -> Any | None:
        """A private copy of the cached KV (generation extends it in place)."""
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
        return copy.deepcopy(value)

    def put(self, key: str, kv: Any) -> None:
        if self.max_entries <= 0:
            return
        with self._lock:
            self._items[key] = kv
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

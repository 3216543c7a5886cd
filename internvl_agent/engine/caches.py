"""Bounded caches that make agent steps cheaper.

- `LRU`: the one bounded, thread-safe least-recently-used map every cache here is built on.
- `VisionCache`: image features (vision tower + projector output) by image content and tiling,
  so the planner call and the grounding call of one step encode the screenshot once.
- `PrefixCache`: the KV caches of recent prompts, so a prompt that starts like an earlier one
  (system prompt, tool definitions, task, the older history of an agent run) is prefilled
  only from where it differs.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    """A thread-safe LRU map bounded by entry count and/or by total size.

    `size(value)` gives an entry's size (1 each by default); the least recently used entries
    are dropped while there are more than `max_entries` or their sizes add up to more than
    `max_size`. A value larger than `max_size` on its own is not stored. `hits` and `misses`
    count the lookups of `get`.
    """

    def __init__(
        self,
        max_entries: int | None = None,
        *,
        max_size: int | None = None,
        size: Callable[[V], int] | None = None,
    ) -> None:
        self.max_entries = max_entries
        self.max_size = max_size
        self._size_of = size or (lambda _: 1)
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._total = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __contains__(self, key: K) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    @property
    def total_size(self) -> int:
        """The sizes of the stored values, added up."""
        return self._total

    def get(self, key: K) -> V | None:
        """The value of `key` (now the most recently used), or None."""
        with self._lock:
            entry = self._items.get(key)
            if entry is None:
                self.misses += 1
                return None
            self.hits += 1
            self._items.move_to_end(key)
            return entry[0]

    def put(self, key: K, value: V) -> None:
        """Store `value` under `key` (replacing any), then drop entries over the bounds."""
        size = self._size_of(value)
        if self.max_size is not None and size > self.max_size:
            return
        with self._lock:
            self._pop(key)
            self._items[key] = (value, size)
            self._total += size
            while self._items and (
                (self.max_entries is not None and len(self._items) > self.max_entries)
                or (self.max_size is not None and self._total > self.max_size)
            ):
                self._total -= self._items.popitem(last=False)[1][1]

    def pop(self, key: K) -> V | None:
        """Remove `key` and return its value, or None."""
        with self._lock:
            return self._pop(key)

    def items(self) -> list[tuple[K, V]]:
        """A snapshot of the entries, least recently used first."""
        with self._lock:
            return [(key, value) for key, (value, _) in self._items.items()]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._total = 0

    def _pop(self, key: K) -> V | None:
        entry = self._items.pop(key, None)
        if entry is None:
            return None
        self._total -= entry[1]
        return entry[0]


def _tensor_bytes(tensor: Any) -> int:
    return int(tensor.numel() * tensor.element_size())


def kv_bytes(kv: Any) -> int:
    """Bytes a transformers KV cache holds: the storage behind its key and value tensors
    (a cropped cache still holds the storage it was cut from)."""
    tensors: list[Any] = []
    for layer in getattr(kv, "layers", None) or ():
        tensors += [getattr(layer, "keys", None), getattr(layer, "values", None)]
    tensors += [*getattr(kv, "key_cache", ()), *getattr(kv, "value_cache", ())]
    seen: set[int] = set()
    total = 0
    for tensor in tensors:
        if tensor is None or not hasattr(tensor, "untyped_storage"):
            continue
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += int(storage.nbytes())
    return total


DEFAULT_PREFIX_CACHE_BYTES = 1024 * 1024 * 1024


class VisionCache:
    """Image features by key, bounded by bytes (features stay on the model's device)."""

    def __init__(self, max_bytes: int = 256 * 1024 * 1024):
        self._lru: LRU[str, Any] = LRU(max_size=max_bytes, size=_tensor_bytes)

    def __contains__(self, key: str) -> bool:
        return key in self._lru

    def get(self, key: str) -> Any | None:
        return self._lru.get(key)

    def put(self, key: str, features: Any) -> None:
        if key not in self._lru:
            self._lru.put(key, features)

    def clear(self) -> None:
        self._lru.clear()

    @property
    def size_bytes(self) -> int:
        return self._lru.total_size

    @property
    def hits(self) -> int:
        return self._lru.hits

    @property
    def misses(self) -> int:
        return self._lru.misses


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

    Bounded by entries and by bytes (``max_bytes``, the KV tensors' storage): a long agent run
    has ever longer prompts, so without a byte cap two entries could grow without end.
    """

    def __init__(self, max_entries: int = 2, max_bytes: int | None = DEFAULT_PREFIX_CACHE_BYTES):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._lru: LRU[int, tuple[tuple[int, ...], Any]] = LRU(
            max_entries, max_size=max_bytes, size=lambda entry: kv_bytes(entry[1])
        )
        self._lock = threading.Lock()  # one take() at a time: find the best entry, then pop it
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
            for key, (stored, _) in self._lru.items():
                shared = min(common_prefix_length(stored, signature), limit)
                if shared > best_len:
                    best, best_len = key, shared
            entry = self._lru.pop(best) if best is not None else None
            if entry is None:
                self.misses += 1
                return None, 0
            self.hits += 1
            self.reused_tokens += best_len
        kv = entry[1]
        crop_kv(kv, best_len)
        return kv, best_len

    def store(self, signature: Sequence[int], kv: Any) -> None:
        """Keep `kv`, cut to the prompt (`signature`), for later prompts that extend it."""
        if self.max_entries <= 0:
            return
        crop_kv(kv, len(signature))
        with self._lock:
            key, self._next = self._next, self._next + 1
        self._lru.put(key, (tuple(signature), kv))

    def clear(self) -> None:
        self._lru.clear()

    @property
    def size_bytes(self) -> int:
        """Bytes of the KV caches stored now."""
        return self._lru.total_size

    def __len__(self) -> int:
        return len(self._lru)

"""The engine's caches on their own: the LRU, the vision cache's byte bound, the prefix cache.

That they reuse work and leave answers unchanged on the tiny checkpoint is
tests/integration/test_caches_engine.py's.
"""

from __future__ import annotations

import torch

from internvl_agent.engine.caches import (
    LRU,
    PrefixCache,
    VisionCache,
    common_prefix_length,
    kv_bytes,
)


def test_vision_cache_lru_is_bounded_by_bytes() -> None:
    cache = VisionCache(max_bytes=3 * 4 * 10)
    for key in "abcd":
        cache.put(key, torch.zeros(10))  # 40 bytes each
    assert "a" not in cache and all(k in cache for k in "bcd")
    assert cache.size_bytes == 120
    cache.put("huge", torch.zeros(1000))  # larger than the whole cache: not stored
    assert "huge" not in cache and cache.get("b") is not None


class _FakeKV:
    """Stands in for a transformers Cache: a list of tokens that can be cropped."""

    def __init__(self, tokens: list[int]) -> None:
        self.tokens = list(tokens)

    def get_seq_length(self) -> int:
        return len(self.tokens)

    def crop(self, n: int) -> None:
        del self.tokens[n:]


def test_common_prefix_length() -> None:
    assert common_prefix_length([1, 2, 3], [1, 2, 4, 5]) == 2
    assert common_prefix_length([], [1]) == 0


def test_prefix_cache_hands_over_the_longest_shared_prefix() -> None:
    cache = PrefixCache(max_entries=2)
    cache.store([1, 2, 3, 4], _FakeKV([1, 2, 3, 4, 99]))  # cut back to the prompt
    cache.store([1, 2, 7], _FakeKV([1, 2, 7]))
    kv, shared = cache.take([1, 2, 3, 5, 6])
    assert shared == 3 and kv.tokens == [1, 2, 3]
    assert cache.take([1, 2, 3, 5])[1] == 2  # the first entry was handed over, not copied
    kv, shared = cache.take([1, 2, 7])
    assert kv is None and shared == 0  # nothing left in the cache
    cache.store([5], _FakeKV([5]))
    assert cache.take([5])[1] == 0  # at least one token is always left to compute


def test_prefix_cache_evicts_the_oldest_entry() -> None:
    cache = PrefixCache(max_entries=1)
    cache.store([1, 2, 3], _FakeKV([1, 2, 3]))
    cache.store([4, 5, 6], _FakeKV([4, 5, 6]))
    assert cache.take([1, 2, 3, 9])[0] is None
    assert cache.take([4, 5, 6, 9])[1] == 3


def test_lru_bounds_entries_and_size_and_counts_lookups() -> None:
    by_count: LRU[str, int] = LRU(2)
    for key, value in (("a", 1), ("b", 2), ("c", 3)):
        by_count.put(key, value)
    assert "a" not in by_count and by_count.get("b") == 2  # b is now the most recent
    by_count.put("d", 4)
    assert [key for key, _ in by_count.items()] == ["b", "d"]
    assert by_count.get("zzz") is None and (by_count.hits, by_count.misses) == (1, 1)
    by_size: LRU[str, str] = LRU(max_size=5, size=len)
    by_size.put("x", "abc")
    by_size.put("y", "de")
    by_size.put("x", "a")  # replacing an entry replaces its size
    assert by_size.total_size == 3
    by_size.put("z", "wxyz")  # 7 > 5: the least recently used entry (y) goes
    assert "y" not in by_size and by_size.total_size == 5
    by_size.put("big", "toolong")  # larger than the whole bound: not stored
    assert "big" not in by_size and len(by_size) == 2
    assert by_size.pop("x") == "a" and by_size.total_size == 4


def _dynamic_kv(tokens: int) -> object:
    """A transformers DynamicCache of two layers, `tokens` long (float32, 2 heads x 4)."""
    from transformers import DynamicCache

    kv = DynamicCache()
    for layer in range(2):
        kv.update(torch.zeros(1, 2, tokens, 4), torch.zeros(1, 2, tokens, 4), layer)
    return kv


def test_kv_bytes_counts_the_storage_a_cropped_cache_still_holds() -> None:
    kv = _dynamic_kv(10)
    assert kv_bytes(kv) == 2 * 2 * (2 * 10 * 4 * 4)
    kv.crop(-6)  # a view of the first 4 tokens: the storage of 10 stays alive
    assert kv.get_seq_length() == 4 and kv_bytes(kv) == 2 * 2 * (2 * 10 * 4 * 4)
    assert kv_bytes(_FakeKV([1, 2])) == 0


def test_prefix_cache_is_bounded_by_bytes() -> None:
    one = kv_bytes(_dynamic_kv(10))
    cache = PrefixCache(max_entries=8, max_bytes=2 * one)
    for start in range(4):
        cache.store(list(range(start * 100, start * 100 + 10)), _dynamic_kv(10))
        assert cache.size_bytes <= 2 * one
    assert len(cache) == 2 and cache.size_bytes == 2 * one
    kv, shared = cache.take(list(range(300, 320)))  # the newest one is kept
    assert kv is not None and shared == 10
    assert cache.take(list(range(0, 20))) == (None, 0)  # the oldest was dropped
    cache.store(list(range(50)), _dynamic_kv(50))  # larger than the cap alone: not kept
    assert len(cache) == 1

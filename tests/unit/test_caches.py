"""The engine's vision cache and prefix KV cache: reused work, unchanged answers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from internvl_agent.engine.caches import LRU, PrefixCache, VisionCache, common_prefix_length
from internvl_agent.engine.engine import InternVLEngine
from internvl_agent.engine.images import TilingConfig
from internvl_agent.engine.loading import LoadSpec
from internvl_agent.engine.prompt import Turn
from internvl_agent.engine.requests import GenerationRequest


def _engine(checkpoint: Path, **kwargs) -> InternVLEngine:
    # A private engine (not the shared registry one) so cache counters start at zero.
    return InternVLEngine(LoadSpec(str(checkpoint), device="cpu"), **kwargs)


def _screenshot(color: tuple[int, int, int] = (200, 30, 30)) -> Image.Image:
    image = Image.new("RGB", (896, 448), "white")
    image.paste(color, (100, 100, 300, 200))
    return image


def _request(image: Image.Image | None, system: str = "You drive a browser.", text: str = "go"):
    parts: list = [image, text] if image is not None else [text]
    turns = [Turn("system", [system]), Turn("user", parts)]
    return GenerationRequest(turns, max_new_tokens=12, tiling=TilingConfig(max_tiles=2))


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


def test_same_screenshot_is_encoded_once(tiny_checkpoint: Path) -> None:
    engine = _engine(tiny_checkpoint)
    shot = _screenshot()
    planner = engine.prepare(_request(shot, text="what next?"))
    assert planner.images[0].pixel_values is not None
    engine.generate(_request(shot, text="what next?"))
    grounding = engine.prepare(_request(shot, text="where is the red box?"))
    assert grounding.images[0].pixel_values is None  # features come from the cache
    engine.generate(_request(shot, text="where is the red box?"))
    assert engine.vision_cache.hits >= 1
    misses = engine.vision_cache.misses
    engine.generate(_request(_screenshot((30, 200, 30))))  # a new screenshot is a miss
    assert engine.vision_cache.misses == misses + 1


@pytest.mark.parametrize("with_image", [True, False])
def test_caches_do_not_change_greedy_answers(tiny_checkpoint: Path, with_image: bool) -> None:
    cached = _engine(tiny_checkpoint)
    plain = _engine(tiny_checkpoint, vision_cache_bytes=0, prefix_cache_entries=0)
    image = _screenshot() if with_image else None
    for text in ("first step", "second step", "third step"):
        a = cached.generate(_request(image, text=text))
        b = plain.generate(_request(image, text=text))
        assert a.text == b.text and a.output_tokens == b.output_tokens
    assert cached.prefix_cache.hits >= 2 and plain.prefix_cache.hits == 0
    if with_image:
        assert cached.vision_cache.hits >= 2 and plain.vision_cache.hits == 0


def test_a_growing_conversation_reuses_everything_but_the_new_part(tiny_checkpoint: Path) -> None:
    engine = _engine(tiny_checkpoint)
    history = "step 1: clicked"
    first = engine.prepare(_request(_screenshot(), text=history))
    engine.generate(_request(_screenshot(), text=history))
    assert engine.prefix_cache.reused_tokens == 0
    history += "\nstep 2: typed"
    engine.generate(_request(_screenshot(), text=history))
    # Everything up to where the new history line starts is reused; the image tokens too.
    assert engine.prefix_cache.reused_tokens > first.image_tokens


def test_different_screenshots_never_share_kv(tiny_checkpoint: Path) -> None:
    engine = _engine(tiny_checkpoint)
    engine.generate(_request(_screenshot((200, 0, 0)), text="same"))
    red = engine.prepare(_request(_screenshot((200, 0, 0)), text="same"))
    engine.generate(_request(_screenshot((0, 200, 0)), text="same"))
    image_start = red.input_ids.index(engine.model.config.image_token_id)
    assert 0 < engine.prefix_cache.reused_tokens <= image_start


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

"""The engine's vision cache and prefix KV cache: reused work, unchanged answers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from internvl_agent.engine.caches import PrefixCache, VisionCache, prefix_length
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


def test_prefix_length_stops_after_first_turn() -> None:
    assert prefix_length([5, 6, 9, 1, 7, 9], end_token_id=9, newline_id=1) == 4
    assert prefix_length([5, 6, 9, 7], end_token_id=9, newline_id=1) == 3
    assert prefix_length([5, 6], end_token_id=9, newline_id=1) == 0


def test_prefix_cache_hands_out_independent_copies() -> None:
    cache = PrefixCache(max_entries=1)
    cache.put("k", {"kv": [1]})
    first = cache.get_copy("k")
    first["kv"].append(2)
    assert cache.get_copy("k") == {"kv": [1]}
    cache.put("other", {})
    assert cache.get_copy("k") is None  # evicted


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


def test_prefix_cache_is_keyed_by_the_first_turn(tiny_checkpoint: Path) -> None:
    engine = _engine(tiny_checkpoint)
    engine.generate(_request(None, system="System A"))
    engine.generate(_request(None, system="System B"))
    assert engine.prefix_cache.hits == 0
    engine.generate(_request(None, system="System A", text="later"))
    assert engine.prefix_cache.hits == 1

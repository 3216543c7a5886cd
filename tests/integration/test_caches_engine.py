"""The engine's vision cache and prefix KV cache on the tiny checkpoint: reused work, unchanged
answers.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

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

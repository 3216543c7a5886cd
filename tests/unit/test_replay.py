"""The replay's measures: the patch difference around a target and rebasing recorded URLs."""

from __future__ import annotations

from PIL import Image, ImageDraw

from internvl_agent.replay import DEFAULT_THRESHOLD, PATCH, patch_difference, rebase


def _page(button_at: tuple[int, int]) -> Image.Image:
    image = Image.new("RGB", (400, 300), "white")
    x, y = button_at
    ImageDraw.Draw(image).rectangle((x - 30, y - 12, x + 30, y + 12), fill=(36, 86, 214))
    return image


def test_identical_patches_differ_by_zero() -> None:
    assert patch_difference(_page((100, 100)), (100, 100), _page((100, 100)), (100, 100)) == 0


def test_a_moved_button_is_above_the_threshold_and_refound_below_it() -> None:
    before, after = _page((100, 100)), _page((100, 220))
    assert patch_difference(before, (100, 100), after, (100, 100)) > DEFAULT_THRESHOLD
    assert patch_difference(before, (100, 100), after, (100, 220)) == 0


def test_a_caret_sized_change_stays_below_the_threshold() -> None:
    before, after = _page((100, 100)), _page((100, 100))
    ImageDraw.Draw(after).line((90, 92, 90, 108), fill="black", width=2)  # a text caret
    assert 0 < patch_difference(before, (100, 100), after, (100, 100)) < DEFAULT_THRESHOLD / 4


def test_patches_at_the_edge_are_clipped_and_sizes_must_agree() -> None:
    image = _page((10, 10))
    assert patch_difference(image, (0, 0), image, (399, 299)) > 0  # both full PATCH squares
    assert patch_difference(image, (0, 0), image.resize((200, 150)), (0, 0)) == 1.0
    assert min(image.size) >= PATCH


def test_rebase_moves_only_urls_on_the_old_origin() -> None:
    old, new = "http://127.0.0.1:8000", "http://127.0.0.1:9000"
    assert rebase("http://127.0.0.1:8000/a?q=1#f", old, new) == "http://127.0.0.1:9000/a?q=1#f"
    assert rebase("https://example.com/a", old, new) == "https://example.com/a"
    assert rebase("http://127.0.0.1:8000/a", old, None) == "http://127.0.0.1:8000/a"
    assert rebase(None, old, new) is None

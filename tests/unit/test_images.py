"""InternVL image preprocessing, checked against transformers' GotOcr2ImageProcessorPil.

Two oracles: transformers' GotOcr2 PIL processor (same tiling and normalization, no
torchvision) for grids and pixel values, and a line-for-line transcription of the model
cards' ``find_closest_aspect_ratio`` / ``dynamic_preprocess`` for grid choice and tiles.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from PIL import Image
from transformers.image_utils import PILImageResampling
from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import (
    GotOcr2ImageProcessorPil,
    get_optimal_tiled_canvas,
)

from internvl_agent.engine import images as images_module
from internvl_agent.engine.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PreprocessedImage,
    TilingConfig,
    candidate_grids,
    choose_grid,
    freeze_image,
    image_cache_key,
    preprocess_image,
    to_rgb,
)
from internvl_agent.errors import ConfigurationError, ImageInputError

TOLERANCE = 1e-3


# --- oracles -------------------------------------------------------------------------------


def _model_card_find_closest_aspect_ratio(aspect_ratio, target_ratios, width, height, image_size):
    """Transcribed from the InternVL model cards."""
    best_ratio_diff = float("inf")
    best_ratio = (1, 1)
    area = width * height
    for ratio in target_ratios:
        target_aspect_ratio = ratio[0] / ratio[1]
        ratio_diff = abs(aspect_ratio - target_aspect_ratio)
        if ratio_diff < best_ratio_diff:
            best_ratio_diff = ratio_diff
            best_ratio = ratio
        elif ratio_diff == best_ratio_diff:  # noqa: SIM102 (verbatim)
            if area > 0.5 * image_size * image_size * ratio[0] * ratio[1]:
                best_ratio = ratio
    return best_ratio


def _model_card_target_ratios(min_num, max_num):
    """Transcribed from the InternVL model cards' ``dynamic_preprocess``."""
    target_ratios = set(
        (i, j)
        for n in range(min_num, max_num + 1)
        for i in range(1, n + 1)
        for j in range(1, n + 1)
        if i * j <= max_num and i * j >= min_num
    )
    return sorted(target_ratios, key=lambda x: x[0] * x[1])


def _model_card_grid(width, height, min_num, max_num, image_size=448):
    """Grid the model cards' ``dynamic_preprocess`` chooses."""
    ratios = _model_card_target_ratios(min_num, max_num)
    return _model_card_find_closest_aspect_ratio(width / height, ratios, width, height, image_size)


def _model_card_dynamic_preprocess(image, min_num, max_num, image_size=448, use_thumbnail=True):
    """Transcribed from the InternVL model cards (returns PIL tiles)."""
    target = _model_card_grid(image.width, image.height, min_num, max_num, image_size)
    target_width, target_height = image_size * target[0], image_size * target[1]
    resized_img = image.resize((target_width, target_height))
    processed_images = []
    for i in range(target[0] * target[1]):
        box = (
            (i % (target_width // image_size)) * image_size,
            (i // (target_width // image_size)) * image_size,
            ((i % (target_width // image_size)) + 1) * image_size,
            ((i // (target_width // image_size)) + 1) * image_size,
        )
        processed_images.append(resized_img.crop(box))
    if use_thumbnail and len(processed_images) != 1:
        processed_images.append(image.resize((image_size, image_size)))
    return processed_images


@functools.cache
def _got_ocr2(min_tiles: int, max_tiles: int) -> GotOcr2ImageProcessorPil:
    """GotOcr2 PIL processor configured the way InternVL preprocesses."""
    return GotOcr2ImageProcessorPil(
        crop_to_patches=True,
        min_patches=min_tiles,
        max_patches=max_tiles,
        size={"height": 448, "width": 448},
        resample=PILImageResampling.BICUBIC,
        do_resize=True,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
        do_convert_rgb=True,
    )


def _reference(image: Image.Image, config: TilingConfig) -> tuple[tuple[int, int], np.ndarray]:
    """(grid, pixel_values) from GotOcr2 for ``image``."""
    processor = _got_ocr2(config.min_tiles, config.max_tiles)
    out = processor(images=image, return_tensors="np")
    grid = get_optimal_tiled_canvas(
        (image.height, image.width), (448, 448), config.min_tiles, config.max_tiles
    )
    if config.max_tiles == 1:  # GotOcr2 skips cropping entirely; InternVL's grid is (1, 1)
        grid = (1, 1)
    assert out["num_patches"][0] == out["pixel_values"].shape[0]
    return grid, out["pixel_values"]


def _noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """Random RGB noise: the harshest input for a resampling comparison."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


# --- grid and pixel parity with GotOcr2 -----------------------------------------------------

FIXED_SIZES = [
    (1, 1),
    (10, 500),
    (500, 10),
    (448, 448),
    (1920, 1080),
    (1080, 1920),
    (1280, 800),
    (3000, 200),
    (200, 3000),
    (447, 449),
    (895, 449),
    (1001, 333),
    (333, 1001),
    (7, 3),
    (2, 2000),
    (640, 480),
    (800, 1280),
    (1366, 768),
    (896, 448),
    (1344, 448),
    (1000, 1000),
]
RANDOM_SIZES = [
    tuple(int(v) for v in pair) for pair in np.random.default_rng(1234).integers(1, 2500, (8, 2))
]
CONFIGS = [
    TilingConfig(max_tiles=12),
    TilingConfig(max_tiles=6),
    TilingConfig(max_tiles=1),
    TilingConfig(min_tiles=2, max_tiles=12),
    TilingConfig(min_tiles=3, max_tiles=6),
]
CASES = [
    (size, CONFIGS[index % len(CONFIGS)]) for index, size in enumerate(FIXED_SIZES + RANDOM_SIZES)
] + [
    (size, config) for size in [(1, 1), (10, 500), (1920, 1080), (1080, 1920)] for config in CONFIGS
]


@pytest.mark.parametrize(
    ("size", "config"),
    CASES,
    ids=[f"{w}x{h}-min{c.min_tiles}-max{c.max_tiles}" for (w, h), c in CASES],
)
def test_matches_got_ocr2(size: tuple[int, int], config: TilingConfig) -> None:
    image = _noise_image(*size, seed=size[0] * 7919 + size[1])
    expected_grid, expected_pixels = _reference(image, config)

    result = preprocess_image(image, config)

    assert result.grid == expected_grid
    assert result.grid == _model_card_grid(*size, config.min_tiles, config.max_tiles)
    assert result.original_size == size
    assert result.pixel_values.dtype == np.float32
    assert result.pixel_values.shape == expected_pixels.shape
    assert result.num_tiles == expected_pixels.shape[0]
    assert float(np.abs(result.pixel_values - expected_pixels).max()) < TOLERANCE


def test_matches_got_ocr2_without_thumbnail_in_grid_part() -> None:
    image = _noise_image(1280, 800, seed=5)
    with_thumb = preprocess_image(image, TilingConfig(max_tiles=6))
    without = preprocess_image(image, TilingConfig(max_tiles=6, use_thumbnail=False))

    assert without.num_tiles == with_thumb.num_tiles - 1
    np.testing.assert_array_equal(without.pixel_values, with_thumb.pixel_values[:-1])


# --- grid choice against the model cards ----------------------------------------------------

GRID_SIZES = [
    *FIXED_SIZES,
    *RANDOM_SIZES,
    (5, 2),  # midpoint ties between grids of equal tile count
    (1500, 600),
    (13, 5),
    (1300, 500),
    (15, 4),
    (4500, 1200),
    (5, 16),
    (3, 2),
    (1344, 896),
]


@pytest.mark.parametrize("max_tiles", range(1, 13))
def test_choose_grid_equals_model_card_for_every_min_max(max_tiles: int) -> None:
    for min_tiles in range(1, max_tiles + 1):
        config = TilingConfig(min_tiles=min_tiles, max_tiles=max_tiles)
        assert list(candidate_grids(min_tiles, max_tiles)) == _model_card_target_ratios(
            min_tiles, max_tiles
        )
        for width, height in GRID_SIZES:
            assert choose_grid(width, height, config) == _model_card_grid(
                width, height, min_tiles, max_tiles
            ), (width, height, min_tiles, max_tiles)


@pytest.mark.parametrize(
    ("size", "config", "grid"),
    [
        ((1920, 1080), TilingConfig(), (4, 2)),
        ((448, 448), TilingConfig(), (1, 1)),
        ((1000, 1000), TilingConfig(), (3, 3)),  # tie: area beats half of 3x3 canvas
        ((700, 700), TilingConfig(), (2, 2)),
        ((3000, 200), TilingConfig(), (12, 1)),
        ((1920, 1080), TilingConfig(max_tiles=1), (1, 1)),
        ((1920, 1080), TilingConfig(max_tiles=6), (2, 1)),
    ],
)
def test_choose_grid_known_values(
    size: tuple[int, int], config: TilingConfig, grid: tuple[int, int]
) -> None:
    assert choose_grid(*size, config) == grid


def test_tie_order_follows_model_card_not_got_ocr2() -> None:
    # 5x2 with exactly 4 tiles: (4, 1) and (2, 2) are equally far from 2.5; the model
    # cards' set order puts (4, 1) first, GotOcr2's list puts (2, 2) first.
    config = TilingConfig(min_tiles=4, max_tiles=4)
    assert choose_grid(5, 2, config) == (4, 1)
    assert get_optimal_tiled_canvas((2, 5), (448, 448), 4, 4) == (2, 2)


@pytest.mark.parametrize(("width", "height"), [(0, 10), (10, 0), (-1, 5)])
def test_choose_grid_rejects_empty_sizes(width: int, height: int) -> None:
    with pytest.raises(ImageInputError, match="at least 1x1"):
        choose_grid(width, height, TilingConfig())


# --- tiles ------------------------------------------------------------------------------


def _normalized(tiles: list[Image.Image]) -> np.ndarray:
    """The model cards' ToTensor + Normalize(ImageNet) of each tile, stacked."""
    mean = np.array(IMAGENET_MEAN, dtype=np.float32)[:, None, None]
    std = np.array(IMAGENET_STD, dtype=np.float32)[:, None, None]
    return np.stack(
        [(np.asarray(t, dtype=np.float32).transpose(2, 0, 1) / 255 - mean) / std for t in tiles]
    )


@pytest.mark.parametrize(
    ("size", "config"),
    [
        ((1920, 1080), TilingConfig()),
        ((300, 900), TilingConfig(max_tiles=6)),
        ((100, 100), TilingConfig()),
        ((1000, 600), TilingConfig()),
        ((5, 2), TilingConfig(min_tiles=4, max_tiles=4)),
        # 1200x700 is above the threshold, so the thumbnail is resized in a second thread.
        ((1200, 700), TilingConfig(max_tiles=4)),
    ],
)
def test_pixel_values_are_the_model_cards_normalized_tiles(
    size: tuple[int, int], config: TilingConfig
) -> None:
    image = _noise_image(*size, seed=3)
    expected = _model_card_dynamic_preprocess(image, config.min_tiles, config.max_tiles)
    assert all(tile.size == (448, 448) and tile.mode == "RGB" for tile in expected)

    result = preprocess_image(image, config)

    assert result.num_tiles == len(expected)
    np.testing.assert_allclose(result.pixel_values, _normalized(expected), atol=1e-5, rtol=0)


def test_custom_tile_size() -> None:
    config = TilingConfig(max_tiles=4, tile_size=32)
    result = preprocess_image(_noise_image(100, 40, seed=2), config)
    # 2.5 is as far from 2x1 as from 3x1; the area (4000 > 0.5 * 32**2 * 3) picks 3x1.
    assert result.grid == (3, 1) == _model_card_grid(100, 40, 1, 4, image_size=32)
    assert result.pixel_values.shape == (4, 3, 32, 32)
    assert isinstance(result, PreprocessedImage)


# --- mode conversion ----------------------------------------------------------------------


def _rgba_image() -> Image.Image:
    rng = np.random.default_rng(11)
    return Image.fromarray(rng.integers(0, 256, (90, 160, 4), dtype=np.uint8))


def _paletted_with_transparency() -> Image.Image:
    image = _noise_image(120, 70, seed=4).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    image.info["transparency"] = 3
    return image


MODE_IMAGES = {
    "RGBA": _rgba_image,
    "P+transparency": _paletted_with_transparency,
    "P": lambda: _noise_image(120, 70, seed=4).convert("P"),
    "LA": lambda: _rgba_image().convert("LA"),
    "L": lambda: _noise_image(80, 200, seed=6).convert("L"),
    "1": lambda: _noise_image(80, 60, seed=6).convert("1"),
    "CMYK": lambda: _noise_image(160, 90, seed=8).convert("CMYK"),
    "YCbCr": lambda: _noise_image(160, 90, seed=8).convert("YCbCr"),
}


@pytest.mark.parametrize("name", sorted(MODE_IMAGES))
def test_modes_match_got_ocr2(name: str) -> None:
    image = MODE_IMAGES[name]()
    config = TilingConfig(max_tiles=6)
    _, expected = _reference(image, config)

    result = preprocess_image(image, config)

    assert float(np.abs(result.pixel_values - expected).max()) < TOLERANCE


def test_rgb_is_returned_without_copy() -> None:
    image = _noise_image(4, 4)
    assert to_rgb(image) is image


def test_transparent_pixels_become_white() -> None:
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert np.asarray(to_rgb(image)).min() == 255


def test_premultiplied_modes_convert() -> None:
    rgba = Image.new("RGBa", (2, 2), (0, 0, 0, 0))
    la = Image.new("La", (2, 2), (10, 128))
    assert np.asarray(to_rgb(rgba)).min() == 255
    assert to_rgb(la).mode == "RGB"


@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_sixteen_bit_is_scaled_not_clipped(mode: str) -> None:
    values = np.array([[0, 257 * 128, 257 * 200, 65535]], dtype=">u2" if mode == "I;16B" else "<u2")
    image = Image.frombytes(mode, (4, 1), values.tobytes())
    assert np.asarray(to_rgb(image))[0, :, 0].tolist() == [0, 128, 200, 255]


def test_int32_mode_scales_only_when_above_eight_bits() -> None:
    wide = Image.frombytes("I", (2, 1), np.array([257 * 64, 65535], dtype="<i4").tobytes())
    narrow = Image.frombytes("I", (2, 1), np.array([64, 255], dtype="<i4").tobytes())
    assert np.asarray(to_rgb(wide))[0, :, 1].tolist() == [64, 255]
    assert np.asarray(to_rgb(narrow))[0, :, 1].tolist() == [64, 255]


def test_float_mode_unit_range_is_scaled() -> None:
    unit = Image.frombytes("F", (2, 1), np.array([0.5, 1.0], dtype="<f4").tobytes())
    wide = Image.frombytes("F", (2, 1), np.array([128.0, 300.0], dtype="<f4").tobytes())
    assert np.asarray(to_rgb(unit))[0, :, 2].tolist() == [128, 255]
    assert np.asarray(to_rgb(wide))[0, :, 2].tolist() == [128, 255]


@pytest.mark.parametrize("bad", [None, "image.png", np.zeros((4, 4, 3), dtype=np.uint8)])
def test_non_images_are_rejected(bad: object) -> None:
    with pytest.raises(ImageInputError, match=r"PIL\.Image\.Image"):
        preprocess_image(bad)  # type: ignore[arg-type]
    with pytest.raises(ImageInputError, match=r"PIL\.Image\.Image"):
        image_cache_key(bad, TilingConfig())  # type: ignore[arg-type]


def test_empty_image_is_rejected() -> None:
    with pytest.raises(ImageInputError, match="at least 1x1"):
        preprocess_image(Image.new("RGB", (0, 5)))


# --- config validation --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_tiles": 0}, "min_tiles must be >= 1"),
        ({"min_tiles": -3}, "min_tiles must be >= 1"),
        ({"min_tiles": 5, "max_tiles": 4}, "max_tiles must be >= min_tiles"),
        ({"max_tiles": 0}, "max_tiles must be >= min_tiles"),
        ({"tile_size": 0}, "tile_size must be > 0"),
        ({"tile_size": -448}, "tile_size must be > 0"),
        ({"max_tiles": 2.5}, "max_tiles must be an int"),
        ({"min_tiles": True}, "min_tiles must be an int"),
    ],
)
def test_config_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        TilingConfig(**kwargs)  # type: ignore[arg-type]


def test_config_defaults_and_errors_are_value_errors() -> None:
    config = TilingConfig()
    assert (config.max_tiles, config.min_tiles, config.tile_size, config.use_thumbnail) == (
        12,
        1,
        448,
        True,
    )
    with pytest.raises(ValueError):
        TilingConfig(min_tiles=0)


# --- cache key ----------------------------------------------------------------------------


def test_cache_key_is_stable() -> None:
    image = _noise_image(64, 48, seed=21)
    key = image_cache_key(image, TilingConfig())
    assert key == image_cache_key(image.copy(), TilingConfig())
    assert key == image_cache_key(Image.frombytes("RGB", (64, 48), image.tobytes()), TilingConfig())
    assert len(key) == 32
    int(key, 16)
    # Pinned: a change to the key scheme must be deliberate (it invalidates caches).
    assert image_cache_key(Image.new("RGB", (2, 2), (1, 2, 3)), TilingConfig()) == (
        "8feab6cccbb4f4654ed47ee4648db484"
    )


def test_cache_key_sensitivity() -> None:
    image = _noise_image(64, 48, seed=21)
    base = image_cache_key(image, TilingConfig())

    changed = image.copy()
    changed.putpixel((10, 10), tuple((v + 1) % 256 for v in changed.getpixel((10, 10))))
    transposed = Image.frombytes("RGB", (48, 64), image.tobytes())
    as_rgbx = Image.frombytes("RGBX", (48, 48), image.tobytes()[: 48 * 48 * 4])
    as_rgba = Image.frombytes("RGBA", (48, 48), image.tobytes()[: 48 * 48 * 4])
    keys = {
        base,
        image_cache_key(changed, TilingConfig()),
        image_cache_key(transposed, TilingConfig()),
        image_cache_key(as_rgbx, TilingConfig()),
        image_cache_key(as_rgba, TilingConfig()),
        image_cache_key(image, TilingConfig(max_tiles=6)),
        image_cache_key(image, TilingConfig(min_tiles=2)),
        image_cache_key(image, TilingConfig(tile_size=224)),
        image_cache_key(image, TilingConfig(use_thumbnail=False)),
    }
    assert len(keys) == 9


def _counting_pixel_keys(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = images_module._pixel_key
    monkeypatch.setattr(
        images_module, "_pixel_key", lambda im, cfg: calls.append(1) or real(im, cfg)
    )
    return calls


def test_a_frozen_image_is_hashed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    image = _noise_image(64, 48, seed=5)
    plain_key = image_cache_key(image.copy())
    calls = _counting_pixel_keys(monkeypatch)
    assert freeze_image(image) is image
    assert image_cache_key(image) == image_cache_key(image) == plain_key
    assert len(calls) == 1
    assert image_cache_key(image, TilingConfig(max_tiles=2)) != plain_key  # per tiling
    assert len(calls) == 2


def test_an_unfrozen_image_is_hashed_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    image = Image.new("RGB", (20, 20), "red")
    calls = _counting_pixel_keys(monkeypatch)
    before = image_cache_key(image)
    image.paste((0, 0, 255), (0, 0, 10, 10))  # a caller may change its own image
    assert image_cache_key(image) != before and len(calls) == 2


def test_frozen_keys_go_with_their_images() -> None:
    import gc

    image = freeze_image(Image.new("RGB", (3, 3)))
    image_cache_key(image)
    count = len(images_module._FROZEN._keys)
    del image
    gc.collect()
    assert len(images_module._FROZEN._keys) == count - 1
    with pytest.raises(ImageInputError, match=r"expected a PIL\.Image\.Image"):
        freeze_image("not an image")  # type: ignore[arg-type]


def test_cache_key_sees_palette_and_transparency() -> None:
    indices = np.arange(16, dtype=np.uint8).reshape(4, 4)
    first = Image.frombytes("P", (4, 4), indices.tobytes())
    first.putpalette([v for i in range(256) for v in (i, i, i)])
    second = first.copy()
    second.putpalette([v for i in range(256) for v in (255 - i, i, i)])
    keyed = first.copy()
    keyed.info["transparency"] = 0

    keys = {image_cache_key(im, TilingConfig()) for im in (first, second, keyed)}

    assert len(keys) == 3

"""InternVL dynamic-resolution image preprocessing with PIL and numpy (no torchvision).

This reproduces the ``dynamic_preprocess`` + ``build_transform`` pipeline of the InternVL
model cards: pick a grid of ``tile_size`` tiles whose aspect ratio is closest to the image's,
resize the image onto that canvas with bicubic filtering, cut the tiles row-major, append a
thumbnail of the whole image when there is more than one tile, then scale to [0, 1] and
normalize with the ImageNet mean and std into float32, channels-first.

Speed comes from resizing once to the grid canvas, each resize spread over the CPU cores
with PIL's exact pixels (engine/resize.py), and normalizing each colour plane of the canvas
straight into the output array with one multiply-add per plane, the planes on several
threads.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from internvl_agent.engine.resize import cpu_threads, resize_bicubic, run_in_threads
from internvl_agent.errors import ConfigurationError, ImageInputError

__all__ = [
    "DEFAULT_TILING",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PreprocessedImage",
    "TilingConfig",
    "candidate_grids",
    "choose_grid",
    "freeze_image",
    "image_cache_key",
    "is_frozen",
    "preprocess_image",
    "to_rgb",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# (x / 255 - mean) / std == x * _SCALE + _OFFSET, precomputed once in float32.
_SCALE = tuple(np.float32(1.0 / (255.0 * s)) for s in IMAGENET_STD)
_OFFSET = tuple(np.float32(-m / s) for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True))

_CACHE_KEY_VERSION = "internvl-agent/images/v1"
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_HIGH_DEPTH_MODES = _SIXTEEN_BIT_MODES | {"I", "F"}
# Below this many output values, normalizing on several threads costs more than it saves.
_PARALLEL_NORMALIZE_MIN_VALUES = 4 * 3 * 448 * 448


@dataclass(frozen=True)
class TilingConfig:
    """How an image is cut into tiles: tile-count bounds, tile edge and thumbnail use."""

    max_tiles: int = 12
    min_tiles: int = 1
    tile_size: int = 448
    use_thumbnail: bool = True

    def __post_init__(self) -> None:
        """Reject values the tiling cannot work with."""
        for name in ("max_tiles", "min_tiles", "tile_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigurationError(f"{name} must be an int, got {value!r}")
        if self.min_tiles < 1:
            raise ConfigurationError(f"min_tiles must be >= 1, got {self.min_tiles}")
        if self.max_tiles < self.min_tiles:
            raise ConfigurationError(
                f"max_tiles must be >= min_tiles, got min_tiles={self.min_tiles}, "
                f"max_tiles={self.max_tiles}"
            )
        if self.tile_size <= 0:
            raise ConfigurationError(f"tile_size must be > 0, got {self.tile_size}")


DEFAULT_TILING = TilingConfig()


@dataclass
class PreprocessedImage:
    """Normalized tiles of one image, ready for the vision encoder."""

    pixel_values: np.ndarray  # float32, (num_tiles, 3, tile_size, tile_size)
    grid: tuple[int, int]  # (cols, rows), thumbnail not included
    original_size: tuple[int, int]  # (width, height)

    @property
    def num_tiles(self) -> int:
        """Number of tiles, thumbnail included."""
        return int(self.pixel_values.shape[0])


@functools.lru_cache(maxsize=64)
def candidate_grids(min_tiles: int, max_tiles: int) -> tuple[tuple[int, int], ...]:
    """All (cols, rows) with min_tiles <= cols*rows <= max_tiles, in the reference's order.

    Built with the very expression of InternVL's ``dynamic_preprocess``: ``sorted`` of a
    ``set`` by tile count. Within one tile count the order is the set's iteration order,
    and that order decides some ties, so it is kept as is (transformers' GotOcr2 orders
    them differently and can disagree when min_tiles > 1).
    """
    grids = set(
        (i, j)
        for n in range(min_tiles, max_tiles + 1)
        for i in range(1, n + 1)
        for j in range(1, n + 1)
        if i * j <= max_tiles and i * j >= min_tiles
    )
    return tuple(sorted(grids, key=lambda grid: grid[0] * grid[1]))


def choose_grid(width: int, height: int, config: TilingConfig = DEFAULT_TILING) -> tuple[int, int]:
    """The (cols, rows) grid InternVL's ``find_closest_aspect_ratio`` picks for this size.

    Closest aspect ratio wins; on an exact tie a later candidate replaces the best one when
    the image area exceeds half the candidate's canvas area.
    """
    if width <= 0 or height <= 0:
        raise ImageInputError(f"image must be at least 1x1 pixels, got {width}x{height}")
    aspect_ratio = width / height
    area = width * height
    tile_area = config.tile_size * config.tile_size
    best_diff = float("inf")
    best = (1, 1)
    for cols, rows in candidate_grids(config.min_tiles, config.max_tiles):
        diff = abs(aspect_ratio - cols / rows)
        if diff < best_diff:
            best_diff, best = diff, (cols, rows)
        elif diff == best_diff and area > 0.5 * tile_area * cols * rows:
            best = (cols, rows)
    return best


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB; an RGB image is returned as is (no copy).

    Choices: transparency (an alpha band, premultiplied or not, or a ``transparency`` key as
    in paletted PNGs) is composited onto white, as transformers' ``convert_to_rgb`` does.
    16-bit modes (``I;16*``) are scaled to 8 bits (value / 257); ``I`` is scaled the same
    way when any value exceeds 255 and taken as 8-bit otherwise; ``F`` is taken as 0..1 when
    no value exceeds 1 and as 0..255 otherwise. Other modes (L, 1, P, CMYK, YCbCr, ...)
    use PIL's own conversion.
    """
    if not isinstance(image, Image.Image):
        raise ImageInputError(f"expected a PIL.Image.Image, got {type(image).__name__}")
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageInputError(f"image must be at least 1x1 pixels, got {width}x{height}")
    try:
        image.load()
        return _convert_to_rgb(image)
    except (OSError, ValueError) as exc:
        raise ImageInputError(
            f"cannot convert a {image.mode!r} image to RGB: {exc}. "
            "Convert it to RGB with PIL before passing it in."
        ) from exc


def _convert_to_rgb(image: Image.Image) -> Image.Image:
    """Dispatch on the mode; see ``to_rgb`` for the rules."""
    if image.mode == "RGB" and "transparency" not in image.info:
        return image
    if image.mode in _HIGH_DEPTH_MODES:
        return _high_depth_to_gray(image).convert("RGB")
    if _has_transparency(image):
        return _composite_on_white(image)
    return image.convert("RGB")


def _has_transparency(image: Image.Image) -> bool:
    """Whether the image carries alpha or a transparent colour key."""
    bands = image.getbands()
    return "A" in bands or "a" in bands or "transparency" in image.info


def _composite_on_white(image: Image.Image) -> Image.Image:
    """Blend a transparent image onto an opaque white background."""
    if image.mode == "La":  # PIL only un-premultiplies La towards LA
        image = image.convert("LA")
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _high_depth_to_gray(image: Image.Image) -> Image.Image:
    """Map an ``I;16*``, ``I`` or ``F`` image to 8-bit ``L`` by scaling, not clipping."""
    values = np.nan_to_num(np.asarray(image).astype(np.float64))
    peak = float(values.max())
    if image.mode in _SIXTEEN_BIT_MODES or (image.mode == "I" and peak > 255):
        values = np.clip(values, 0, 65535) / 257.0
    elif image.mode == "F" and peak <= 1.0:
        values = values * 255.0
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))


def tile_count(width: int, height: int, config: TilingConfig = DEFAULT_TILING) -> int:
    """How many tiles (thumbnail included) an image of this size becomes, without resizing."""
    cols, rows = choose_grid(width, height, config)
    return cols * rows + (1 if config.use_thumbnail and cols * rows > 1 else 0)


def _canvas_and_thumbnail(
    rgb: Image.Image, config: TilingConfig
) -> tuple[tuple[int, int], Image.Image, Image.Image | None]:
    """Chosen grid, the image resized onto the grid canvas, and the thumbnail if any
    (each resize spread over the cores, with PIL's exact pixels: engine/resize.py)."""
    grid = choose_grid(rgb.width, rgb.height, config)
    size = config.tile_size
    canvas = resize_bicubic(rgb, grid[0] * size, grid[1] * size)
    if not (config.use_thumbnail and grid[0] * grid[1] > 1):
        return grid, canvas, None
    return grid, canvas, resize_bicubic(rgb, size, size)


def _normalize_jobs(image: Image.Image, out: np.ndarray) -> list[Callable[[], None]]:
    """Jobs writing ``image`` as normalized tiles into ``out`` of shape (rows, cols, 3, T, T),
    one per colour plane (numpy lets go of the GIL for each multiply-add)."""
    rows, cols, _, size, _ = out.shape

    def job(channel: int, band: Image.Image) -> Callable[[], None]:
        def run() -> None:
            plane = np.asarray(band).reshape(rows, size, cols, size).transpose(0, 2, 1, 3)
            target = out[:, :, channel]
            np.multiply(plane, _SCALE[channel], out=target)
            target += _OFFSET[channel]

        return run

    return [job(channel, band) for channel, band in enumerate(image.split())]


def _in_turn(jobs: list[Callable[[], None]]) -> Callable[[], None]:
    """One job running `jobs` one after the other."""

    def run() -> None:
        for job in jobs:
            job()

    return run


def preprocess_image(
    image: Image.Image, config: TilingConfig = DEFAULT_TILING
) -> PreprocessedImage:
    """Tile and normalize one image into float32 ``pixel_values`` (tiles, 3, T, T)."""
    rgb = to_rgb(image)
    grid, canvas, thumbnail = _canvas_and_thumbnail(rgb, config)
    cols, rows = grid
    size = config.tile_size
    num_tiles = cols * rows + (thumbnail is not None)
    pixel_values = np.empty((num_tiles, 3, size, size), dtype=np.float32)
    jobs = _normalize_jobs(canvas, pixel_values[: cols * rows].reshape(rows, cols, 3, size, size))
    if thumbnail is not None:
        jobs += _normalize_jobs(thumbnail, pixel_values[-1:].reshape(1, 1, 3, size, size))
    threads = cpu_threads() if pixel_values.size >= _PARALLEL_NORMALIZE_MIN_VALUES else 1
    run_in_threads([_in_turn(jobs[i::threads]) for i in range(threads)])
    return PreprocessedImage(pixel_values=pixel_values, grid=grid, original_size=rgb.size)


class _FrozenKeys:
    """Cache keys of frozen images, by ``id(image)``; an entry goes when its image does."""

    def __init__(self) -> None:
        self._keys: dict[int, dict[TilingConfig, str]] = {}
        self._lock = threading.Lock()

    def freeze(self, image: Image.Image) -> None:
        with self._lock:
            if id(image) in self._keys:
                return
            self._keys[id(image)] = {}
        weakref.finalize(image, self._forget, id(image))

    def is_frozen(self, image: Image.Image) -> bool:
        with self._lock:
            return id(image) in self._keys

    def key(self, image: Image.Image, config: TilingConfig) -> str | None:
        """The frozen image's key (computed on first use), or None for an unfrozen image."""
        with self._lock:
            keys = self._keys.get(id(image))
            if keys is None:
                return None
            if config in keys:
                return keys[config]
        key = _pixel_key(image, config)
        with self._lock:
            return self._keys.setdefault(id(image), {}).setdefault(config, key)

    def _forget(self, image_id: int) -> None:
        with self._lock:
            self._keys.pop(image_id, None)


_FROZEN = _FrozenKeys()


def freeze_image(image: Image.Image) -> Image.Image:
    """Promise that `image`'s pixels will not change again; returns `image` itself.

    `image_cache_key` then hashes a frozen image once and remembers the key, so an agent that
    resends its recent screenshots every step does not hash them again. Modifying a frozen
    image afterwards is a bug: its cached vision features would be reused for new pixels.
    """
    if not isinstance(image, Image.Image):
        raise ImageInputError(f"expected a PIL.Image.Image, got {type(image).__name__}")
    _FROZEN.freeze(image)
    return image


def is_frozen(image: Image.Image) -> bool:
    """Whether `freeze_image` was called on this image."""
    return _FROZEN.is_frozen(image)


def image_cache_key(image: Image.Image, config: TilingConfig = DEFAULT_TILING) -> str:
    """Stable hex key of an image's pixels, mode, size, palette and the tiling config.

    blake2b (128-bit) over a versioned header and ``image.tobytes()``; equal keys mean
    ``preprocess_image`` gives equal output, so it can key a cache of vision features.
    Computed on every call, except for images passed to `freeze_image` (computed once).
    """
    if not isinstance(image, Image.Image):
        raise ImageInputError(f"expected a PIL.Image.Image, got {type(image).__name__}")
    frozen = _FROZEN.key(image, config)
    return frozen if frozen is not None else _pixel_key(image, config)


def _pixel_key(image: Image.Image, config: TilingConfig) -> str:
    palette = image.palette.tobytes() if image.palette is not None else b""
    header = "\0".join(
        (
            _CACHE_KEY_VERSION,
            image.mode,
            f"{image.width}x{image.height}",
            f"{config.min_tiles},{config.max_tiles},{config.tile_size},{config.use_thumbnail}",
            repr(image.info.get("transparency")),
            str(len(palette)),
        )
    )
    digest = hashlib.blake2b(digest_size=16)
    digest.update(header.encode("utf-8") + b"\0")
    digest.update(palette)
    digest.update(image.tobytes())
    return digest.hexdigest()

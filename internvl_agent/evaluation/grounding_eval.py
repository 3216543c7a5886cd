"""ScreenSpot-style grounding accuracy of any LangChain chat model with image input.

Dataset: a folder holding ``dataset.json`` (or, without it, every ``*.json`` list in the
folder, e.g. ScreenSpot's ``screenspot_{mobile,desktop,web}.json``), or the path of one such
file. Each file is a JSON list of items::

    {"img_filename": "shot.png", "instruction": "the Sign in button",
     "bbox": [x1, y1, x2, y2], "data_type": "text", "platform": "web"}

- ``bbox`` is in pixels of the image. Its layout is ``xyxy`` (corners) or ``xywh`` (corner and
  size, what the original ScreenSpot and ScreenSpot-v2 releases use): an item's own
  ``"bbox_format"`` field decides, else the ``bbox_format`` argument; its default "auto" reads
  files whose name starts with ``screenspot`` as xywh and every other file as xyxy.
- images are looked up beside the file, then in ``images/`` and ``screenspot_imgs/``.
- ``data_type`` (text / icon) and ``platform`` are optional; without ``platform`` a file named
  ``screenspot_<platform>[_v2].json`` gives it.

Scoring: the model is asked with InternVL's GUI grounding prompt; the centre of the first box
it answers, mapped to image pixels (``x / 1000 * width``, unrounded), must lie inside the
target box (edges included). An answer without a readable box is a parse failure and an item
whose image or model call failed is an error; both count as wrong and are reported.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rich.table import Table

from internvl_agent.agent.agent import model_name
from internvl_agent.coordinates import NORM_MAX
from internvl_agent.errors import ConfigurationError
from internvl_agent.evaluation.report import format_rate, ratio, write_json
from internvl_agent.grounding import GROUNDING_PROMPT, GUI_GROUNDING_PROMPT, ground

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

__all__ = [
    "GroundingItemResult",
    "GroundingReport",
    "GroundingSample",
    "GroupScore",
    "grounding_table",
    "load_grounding_dataset",
    "run_grounding_eval",
    "score_point",
]

BBoxFormat = Literal["auto", "xyxy", "xywh"]
Status = Literal["correct", "wrong", "parse_failure", "error"]

DATASET_FILE = "dataset.json"
IMAGE_FOLDERS = ("", "images", "screenspot_imgs")
_SCREENSPOT_FILE = re.compile(r"^screenspot_(?P<platform>[a-z]+?)(?:_v\d+)?$", re.IGNORECASE)

PROMPTS = {"gui": GUI_GROUNDING_PROMPT, "region": GROUNDING_PROMPT}
"""The prompt choices of the CLI: InternVL's GUI variant (ScreenSpot harnesses) or its own."""


# --------------------------------------------------------------------------- dataset


@dataclass(frozen=True)
class GroundingSample:
    """One dataset item, its box converted to pixel corners (x1, y1, x2, y2)."""

    index: int
    img_filename: str
    image_path: Path
    instruction: str
    bbox: tuple[float, float, float, float]
    data_type: str | None = None
    platform: str | None = None
    source: str = ""


def _annotation_files(dataset: Path) -> list[Path]:
    if dataset.is_file():
        return [dataset]
    if not dataset.is_dir():
        raise ConfigurationError(f"grounding dataset {dataset} does not exist")
    if (dataset / DATASET_FILE).is_file():
        return [dataset / DATASET_FILE]
    files = sorted(dataset.glob("*.json"))
    if not files:
        raise ConfigurationError(
            f"{dataset} holds no {DATASET_FILE} (a JSON list of items with img_filename, "
            "instruction and bbox) and no other *.json file"
        )
    return files


def _file_format(path: Path, bbox_format: BBoxFormat) -> Literal["xyxy", "xywh"]:
    if bbox_format != "auto":
        return bbox_format
    return "xywh" if path.stem.lower().startswith("screenspot") else "xyxy"


def _to_corners(raw: Any, layout: str, where: str) -> tuple[float, float, float, float]:
    if (
        not isinstance(raw, list | tuple)
        or len(raw) != 4
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in raw)
    ):
        raise ConfigurationError(f"{where}: bbox must be 4 numbers, got {raw!r}")
    x1, y1, a, b = (float(v) for v in raw)
    if layout == "xywh":
        x2, y2 = x1 + a, y1 + b
    elif layout == "xyxy":
        x2, y2 = a, b
    else:
        raise ConfigurationError(f"{where}: bbox_format must be xyxy or xywh, got {layout!r}")
    if x2 <= x1 or y2 <= y1:
        other = "xywh" if layout == "xyxy" else "xyxy"
        raise ConfigurationError(
            f"{where}: bbox {list(raw)} read as {layout} has no area; if it is [x, y, w, h] "
            f"or [x1, y1, x2, y2], set bbox_format={other!r}"
        )
    return x1, y1, x2, y2


def _find_image(folder: Path, name: str) -> Path:
    for sub in IMAGE_FOLDERS:
        candidate = folder / sub / name
        if candidate.is_file():
            return candidate
    return folder / name  # reported as an error when the item is evaluated


def _optional_text(item: Mapping[str, Any], key: str) -> str | None:
    value = item.get(key)
    return None if value is None or value == "" else str(value)


def _read_items(path: Path) -> list[Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        data = data["items"]
    if not isinstance(data, list):
        raise ConfigurationError(f"{path} must hold a JSON list of items")
    return data


def load_grounding_dataset(
    dataset: str | Path, *, bbox_format: BBoxFormat = "auto"
) -> list[GroundingSample]:
    """Read the items of a dataset folder or file (see the module doc); ConfigurationError
    naming the file and item for anything malformed."""
    root = Path(dataset).expanduser()
    samples: list[GroundingSample] = []
    for path in _annotation_files(root):
        file_platform = None
        if match := _SCREENSPOT_FILE.match(path.stem):
            file_platform = match.group("platform").lower()
        default_layout = _file_format(path, bbox_format)
        for position, item in enumerate(_read_items(path)):
            where = f"{path.name} item {position}"
            if not isinstance(item, dict):
                raise ConfigurationError(f"{where}: expected an object, got {item!r}")
            name, instruction = item.get("img_filename"), item.get("instruction")
            if not isinstance(name, str) or not name:
                raise ConfigurationError(f"{where}: img_filename must be a non-empty string")
            if not isinstance(instruction, str) or not instruction.strip():
                raise ConfigurationError(f"{where}: instruction must be a non-empty string")
            layout = str(item.get("bbox_format") or default_layout).lower()
            samples.append(
                GroundingSample(
                    index=len(samples),
                    img_filename=name,
                    image_path=_find_image(path.parent, name),
                    instruction=instruction.strip(),
                    bbox=_to_corners(item.get("bbox"), layout, where),
                    data_type=_optional_text(item, "data_type"),
                    platform=_optional_text(item, "platform") or file_platform,
                    source=path.name,
                )
            )
    return samples


# --------------------------------------------------------------------------- scoring


def score_point(point: tuple[float, float], bbox: Sequence[float]) -> bool:
    """Whether a pixel point lies inside the (x1, y1, x2, y2) box, edges included."""
    x, y = point
    return bbox[0] <= x <= bbox[2] and bbox[1] <= y <= bbox[3]


@dataclass
class GroundingItemResult:
    """What the model answered for one item and whether its click point hit the target.

    status: "correct", "wrong" (a box, outside the target), "parse_failure" (no readable box)
    or "error" (the image or the model call failed). point is in image pixels.
    """

    index: int
    img_filename: str
    instruction: str
    bbox: tuple[float, float, float, float]
    data_type: str | None
    platform: str | None
    status: Status
    raw_output: str = ""
    box_norm: tuple[int, int, int, int] | None = None
    point: tuple[float, float] | None = None
    image_size: tuple[int, int] | None = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def correct(self) -> bool:
        return self.status == "correct"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "correct": self.correct}


@dataclass
class GroupScore:
    """Accuracy over a group of items; parse failures and errors count as wrong."""

    total: int = 0
    correct: int = 0
    parse_failures: int = 0
    errors: int = 0

    @property
    def accuracy(self) -> float:
        return ratio(self.correct, self.total)

    def add(self, item: GroundingItemResult) -> None:
        self.total += 1
        self.correct += item.status == "correct"
        self.parse_failures += item.status == "parse_failure"
        self.errors += item.status == "error"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "accuracy": self.accuracy}


def _group(
    items: Iterable[GroundingItemResult], key: Callable[[GroundingItemResult], Any]
) -> dict[Any, GroupScore]:
    groups: dict[Any, GroupScore] = {}
    for item in items:
        groups.setdefault(key(item), GroupScore()).add(item)
    return dict(sorted(groups.items(), key=lambda kv: (kv[0] is None, str(kv[0]))))


@dataclass
class GroundingReport:
    """Every item's result, with accuracy overall and per group."""

    dataset: str
    items: list[GroundingItemResult]
    config: dict[str, Any] = field(default_factory=dict)
    started_at: str = ""
    wall_seconds: float = 0.0

    def overall(self) -> GroupScore:
        return _group(self.items, lambda _: "overall").get("overall", GroupScore())

    @property
    def accuracy(self) -> float:
        return self.overall().accuracy

    def by_data_type(self) -> dict[str | None, GroupScore]:
        return _group(self.items, lambda item: item.data_type)

    def by_platform(self) -> dict[str | None, GroupScore]:
        return _group(self.items, lambda item: item.platform)

    def by_platform_and_type(self) -> dict[str, GroupScore]:
        return _group(self.items, lambda item: f"{item.platform or '?'}/{item.data_type or '?'}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON report: config, accuracy overall and per group, every item."""

        def named(groups: Mapping[Any, GroupScore]) -> dict[str, Any]:
            return {str(k) if k is not None else "?": g.to_dict() for k, g in groups.items()}

        return {
            "benchmark": "grounding",
            "dataset": self.dataset,
            "started_at": self.started_at,
            "wall_seconds": round(self.wall_seconds, 3),
            "config": self.config,
            "overall": self.overall().to_dict(),
            "by_data_type": named(self.by_data_type()),
            "by_platform": named(self.by_platform()),
            "by_platform_and_type": named(self.by_platform_and_type()),
            "items": [item.to_dict() for item in self.items],
        }

    def write_json(self, path: str | Path) -> Path:
        return write_json(path, self.to_dict())


# --------------------------------------------------------------------------- table


def _group_row(name: str, score: GroupScore) -> list[str]:
    return [
        name,
        str(score.total),
        str(score.correct),
        format_rate(score.accuracy),
        str(score.parse_failures) if score.parse_failures else "-",
        str(score.errors) if score.errors else "-",
    ]


def grounding_table(report: GroundingReport) -> Table:
    """Accuracy per data_type, per platform, per "platform/data_type" and overall (groups a
    dataset does not have are left out)."""
    table = Table(title=f"Grounding accuracy: {report.dataset}", title_justify="left")
    for name, justify in (
        ("group", "left"),
        ("items", "right"),
        ("correct", "right"),
        ("accuracy", "right"),
        ("parse failures", "right"),
        ("errors", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    sections = (
        ("data_type=", report.by_data_type()),
        ("platform=", report.by_platform()),
        ("", report.by_platform_and_type()),  # keys read "platform/data_type"
    )
    for prefix, groups in sections:
        if not groups or set(groups) <= {None, "?/?"}:
            continue  # the dataset has no such field
        for key, score in groups.items():
            table.add_row(*_group_row(f"{prefix}{key if key is not None else '?'}", score))
        table.add_section()
    table.add_row(*_group_row("overall", report.overall()), style="bold")
    return table


def evaluate_sample(
    model: BaseChatModel,
    sample: GroundingSample,
    *,
    prompt: str = GUI_GROUNDING_PROMPT,
    invoke_kwargs: Mapping[str, Any] | None = None,
) -> GroundingItemResult:
    """Ground one item and score it; never raises (failures become status "error")."""
    from PIL import Image

    result = GroundingItemResult(
        index=sample.index,
        img_filename=sample.img_filename,
        instruction=sample.instruction,
        bbox=sample.bbox,
        data_type=sample.data_type,
        platform=sample.platform,
        status="error",
    )
    started = time.monotonic()
    try:
        with Image.open(sample.image_path) as opened:
            image = opened.convert("RGB")
        result.image_size = image.size
        found = ground(model, image, sample.instruction, prompt=prompt, **dict(invoke_kwargs or {}))
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        result.seconds = time.monotonic() - started
        return result
    result.seconds = time.monotonic() - started
    result.raw_output = found.raw_text
    if found.box_norm is None:
        result.status, result.error = "parse_failure", found.error
        return result
    result.box_norm = found.box_norm
    x1, y1, x2, y2 = found.box_norm
    width, height = image.size
    result.point = ((x1 + x2) / 2 / NORM_MAX * width, (y1 + y2) / 2 / NORM_MAX * height)
    result.status = "correct" if score_point(result.point, sample.bbox) else "wrong"
    return result


def run_grounding_eval(
    model: BaseChatModel,
    dataset_dir: str | Path,
    *,
    limit: int | None = None,
    concurrency: int = 1,
    bbox_format: BBoxFormat = "auto",
    prompt: str = GUI_GROUNDING_PROMPT,
    invoke_kwargs: Mapping[str, Any] | None = None,
    on_item: Callable[[GroundingItemResult], None] | None = None,
) -> GroundingReport:
    """Ask `model` for every item's box and score the click points (see the module doc).

    limit: the first N items only. concurrency: items in flight at once (threads calling
    `model.invoke`; ChatInternVL batches them). prompt: a template with ``{description}``.
    on_item: called with each result as it finishes (from a worker thread).
    """
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ConfigurationError(f"limit must be a positive integer or None, got {limit!r}")
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigurationError(f"concurrency must be an integer >= 1, got {concurrency!r}")
    if "{description}" not in prompt:
        raise ConfigurationError("the grounding prompt must contain {description}")
    samples = load_grounding_dataset(dataset_dir, bbox_format=bbox_format)[:limit]
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.monotonic()

    def one(sample: GroundingSample) -> GroundingItemResult:
        result = evaluate_sample(model, sample, prompt=prompt, invoke_kwargs=invoke_kwargs)
        if on_item is not None:
            with contextlib.suppress(Exception):  # a progress display only
                on_item(result)
        return result

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="grounding") as pool:
        items = list(pool.map(one, samples))
    config = {
        "model": model_name(model),
        "items": len(samples),
        "limit": limit,
        "concurrency": concurrency,
        "bbox_format": bbox_format,
        "prompt": prompt,
        "correct_when": "centre of the first predicted box inside the target box (pixels)",
    }
    return GroundingReport(str(dataset_dir), items, config, started_at, time.monotonic() - t0)

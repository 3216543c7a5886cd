"""Grounding accuracy on a ScreenSpot-format dataset rendered here in headless Chromium.

The ground truth is exact: element bounding boxes from the page (CSS px) times the device
scale factor, on the screenshot taken at that scale. A model answering those boxes in
InternVL's 0..1000 format must score 100%, one answering another element's box 0%, and one
answering text without a box gets parse failures.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from internvl_agent.cli import app
from internvl_agent.errors import ConfigurationError
from internvl_agent.evaluation.grounding_eval import (
    GroundingReport,
    grounding_table,
    load_grounding_dataset,
    run_grounding_eval,
    score_point,
)
from tests.support.browser import skip_without_browser
from tests.support.fakes import RecordingChatModel
from tests.support.scripted_model import image_size, image_urls, message_text

PAGE = """<!doctype html><html><head><style>
  body { margin: 0; font: 16px sans-serif; background: #fafafa; }
  #signin { position: absolute; left: 40px; top: 30px; width: 120px; height: 40px; }
  #gear { position: absolute; left: 400px; top: 20px; width: 36px; height: 36px; }
  #help { position: absolute; left: 60px; top: 220px; font-size: 13px; }
  #search { position: absolute; left: 200px; top: 120px; width: 200px; }
</style></head><body>
  <button id="signin">Sign in</button>
  <button id="gear" aria-label="Settings">&#9881;</button>
  <a id="help" href="#">Help</a>
  <input id="search" placeholder="Search">
</body></html>"""

ELEMENTS = {  # instruction -> (selector, data_type)
    "the Sign in button": ("#signin", "text"),
    "the settings gear": ("#gear", "icon"),
    "the Help link": ("#help", "text"),
    "the search field": ("#search", "text"),
}
PLATFORMS = {"web": 2.0, "desktop": 1.0}  # platform -> device scale factor of its screenshot
VIEWPORT = (480, 300)

Truth = dict[tuple[str, tuple[int, int]], tuple[float, float, float, float]]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], Path]:
    """Screenshots of PAGE at 2x ("web") and 1x ("desktop") and the items with true boxes."""
    skip_without_browser()
    from internvl_agent.computers.browser import BrowserComputer

    shots = tmp_path_factory.mktemp("shots")
    items: list[dict[str, Any]] = []
    for platform, dsf in PLATFORMS.items():
        with BrowserComputer(viewport=VIEWPORT, device_scale_factor=dsf) as computer:
            computer.page.set_content(PAGE)
            shot = computer.screenshot().image
            shot.save(shots / f"{platform}.png")
            assert shot.size == (VIEWPORT[0] * dsf, VIEWPORT[1] * dsf)
            for instruction, (selector, data_type) in ELEMENTS.items():
                box = computer.page.locator(selector).bounding_box()
                assert box is not None
                x1, y1 = box["x"] * dsf, box["y"] * dsf
                x2, y2 = x1 + box["width"] * dsf, y1 + box["height"] * dsf
                items.append(
                    {
                        "img_filename": f"{platform}.png",
                        "instruction": instruction,
                        "bbox": [x1, y1, x2, y2],
                        "data_type": data_type,
                        "platform": platform,
                    }
                )
    return items, shots


def _write(folder: Path, name: str, items: list[dict[str, Any]], shots: Path, images: str) -> Path:
    (folder / images).mkdir(parents=True, exist_ok=True)
    for shot in shots.iterdir():
        (folder / images / shot.name).write_bytes(shot.read_bytes())
    (folder / name).write_text(json.dumps(items))
    return folder


@pytest.fixture
def dataset(rendered: tuple[list[dict[str, Any]], Path], tmp_path: Path) -> Path:
    """dataset.json (xyxy) with the screenshots in images/."""
    items, shots = rendered
    return _write(tmp_path / "ds", "dataset.json", items, shots, "images")


def _truth(items: list[dict[str, Any]]) -> Truth:
    sizes = {p: (round(VIEWPORT[0] * s), round(VIEWPORT[1] * s)) for p, s in PLATFORMS.items()}
    return {(i["instruction"], sizes[i["platform"]]): tuple(i["bbox"]) for i in items}


# --------------------------------------------------------------------------- test models

_REF = re.compile(r"<ref>(.*?)</ref>", re.DOTALL)
Answer = Callable[[str, tuple[int, int]], str]


class GroundingModel(RecordingChatModel):
    """Answers `answer(description, image_size)`; records every prompt."""

    answer: Any

    @property
    def prompts(self) -> list[str]:
        return [message_text(messages) for messages in self.received]

    def respond(self, messages: list[BaseMessage]) -> str:
        prompt = message_text(messages)
        match = _REF.search(prompt)
        assert match, prompt
        return self.answer(match.group(1), image_size(image_urls(messages)[-1]))


def _box_answer(description: str, box: tuple[float, ...], size: tuple[int, int]) -> str:
    x1, y1, x2, y2 = (round(v / size[i % 2] * 1000) for i, v in enumerate(box))
    return f"<ref>{description}</ref><box>[[{x1}, {y1}, {x2}, {y2}]]</box>"


def right(truth: Truth) -> Answer:
    return lambda desc, size: _box_answer(desc, truth[(desc, size)], size)


def wrong(truth: Truth) -> Answer:
    """The box of the next element on the same screenshot (the elements do not overlap)."""

    def answer(desc: str, size: tuple[int, int]) -> str:
        same = [d for d, s in truth if s == size]
        other = same[(same.index(desc) + 1) % len(same)]
        return _box_answer(desc, truth[(other, size)], size)

    return answer


def garbage(desc: str, size: tuple[int, int]) -> str:
    if desc == "the Help link":
        raise RuntimeError("the server hung up")
    return "It is somewhere near the top, I think."


# --------------------------------------------------------------------------- scores


def test_right_boxes_score_100_percent(
    rendered: tuple[list[dict[str, Any]], Path], dataset: Path, tmp_path: Path
) -> None:
    items, _ = rendered
    model = GroundingModel(answer=right(_truth(items)))
    seen: list[Any] = []
    report = run_grounding_eval(model, dataset, concurrency=2, on_item=seen.append)
    assert report.accuracy == 1.0, [(i.instruction, i.raw_output) for i in report.items]
    assert len(report.items) == len(seen) == 8
    assert [i.index for i in report.items] == list(range(8))  # dataset order kept
    assert all("UI element" in p for p in model.prompts)  # the GUI grounding prompt
    for item in report.items:
        assert item.status == "correct" and score_point(item.point, item.bbox)
    assert set(report.by_data_type()) == {"icon", "text"}
    assert set(report.by_platform()) == {"web", "desktop"}
    assert report.by_platform_and_type()["web/icon"].total == 1
    assert all(g.accuracy == 1.0 for g in report.by_platform().values())

    data = json.loads(report.write_json(tmp_path / "r.json").read_text())
    assert data["overall"] == {
        "total": 8,
        "correct": 8,
        "parse_failures": 0,
        "errors": 0,
        "accuracy": 1.0,
    }
    assert data["by_data_type"]["icon"]["total"] == 2 and len(data["items"]) == 8
    assert data["items"][0]["correct"] and data["items"][0]["box_norm"]


def test_wrong_boxes_score_0(rendered: tuple[list[dict[str, Any]], Path], dataset: Path) -> None:
    items, _ = rendered
    report = run_grounding_eval(GroundingModel(answer=wrong(_truth(items))), dataset)
    assert report.accuracy == 0.0
    assert {i.status for i in report.items} == {"wrong"}
    assert report.overall().parse_failures == 0


def test_garbage_counts_as_parse_failures_and_errors(dataset: Path) -> None:
    report = run_grounding_eval(GroundingModel(answer=garbage), dataset, limit=6)
    overall = report.overall()
    assert (overall.total, overall.correct, overall.parse_failures, overall.errors) == (6, 0, 5, 1)
    failed = [i for i in report.items if i.status == "parse_failure"]
    assert all("no <box>" in (i.error or "") and i.raw_output for i in failed)
    (crashed,) = [i for i in report.items if i.status == "error"]
    assert "the server hung up" in (crashed.error or "")
    console = Console(record=True, width=120)
    console.print(grounding_table(report))
    text = console.export_text()
    assert "overall" in text and "data_type=text" in text and "platform=web" in text


def test_screenspot_files_are_xywh(
    rendered: tuple[list[dict[str, Any]], Path], tmp_path: Path
) -> None:
    items, shots = rendered
    web = [
        {k: v for k, v in item.items() if k != "platform"}
        | {
            "bbox": [
                *item["bbox"][:2],
                item["bbox"][2] - item["bbox"][0],
                item["bbox"][3] - item["bbox"][1],
            ]
        }
        for item in items
        if item["platform"] == "web"
    ]
    folder = _write(tmp_path / "ss", "screenspot_web_v2.json", web, shots, "screenspot_imgs")
    samples = load_grounding_dataset(folder)
    assert [s.bbox for s in samples] == [tuple(i["bbox"]) for i in items[:4]]
    assert {s.platform for s in samples} == {"web"}  # from the file name
    report = run_grounding_eval(GroundingModel(answer=right(_truth(items))), folder)
    assert report.accuracy == 1.0
    with pytest.raises(ConfigurationError, match=r"no area.*bbox_format='xywh'"):
        load_grounding_dataset(folder, bbox_format="xyxy")


# --------------------------------------------------------------------------- dataset files


def _image(folder: Path, name: str = "a.png") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (200, 100), "white").save(folder / name)


def test_dataset_rules(tmp_path: Path) -> None:
    _image(tmp_path)
    items = [
        {"img_filename": "a.png", "instruction": "x", "bbox": [10, 10, 20, 30]},
        {
            "img_filename": "a.png",
            "instruction": "y",
            "bbox": [10, 15, 10, 10],
            "bbox_format": "xywh",
        },
        {"img_filename": "gone.png", "instruction": "z", "bbox": [0, 0, 5, 5]},
    ]
    (tmp_path / "dataset.json").write_text(json.dumps(items))
    (tmp_path / "other.json").write_text("[]")  # ignored: dataset.json is there
    first, second, _ = load_grounding_dataset(tmp_path)
    assert first.bbox == (10, 10, 20, 30) and second.bbox == (10, 15, 20, 25)
    assert first.data_type is None and first.platform is None and first.source == "dataset.json"
    report = run_grounding_eval(
        GroundingModel(answer=lambda d, s: "<box>[[50, 100, 100, 300]]</box>"), tmp_path
    )
    assert [i.status for i in report.items] == ["correct", "correct", "error"]
    assert report.items[0].point == (15.0, 20.0) and report.items[0].image_size == (200, 100)
    assert "gone.png" in (report.items[2].error or "")
    assert len(run_grounding_eval(GroundingModel(answer=garbage), tmp_path, limit=1).items) == 1


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ({"not": "a list"}, "JSON list"),
        ([{"instruction": "x", "bbox": [0, 0, 1, 1]}], "img_filename"),
        ([{"img_filename": "a.png", "bbox": [0, 0, 1, 1]}], "instruction"),
        ([{"img_filename": "a.png", "instruction": "x", "bbox": [0, 0, 1]}], "4 numbers"),
        ([{"img_filename": "a.png", "instruction": "x", "bbox": [9, 9, 1, 1]}], "xywh"),
    ],
)
def test_malformed_datasets_are_named(tmp_path: Path, items: Any, message: str) -> None:
    (tmp_path / "dataset.json").write_text(json.dumps(items))
    with pytest.raises(ConfigurationError, match=message):
        load_grounding_dataset(tmp_path)


def test_missing_dataset(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_grounding_dataset(tmp_path / "nope")
    with pytest.raises(ConfigurationError, match=r"dataset\.json"):
        load_grounding_dataset(tmp_path)


def test_score_point_includes_the_edges() -> None:
    box = (10.0, 20.0, 30.0, 40.0)
    assert score_point((10, 20), box) and score_point((30, 40), box)
    assert not score_point((9.99, 30), box) and not score_point((20, 40.01), box)


def test_empty_report() -> None:
    report = GroundingReport("x", [])
    assert report.accuracy == 0.0 and report.to_dict()["overall"]["total"] == 0


# --------------------------------------------------------------------------- the CLI


def test_cli_with_the_tiny_checkpoint(tiny_checkpoint: Path, dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "grounding.json"
    args = ["eval", "grounding", str(dataset), "--model", str(tiny_checkpoint), "--device", "cpu"]
    args += ["--max-tiles", "1", "--max-tokens", "16", "--limit", "2", "-o", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "noise" in result.output and "overall" in result.output
    data = json.loads(out.read_text())
    assert data["overall"]["total"] == 2 and len(data["items"]) == 2
    for item in data["items"]:
        assert item["status"] in ("correct", "wrong", "parse_failure")
        assert isinstance(item["raw_output"], str)
    assert data["config"]["model"] == str(tiny_checkpoint)

    bad = CliRunner().invoke(
        app, ["eval", "grounding", str(dataset), "--bbox-format", "yxyx", "-o", str(out)]
    )
    assert bad.exit_code == 2 and "--bbox-format" in bad.output

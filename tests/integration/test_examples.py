"""The runnable examples keep working: the LangGraph agent graph (create_gui_agent)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.support.browser import skip_without_browser
from tests.support.fakes import tool_calling_fake

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "examples"))


@pytest.fixture
def browser(site: str):
    from internvl_agent.computers.browser import BrowserComputer

    skip_without_browser()
    with BrowserComputer(start_url=site + "shop.html", viewport=(1000, 700)) as computer:
        yield computer


def test_langgraph_example_clicks_and_finishes(browser, site: str, tmp_path: Path) -> None:
    from langgraph_browser import build_graph, run_task

    button = browser.page.locator("button", has_text="Add to cart").first
    box = button.bounding_box()
    x = round((box["x"] + box["width"] / 2) / 1000 * 1000)
    y = round((box["y"] + box["height"] / 2) / 700 * 1000)
    model = tool_calling_fake(
        ("click", {"x": x, "y": y}),
        ("press_key", {"keys": "ctrl+w"}),  # risky: the example's decide() is asked
        ("done", {"answer": "added"}),
    )
    graph = build_graph(model, browser, record_dir=tmp_path / "runs")
    asked: list[dict] = []
    shown: list[int] = []

    def decide(request: dict) -> dict:
        asked.append(request)
        return {"decision": "reject", "message": "stay on the page"}

    state = run_task(
        graph,
        "Add the first item.",
        site + "shop.html",
        decide,
        show=lambda s: shown.append(s.index),
    )
    assert state["result"]["status"] == "done" and state["result"]["answer"] == "added"
    assert "1 item" in browser.page.locator("#cart-count").inner_text()
    assert [r["description"] for r in asked] == ["press ctrl+w"] and shown == [1, 2, 3]
    assert browser.tab_count == 1  # the rejected key was never pressed
    assert (Path(state["result"]["record_path"]) / "report.html").is_file()


def test_langgraph_example_main_runs_with_the_tiny_checkpoint(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path
) -> None:
    import langgraph_browser

    skip_without_browser()
    monkeypatch.chdir(tmp_path)  # the example records into ./runs
    assert langgraph_browser.main(["--model", str(tiny_checkpoint), "--steps", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2].split(":")[0] in ("done", "failed", "max_steps", "error")
    assert lines[-1].startswith("record: ") and Path(lines[-1][8:], "report.html").is_file()

"""The runnable examples keep working: the LangGraph graph built from the action tools."""

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


def test_langgraph_example_clicks_and_finishes(browser) -> None:
    from langgraph_browser import build_graph

    button = browser.page.locator("button", has_text="Add to cart").first
    box = button.bounding_box()
    x = round((box["x"] + box["width"] / 2) / 1000 * 1000)
    y = round((box["y"] + box["height"] / 2) / 700 * 1000)
    model = tool_calling_fake(("click", {"x": x, "y": y}), ("done", {"answer": "added"}))
    graph = build_graph(model, browser, "Add the first item.")
    state = graph.invoke({"messages": [], "answer": None}, {"recursion_limit": 10})
    assert state["answer"] == "added"
    assert "1 item" in browser.page.locator("#cart-count").inner_text()


def test_langgraph_example_main_runs_with_the_tiny_checkpoint(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import langgraph_browser

    skip_without_browser()
    assert langgraph_browser.main(["--model", str(tiny_checkpoint), "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(("answer:", "stopped:"))

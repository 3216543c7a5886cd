"""Per-step framework overhead of the GUI agent (everything except the model call).

A model that answers instantly with fixed tool calls drives the example web app in headless
Chromium at 1280x800 and 1920x1080; the numbers come from the run records the agent wrote
(steps.jsonl: capture, model, grounding, action and total time of each step).

    python tools/bench_overhead.py [--steps 12]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from itertools import cycle, islice
from pathlib import Path

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from internvl_agent.agent import GUIAgent
from internvl_agent.computers.browser import BrowserComputer
from internvl_agent.records import load_run

REPO = Path(__file__).resolve().parents[1]
ACTIONS = [
    ("click", {"x": 500, "y": 420}),
    ("scroll", {"direction": "down", "amount": 2}),
    ("scroll", {"direction": "up", "amount": 2}),
    ("press_key", {"keys": "Tab"}),
]


class InstantModel(GenericFakeChatModel):
    """Answers each call at once with the next scripted tool call."""

    def bind_tools(self, tools, **kwargs):
        return self.bind(**kwargs)


def replies(steps: int) -> list[AIMessage]:
    calls = [*islice(cycle(ACTIONS), steps - 1), ("done", {"answer": "finished"})]
    return [
        AIMessage("", tool_calls=[{"name": name, "args": args, "id": f"call_{i}"}])
        for i, (name, args) in enumerate(calls)
    ]


def measure(viewport: tuple[int, int], steps: int, url: str, root: Path) -> dict[str, float]:
    with BrowserComputer(viewport=viewport) as browser:
        model = InstantModel(messages=iter(replies(steps)))
        agent = GUIAgent(model, browser, max_steps=steps, record_dir=root)
        result = agent.run("benchmark", start_url=url)
    run = load_run(result.record_path)
    rows = run.steps[1:]  # the first step also pays for warming up
    pick = lambda f: statistics.median(f(s.timings) for s in rows)  # noqa: E731
    return {
        "steps": len(run.steps),
        "total": pick(lambda t: t.total),
        "model": pick(lambda t: t.model),
        "overhead": pick(lambda t: t.framework_overhead),
        "capture": pick(lambda t: t.capture),
        "action": pick(lambda t: t.action),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "examples" / "webapp"))
    from serve import serve

    url, server = serve(REPO / "examples" / "webapp")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            results = {
                size: measure(size, args.steps, url + "shop.html", Path(tmp))
                for size in ((1280, 800), (1920, 1080))
            }
    finally:
        server.shutdown()
        server.server_close()
    print("per-step medians from the run records (first step excluded), headless Chromium")
    print(
        f"{'viewport':>10} {'steps':>5} {'total':>8} {'model':>8} {'overhead':>9} "
        f"{'capture':>8} {'action':>8}"
    )
    for (w, h), r in results.items():
        ms = {k: v * 1000 for k, v in r.items() if k != "steps"}
        print(
            f"{w}x{h:<5} {r['steps']:>5} {ms['total']:7.0f}ms {ms['model']:7.1f}ms "
            f"{ms['overhead']:8.0f}ms {ms['capture']:7.0f}ms {ms['action']:7.0f}ms"
        )
    small, large = results[(1280, 800)], results[(1920, 1080)]
    print(f"overhead ratio 1920x1080 / 1280x800: {large['overhead'] / small['overhead']:.2f}")


if __name__ == "__main__":
    main()

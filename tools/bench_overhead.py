"""Per-step framework overhead of the GUI agent (everything except the model call and settling).

A model that answers instantly with fixed tool calls drives the example web app in headless
Chromium at 1280x800 and 1920x1080; the numbers come from the run records the agent wrote
(steps.jsonl: the phases of each step). Framework overhead = total - model calls - settle,
where ``settle`` is the page's own settling after an action (reported, not counted).

Two set-ups run side by side on the same browser, alternating runs so that machine load hits
both alike:

- ``before``: Playwright's ``page.screenshot(type="png")`` and the marked screenshot drawn
  and PNG-encoded (zlib level 6) inside the step, as the agent did before issue 12;
- ``now``: the defaults (CDP ``Page.captureScreenshot`` with Chromium's fast lossless PNG,
  the marked screenshot drawn and encoded on the recorder's writer thread).

    python tools/bench_overhead.py [--steps 12 --rounds 2]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
from collections.abc import Iterator
from itertools import cycle, islice
from pathlib import Path
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package

from internvl_agent import records
from internvl_agent.agent import GUIAgent
from internvl_agent.computers.browser import BrowserComputer
from internvl_agent.grounding import draw_box
from internvl_agent.records import RunRecorder, load_run

REPO = Path(__file__).resolve().parents[1]
ACTIONS = [
    ("click", {"x": 500, "y": 420}),
    ("scroll", {"direction": "down", "amount": 2}),
    ("scroll", {"direction": "up", "amount": 2}),
    ("press_key", {"keys": "Tab"}),
]
PHASES = ("total", "model", "settle", "overhead", "capture", "action", "record", "other")


class InstantModel(GenericFakeChatModel):
    """Answers each call at once with the next scripted tool call."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self.bind(**kwargs)


def replies(steps: int) -> list[AIMessage]:
    calls = [*islice(cycle(ACTIONS), steps - 1), ("done", {"answer": "finished"})]
    return [
        AIMessage("", tool_calls=[{"name": name, "args": args, "id": f"call_{i}"}])
        for i, (name, args) in enumerate(calls)
    ]


@contextlib.contextmanager
def before_issue_12() -> Iterator[None]:
    """Playwright PNG capture decoded at once, the marked screenshot encoded in the step."""
    capture, shoot = BrowserComputer._capture_png, BrowserComputer.screenshot
    save = RunRecorder.save_screenshot

    def playwright_png(self: BrowserComputer, page: Any) -> bytes:
        return page.screenshot(type="png", caret="initial")

    def decoded(self: BrowserComputer) -> Any:
        shot = shoot(self)
        shot.image.load()
        return shot

    def save_in_step(self: RunRecorder, index: int, image: Any, point: Any = None,
                     box: Any = None, *, png: bytes | None = None, background: bool = False
                     ) -> tuple[str, str]:  # fmt: skip
        raw = f"step-{index:03d}.png"
        records.atomic_write(self.path / raw, png or b"")
        buffer = io.BytesIO()
        image = image() if callable(image) else image
        draw_box(image, box=box, point=point).save(buffer, "PNG")
        records.atomic_write(self.path / f"step-{index:03d}-marked.png", buffer.getvalue())
        return raw, f"step-{index:03d}-marked.png"

    BrowserComputer._capture_png = playwright_png  # type: ignore[method-assign]
    BrowserComputer.screenshot = decoded  # type: ignore[method-assign]
    RunRecorder.save_screenshot = save_in_step  # type: ignore[assignment,method-assign]
    try:
        yield
    finally:
        BrowserComputer._capture_png = capture  # type: ignore[method-assign]
        BrowserComputer.screenshot = shoot  # type: ignore[method-assign]
        RunRecorder.save_screenshot = save  # type: ignore[method-assign]


def run_once(browser: BrowserComputer, steps: int, url: str, root: Path) -> list[dict[str, float]]:
    """One agent run; the phases (seconds) of each step but the first (it warms up)."""
    model = InstantModel(messages=iter(replies(steps)))
    agent = GUIAgent(model, browser, max_steps=steps, record_dir=root)
    result = agent.run("benchmark", start_url=url)
    rows = []
    for step in load_run(result.record_path).steps[1:]:
        t = step.timings
        row = {name: getattr(t, name) for name in PHASES[:-2] if name != "overhead"}
        row["record"] = t.record
        row["overhead"] = t.framework_overhead
        row["other"] = t.framework_overhead - t.capture - t.action - t.record - t.grounding
        rows.append(row)
    return rows


def measure(
    viewport: tuple[int, int], steps: int, rounds: int, url: str, root: Path
) -> dict[str, dict[str, float]]:
    """Median phases (seconds) per set-up, runs alternating before / now."""
    rows: dict[str, list[dict[str, float]]] = {"before": [], "now": []}
    with BrowserComputer(viewport=viewport) as browser:
        for _ in range(rounds):
            with before_issue_12():
                rows["before"] += run_once(browser, steps, url, root)
            rows["now"] += run_once(browser, steps, url, root)
    return {
        setup: {name: statistics.median(r[name] for r in found) for name in PHASES}
        for setup, found in rows.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2, help="runs per set-up and viewport")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "examples" / "webapp"))
    from serve import serve

    load_before = os.getloadavg()
    url, server = serve(REPO / "examples" / "webapp")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            results = {
                size: measure(size, args.steps, args.rounds, url + "shop.html", Path(tmp))
                for size in ((1280, 800), (1920, 1080))
            }
    finally:
        server.shutdown()
        server.server_close()
    load_after = os.getloadavg()
    print(
        f"per-step medians from the run records ({args.rounds} runs x {args.steps - 1} steps per"
        " set-up, first step of each run excluded), headless Chromium"
    )
    print(f"load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    print(f"{'viewport':>10} {'set-up':>7} " + " ".join(f"{name:>9}" for name in PHASES))
    for (w, h), by_setup in results.items():
        for setup, ms in by_setup.items():
            cells = " ".join(f"{ms[name] * 1000:7.1f}ms" for name in PHASES)
            print(f"{w}x{h:<5} {setup:>7} {cells}")
        ratio = by_setup["before"]["overhead"] / by_setup["now"]["overhead"]
        print(f"{'':>10} overhead before / now: {ratio:.2f}x")
    targets = {(1280, 800): 0.040, (1920, 1080): 0.060}
    for size, limit in targets.items():
        got = results[size]["now"]["overhead"]
        verdict = "ok" if got <= limit else "ABOVE TARGET"
        print(f"target {size[0]}x{size[1]}: overhead {got * 1000:.1f} ms <= {limit * 1000:.0f} ms: "
              f"{verdict}")  # fmt: skip


if __name__ == "__main__":
    main()

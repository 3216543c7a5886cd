"""The settle after each browser action: its cost on a static page, its effect on debounced
widgets. Old (a fixed 50 ms pause + DOMContentLoaded + network idle) and new (a quiet page:
no DOM change, finite animation, short timer or page request, in any frame) side by side in
one run, on the same pages.

    python tools/bench_settle.py                        # all three measurements
    python tools/bench_settle.py --episodes 20 --repeats 50

1. static page (examples/webapp/index.html): seconds per click on a heading, median.
2. debounced widget (examples/webapp/widgets.html, suggestions 300 ms after the last key):
   how often the page right after type_text shows the suggestions.
3. MiniWoB use-autocomplete at 1280x800 @ 1.5 with the scripted perfect model
   (tests/support/miniwob_scripts.py): episodes won.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from internvl_agent.computers import browser as browser_module  # noqa: E402
from internvl_agent.computers.browser import BrowserComputer  # noqa: E402


def old_settle(self: BrowserComputer) -> float:
    """The settle before issue 10: a pause, then DOMContentLoaded and network idle."""
    from playwright.sync_api import Error as PlaywrightError

    started = time.monotonic()
    deadline = started + self.settle_timeout
    with contextlib.suppress(PlaywrightError):
        self.page.wait_for_timeout(browser_module.ACTION_PAUSE_S * 1000)
    for state in ("domcontentloaded", "networkidle"):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        with contextlib.suppress(PlaywrightError):
            self.page.wait_for_load_state(state, timeout=left * 1000)  # type: ignore[arg-type]
    self.last_settle_s = time.monotonic() - started
    return self.last_settle_s


NEW_SETTLE = BrowserComputer.settle


@contextlib.contextmanager
def settle_kind(kind: str) -> Iterator[None]:
    BrowserComputer.settle = old_settle if kind == "old" else NEW_SETTLE  # type: ignore[method-assign]
    try:
        yield
    finally:
        BrowserComputer.settle = NEW_SETTLE  # type: ignore[method-assign]


def _centre(computer: BrowserComputer, selector: str) -> tuple[int, int]:
    box = computer.page.locator(selector).first.bounding_box()
    assert box is not None
    dsf = computer.device_scale_factor
    return int((box["x"] + box["width"] / 2) * dsf), int((box["y"] + box["height"] / 2) * dsf)


def static_cost(site: str, repeats: int) -> dict[str, float]:
    out = {}
    with BrowserComputer(viewport=(1280, 800), device_scale_factor=1.5) as computer:
        computer.navigate(site + "index.html")
        computer.screenshot()
        point = _centre(computer, "h1")
        for kind in ("old", "new", "old", "new"):  # interleaved, the second round counts
            with settle_kind(kind):
                times = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    computer.click(*point)
                    times.append(time.perf_counter() - start)
            out[kind] = statistics.median(times)
    return out


def debounce_seen(site: str, repeats: int) -> dict[str, int]:
    out = {}
    with BrowserComputer(viewport=(1280, 800), device_scale_factor=1.5) as computer:
        for kind in ("old", "new"):
            seen = 0
            with settle_kind(kind):
                for _ in range(repeats):
                    computer.navigate(site + "widgets.html")
                    computer.screenshot()
                    computer.click(*_centre(computer, "#q"))
                    computer.type_text("Ber")
                    seen += computer.page.locator("#suggest li").count() == 3
            out[kind] = seen
    return out


def miniwob_wins(episodes: int) -> dict[str, int]:
    from internvl_agent.evaluation.miniwob import run_miniwob_eval
    from tests.support.miniwob_scripts import MiniWobScriptedModel

    out = {}
    for kind in ("old", "new"):
        with settle_kind(kind), tempfile.TemporaryDirectory() as runs:
            report = run_miniwob_eval(
                lambda computer: MiniWobScriptedModel(computer=computer),
                ["use-autocomplete"],
                episodes=episodes,
                viewport=(1280, 800),
                device_scale_factor=1.5,
                record_dir=runs,
                max_steps=6,
            )
        out[kind] = sum(e.success for e in report.episodes)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--episodes", type=int, default=10)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "examples" / "webapp"))
    import serve  # examples/webapp/serve.py

    site, server = serve.serve(ROOT / "examples" / "webapp")
    try:
        cost = static_cost(site, args.repeats)
        print(
            f"static page, one click: old {cost['old'] * 1000:.0f} ms, new "
            f"{cost['new'] * 1000:.0f} ms (median of {args.repeats})"
        )
        seen = debounce_seen(site, args.repeats // 3)
        print(
            f"debounced suggestions on the page right after typing: old {seen['old']}/"
            f"{args.repeats // 3}, new {seen['new']}/{args.repeats // 3}"
        )
    finally:
        server.shutdown()
    wins = miniwob_wins(args.episodes)
    print(
        f"MiniWoB use-autocomplete 1280x800@1.5, scripted perfect model: old "
        f"{wins['old']}/{args.episodes}, new {wins['new']}/{args.episodes} episodes won"
    )


if __name__ == "__main__":
    main()

"""Memory of a long agent run in the local engine, and the caches' byte caps.

1. A 30-step GUIAgent run: a random-weight model with InternVL3-1B's layer sizes (built in
   memory, as tools/bench_step.py does) drives a synthetic computer whose screenshot differs
   at every step (a browser-like capture: PNG bytes, decoded when needed). Resident memory
   (RSS) and peak RSS are sampled after every step; the growth from step 10 to step 30 is
   printed (target: peak RSS <= 5% growth).
2. 200 distinct screenshots pass through one engine whose vision cache and prefix cache have
   small byte caps; their sizes are checked against the caps after every call.

    python tools/bench_memory.py                  # 1B layer sizes (minutes on 2 CPU cores)
    python tools/bench_memory.py --size tiny      # seconds, for a smoke test
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_step, run from anywhere

from bench_step import screenshot  # the same synthetic page-like screenshots

from internvl_agent.agent import GUIAgent
from internvl_agent.chat.chat_model import ChatInternVL
from internvl_agent.computers.base import ActionOutcome, Computer, Screenshot
from internvl_agent.engine.caches import PrefixCache
from internvl_agent.engine.engine import register_model
from internvl_agent.engine.tiny import SIZES, random_model
from internvl_agent.records import StepRecord

TASK = "Open the shop, add the travel mug to the cart and report the total."
MIB = 1024 * 1024


def rss_bytes() -> int:
    """Resident set size now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """Highest resident set size so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class LongRunInternVL(ChatInternVL):
    """ChatInternVL offered every action but ``done``: a random model must not end the run
    early (the agent still validates and records every reply as usual)."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        kept = [tool for tool in tools if getattr(tool, "name", None) != "done"]
        return super().bind_tools(kept, **kwargs)


class SyntheticComputer(Computer):
    """A screen that changes after every action; every action succeeds."""

    kind = "browser"

    def __init__(self) -> None:
        self.shots = 0

    def screenshot(self) -> Screenshot:
        self.shots += 1
        buffer = io.BytesIO()
        screenshot(self.shots).save(buffer, "PNG", compress_level=1)
        return Screenshot(png=buffer.getvalue(), url="http://127.0.0.1/shop", title="Shop")

    def _ok(self, what: str) -> ActionOutcome:
        return ActionOutcome(True, what, "http://127.0.0.1/shop")

    def click(self, x: int, y: int, *, button: Any = "left", clicks: int = 1) -> ActionOutcome:
        return self._ok(f"clicked at ({x}, {y})")

    def type_text(self, text: str) -> ActionOutcome:
        return self._ok("typed")

    def press_key(self, keys: str) -> ActionOutcome:
        return self._ok(f"pressed {keys}")

    def scroll(
        self, direction: Any, amount: int = 3, x: Any = None, y: Any = None
    ) -> ActionOutcome:
        return self._ok(f"scrolled {direction}")

    def drag(self, from_x: int, from_y: int, to_x: int, to_y: int) -> ActionOutcome:
        return self._ok("dragged")

    def navigate(self, url: str) -> ActionOutcome:
        return self._ok(f"navigated to {url}")

    def go_back(self) -> ActionOutcome:
        return self._ok("went back")

    def current_url(self) -> str | None:
        return "http://127.0.0.1/shop"


def agent_run(args: argparse.Namespace, model: Any, tokenizer: Any) -> None:
    """Part 1: RSS per step of a long agent run."""
    engine = register_model("memory-run", model, tokenizer)
    llm = LongRunInternVL(
        model="memory-run",
        device="cpu",
        dtype="float32",
        max_tiles=args.max_tiles,
        max_tokens=args.tokens,
    )
    samples: list[tuple[int, int, int]] = []

    def on_step(record: StepRecord) -> None:
        samples.append((record.index, rss_bytes(), peak_rss_bytes()))
        index, rss, peak = samples[-1]
        print(
            f"   step {index:>2}: RSS {rss / MIB:8.1f} MiB   peak {peak / MIB:8.1f} MiB", flush=True
        )

    with tempfile.TemporaryDirectory() as tmp:
        agent = GUIAgent(
            llm,
            SyntheticComputer(),
            max_steps=args.steps,
            max_retries=args.steps,
            max_repeated_failures=args.steps,
            record_dir=tmp,
            on_step=on_step,
            actions=("click", "scroll", "press_key", "type_text", "wait", "done"),
        )
        print(f"\n1. a {args.steps}-step agent run ({args.size} layer sizes, "
              f"{args.max_tiles} tile(s) per 1280x800 screenshot)")  # fmt: skip
        result = agent.run(TASK)
    print(f"   run ended: {result.status} after {result.steps} steps")
    print(
        f"   vision cache {engine.vision_cache.size_bytes / MIB:.1f} MiB, prefix cache "
        f"{len(engine.prefix_cache)} entries / {engine.prefix_cache.size_bytes / MIB:.1f} MiB"
    )
    by_step = {index: (rss, peak) for index, rss, peak in samples}
    first, last = min(10, max(by_step)), max(by_step)
    if first in by_step and last > first:
        for label, which in (("RSS", 0), ("peak RSS", 1)):
            start, end = by_step[first][which], by_step[last][which]
            print(
                f"   {label:<8} step {first} -> {last}: {start / MIB:.1f} -> {end / MIB:.1f} MiB "
                f"({(end - start) / start * 100:+.2f}%)"
            )


def cache_caps(args: argparse.Namespace, model: Any, tokenizer: Any) -> None:
    """Part 2: the byte caps hold while many distinct screenshots pass through."""
    vision_cap, prefix_cap = args.vision_cap_kib * 1024, args.prefix_cap_kib * 1024
    engine = register_model("memory-caps", model, tokenizer, vision_cache_bytes=vision_cap)
    engine.prefix_cache = PrefixCache(2, max_bytes=prefix_cap)
    llm = ChatInternVL(
        model="memory-caps", device="cpu", dtype="float32", max_tiles=1, max_tokens=2
    )
    print(f"\n2. {args.images} distinct screenshots through one engine: vision cache capped at "
          f"{args.vision_cap_kib} KiB, prefix cache at {args.prefix_cap_kib} KiB")  # fmt: skip
    worst_vision = worst_prefix = 0
    rss_at: dict[int, int] = {}
    for n in range(1, args.images + 1):
        llm.invoke(
            [("human", [{"type": "image", "image": screenshot(1000 + n)}, "What is shown?"])]
        )
        worst_vision = max(worst_vision, engine.vision_cache.size_bytes)
        worst_prefix = max(worst_prefix, engine.prefix_cache.size_bytes)
        if n in (args.images // 4, args.images // 2, args.images):
            rss_at[n] = rss_bytes()
    held = worst_vision <= vision_cap and worst_prefix <= prefix_cap
    vision, prefix = engine.vision_cache, engine.prefix_cache
    print(
        f"   vision cache: largest {worst_vision / 1024:8.1f} KiB (cap {args.vision_cap_kib}), "
        f"{len(vision._lru)} entries kept of {vision.misses} encoded"
    )
    print(
        f"   prefix cache: largest {worst_prefix / 1024:8.1f} KiB (cap {args.prefix_cap_kib}), "
        f"{len(prefix)} entries kept"
    )
    print("   RSS after " + ", ".join(f"{n}: {v / MIB:.1f} MiB" for n, v in rss_at.items()))
    print(f"   caps held: {held}")
    if not held:
        raise SystemExit("a cache went over its byte cap")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="1b", choices=sorted(SIZES))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--max-tiles", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=24, help="most tokens generated per call")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--caps-size", default="tiny", choices=sorted(SIZES),
                        help="layer sizes for part 2 (the caps do not depend on them)")  # fmt: skip
    parser.add_argument("--vision-cap-kib", type=int, default=2048)
    parser.add_argument("--prefix-cap-kib", type=int, default=300)
    parser.add_argument("--skip-run", action="store_true", help="only part 2")
    args = parser.parse_args()
    print(f"RSS at start: {rss_bytes() / MIB:.1f} MiB; load average {os.getloadavg()[0]:.2f}")
    if not args.skip_run:
        model, tokenizer = random_model(args.size)
        print(f"model built: RSS {rss_bytes() / MIB:.1f} MiB")
        agent_run(args, model, tokenizer)
        del model, tokenizer
    model, tokenizer = random_model(args.caps_size)
    cache_caps(args, model, tokenizer)


if __name__ == "__main__":
    main()

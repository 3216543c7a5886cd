"""Agent step cost in the local engine: vision cache, prefix cache, step 30 versus step 1.

A random-weight model with InternVL3-1B's real layer sizes (built in memory) answers the
agent's real messages (system prompt with the action tools, text history, last 3 screenshots)
with the action tools bound as the agent binds them. Side by side, in one run:

  1. the grounding call of a step (same screenshot as the planner call) with vs without the
     vision cache;
  2. a step's prefill (time to first token) with vs without the prefix KV cache (the
     previous step's prompt is cached: system prompt, tools, task and older history);
  3. step 30 versus step 1 (and 3) of a long run with both caches on.

    python tools/bench_step.py                    # InternVL3-1B sizes, 1 tile per screenshot
    python tools/bench_step.py --size tiny        # seconds, for a smoke test
"""

from __future__ import annotations

import argparse
import time

from PIL import Image, ImageDraw

from internvl_agent.actions import BROWSER_ACTIONS, action_tools
from internvl_agent.agent.agent import bind_action_tools
from internvl_agent.agent.history import (
    History,
    HistoryEntry,
    ScreenFrame,
    build_messages,
    render_system_prompt,
)
from internvl_agent.chat.chat_model import ChatInternVL
from internvl_agent.computers.base import Screenshot
from internvl_agent.engine.engine import register_model
from internvl_agent.engine.tiny import SIZES, random_model
from internvl_agent.grounding import ground

TASK = "Log in as alice, open the shop, add the travel mug to the cart and report the total."


def screenshot(step: int, size: tuple[int, int] = (1280, 800)) -> Image.Image:
    """A page-like synthetic screenshot that differs at every step."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, size[0], 60), fill=(30, 60, 120))
    for row in range(8):
        top = 100 + row * 80
        draw.rectangle((80, top, 80 + 300 + 40 * ((row + step) % 7), top + 50), outline="gray")
        draw.text((95, top + 18), f"Item {row} - step {step}", fill="black")
    return image


def history_at(step: int, max_images: int = 3) -> History:
    """The agent's history before `step`: one text line per past step, the last K frames."""
    history = History(max_images)
    for past in range(1, step):
        history.add(
            HistoryEntry(
                past,
                "action",
                f"click(x={100 + past}, y={200 + past})",
                True,
                f"clicked at ({130 + past}, {420 + past}); the page changed",
                "http://127.0.0.1/shop",
            )
        )
    for frame in range(max(1, step - max_images + 1), step + 1):
        history.add_frame(ScreenFrame(frame, Screenshot(screenshot(frame))))
    return history


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="1b", choices=sorted(SIZES))
    parser.add_argument("--max-tiles", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=40, help="most tokens generated per call")
    args = parser.parse_args()

    model, tokenizer = random_model(args.size)
    register_model("bench-cached", model, tokenizer)
    register_model("bench-plain", model, tokenizer, vision_cache_bytes=0, prefix_cache_entries=0)
    register_model("bench-noprefix", model, tokenizer, prefix_cache_entries=0)
    options = {"device": "cpu", "dtype": "float32", "max_tiles": args.max_tiles}
    cached = ChatInternVL(model="bench-cached", max_tokens=args.tokens, **options)
    plain = ChatInternVL(model="bench-plain", max_tokens=args.tokens, **options)
    noprefix = ChatInternVL(model="bench-noprefix", max_tokens=args.tokens, **options)
    system = render_system_prompt(tools=BROWSER_ACTIONS)
    tools = action_tools(BROWSER_ACTIONS)

    def step_call(llm: ChatInternVL, step: int):
        messages = build_messages(system, TASK, history_at(step), step=step, model=llm)
        return bind_action_tools(llm, tools).invoke(messages)

    print(
        f"model: random InternVL, {args.size} layer sizes, CPU; {args.max_tiles} tile(s) per "
        f"1280x800 screenshot; {args.tokens} generated tokens per call"
    )
    step_call(cached, 1), step_call(plain, 1)  # warm-up (and the cached engine's prefix)

    # 1. grounding after the planner call on the same screenshot
    shot = screenshot(2)
    rows = []
    for label, llm in (("vision cache on", cached), ("vision cache off", plain)):
        llm.invoke([("human", [{"type": "image", "image": shot}, "plan"])])  # the planner call
        seconds, _ = timed(lambda llm=llm: ground(llm, shot, "the Item 3 row"))
        rows.append((label, seconds))
    print("\n1. grounding call, screenshot already seen by the planner call")
    for label, seconds in rows:
        print(f"   {label:<17}: {seconds:7.2f} s")
    print(f"   ratio off/on     : {rows[1][1] / rows[0][1]:7.2f}x")

    # 2. prefill of step 4 right after step 3 (vision cache on in both), prefix reuse on / off
    prefill = {}
    for label, llm in (("prefix cache on", cached), ("prefix cache off", noprefix)):
        step_call(llm, 3)
        message = step_call(llm, 4)
        prefill[label] = message.response_metadata["timings"]["queue_and_prefill_s"]
    print("\n2. step prefill (time to first token) after step 3, with vs without prefix reuse")
    for label, seconds in prefill.items():
        print(f"   {label:<17}: {seconds:7.2f} s")
    print(f"   ratio off/on     : {prefill['prefix cache off'] / prefill['prefix cache on']:7.2f}x")

    # 3. a long run: step 1 (cold caches), step 3, step 30 (history of 29 steps, 3 screenshots)
    register_model("bench-run", model, tokenizer)
    run_llm = ChatInternVL(model="bench-run", max_tokens=args.tokens, **options)
    times = {}
    for step in (1, 2, 3, 28, 29, 30):
        seconds, message = timed(lambda step=step: step_call(run_llm, step))
        times[step] = (seconds, message.usage_metadata["input_tokens"])
    print("\n3. a long run with both caches (steps 4-27 skipped; 28-29 warm the caches)")
    for step in (1, 3, 30):
        seconds, tokens = times[step]
        print(f"   step {step:>2}: {seconds:7.2f} s  ({tokens} input tokens)")
    print(
        f"   ratio step30/step1: {times[30][0] / times[1][0]:6.2f}   "
        f"step30/step3: {times[30][0] / times[3][0]:6.2f}"
    )


if __name__ == "__main__":
    main()

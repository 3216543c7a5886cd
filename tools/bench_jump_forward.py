"""Jump-forward decoding for forced tool calls: forward passes and throughput, with vs without.

One random-weight model (InternVL's real architecture, built in memory) is served twice, with
jump-forward on and off (`InternVLEngine(jump_forward=...)`), and every agent action tool
(`internvl_agent.actions.action_tools()`) is called by name (``tool_choice=<tool>``, greedy)
through ChatInternVL on both, interleaved. Printed per size: forward passes per tool call
(the prefill included), generated tokens per call, tool calls/s and tokens/s (of the
generation itself, `generate_s`), the ratios, and whether both paths produced the same calls.
The prefix cache is on (as in an agent: the tools prompt is prefilled once).

    python tools/bench_jump_forward.py                      # tiny and 1b
    python tools/bench_jump_forward.py --sizes tiny --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from internvl_agent.actions import action_tools
from internvl_agent.chat.chat_model import ChatInternVL
from internvl_agent.engine.engine import get_engine, register_model
from internvl_agent.engine.loading import LoadSpec
from internvl_agent.engine.tiny import random_model

PROMPT = "Open the settings page and turn on dark mode."


def serve(size: str) -> dict[bool, tuple[ChatInternVL, Any]]:
    """The same random model under two names: jump-forward on and off."""
    model, tokenizer = random_model(size)
    out = {}
    for jump in (True, False):
        name = f"bench-jf-{size}-{'on' if jump else 'off'}"
        register_model(name, model, tokenizer, jump_forward=jump)
        llm = ChatInternVL(model=name, device="cpu", dtype="float32", temperature=0)
        out[jump] = (llm, get_engine(LoadSpec(name, device="cpu", dtype="float32")))
    return out


def one_call(llm: ChatInternVL, engine: Any, tool: str, max_tokens: int) -> dict[str, Any]:
    bound = llm.bind_tools(action_tools(), tool_choice=tool)
    before = dict(engine.stats)
    message = bound.invoke(PROMPT, max_tokens=max_tokens)
    meta = message.response_metadata
    return {
        "passes": engine.stats["forward_passes"] - before["forward_passes"],
        "jumped": engine.stats["jumped_tokens"] - before["jumped_tokens"],
        "tokens": message.usage_metadata["output_tokens"],
        "seconds": meta["timings"]["generate_s"],
        "calls": [(c["name"], c["args"]) for c in message.tool_calls],
        "invalid": len(message.invalid_tool_calls),
    }


def bench(size: str, repeats: int, max_tokens: int) -> None:
    engines = serve(size)
    tools = [t.name for t in action_tools()]
    for jump in (True, False):  # warm up: weights, tool prompt in the prefix cache
        one_call(*engines[jump], tools[0], max_tokens)
    runs: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    same = True
    for _ in range(repeats):
        for tool in tools:
            pair = {jump: one_call(*engines[jump], tool, max_tokens) for jump in (True, False)}
            same &= pair[True]["calls"] == pair[False]["calls"]
            for jump, run in pair.items():
                runs[jump].append(run)
    print(f"\n{size}: {len(tools)} action tools x {repeats}, greedy, max_tokens={max_tokens}")
    print("  jump   passes/call  tokens/call  jumped/call  calls/s   tokens/s  invalid")
    summary = {}
    for jump in (True, False):
        rs = runs[jump]
        passes = statistics.mean(r["passes"] for r in rs)
        tokens = statistics.mean(r["tokens"] for r in rs)
        jumped = statistics.mean(r["jumped"] for r in rs)
        seconds = sum(r["seconds"] for r in rs)
        calls_s = len(rs) / seconds
        tokens_s = sum(r["tokens"] for r in rs) / seconds
        invalid = sum(r["invalid"] for r in rs)
        summary[jump] = (passes, calls_s, tokens_s)
        print(
            f"  {'on ' if jump else 'off'}    {passes:9.1f}  {tokens:11.1f}  {jumped:11.1f}"
            f"  {calls_s:7.2f}  {tokens_s:9.1f}  {invalid:7d}"
        )
    on, off = summary[True], summary[False]
    print(
        f"  forward passes: {100 * (1 - on[0] / off[0]):.0f}% fewer; tool-call throughput "
        f"x{on[1] / off[1]:.2f}; identical calls on both paths: {same}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "1b"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=96)
    args = parser.parse_args()
    for size in args.sizes:
        bench(size, args.repeats, args.max_tokens)


if __name__ == "__main__":
    main()

"""Jump-forward decoding for forced tool calls: forward passes and throughput, with vs without.

One random-weight model (InternVL's real architecture, built in memory) is served twice, with
jump-forward on and off (`InternVLEngine(jump_forward=...)`), and every agent action tool
(`internvl_agent.actions.action_tools()`) is called by name (``tool_choice=<tool>``, greedy)
through ChatInternVL on both, interleaved. Printed per size: forward passes per tool call
(the prefill included), generated tokens per call, tool calls/s and tokens/s (of the
generation itself, `generate_s`), the ratios, and whether both paths produced the same calls.
The prefix cache is on (as in an agent: the tools prompt is prefilled once).

Random weights fill free string fields with noise until the budget closes them, so their calls
are mostly free tokens. A second part therefore replays, through the same two engines, the
short calls a trained model makes (`REALISTIC`, one per action tool): the replay picks, among
the tokens the constraint allows, the longest that continues the target text (time spent
choosing is not counted); forward passes and generation time are the model's real ones.

    python tools/bench_jump_forward.py                      # tiny and 1b
    python tools/bench_jump_forward.py --sizes tiny --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from internvl_agent.actions import action_tools
from internvl_agent.chat.chat_model import ChatInternVL
from internvl_agent.engine.engine import DecodeLoop, get_engine, register_model
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
    parser.add_argument("--skip-model-choice", action="store_true", help="replayed calls only")
    args = parser.parse_args()
    for size in args.sizes:
        if not args.skip_model_choice:
            bench(size, args.repeats, args.max_tokens)
        replay(size, args.repeats)


# --------------------------------------------------------------------------- replayed calls

# What a trained model answers for each action tool (short arguments), replayed token by token.
REALISTIC = {
    "click": {"x": 512, "y": 318},
    "type_text": {"text": "dark mode"},
    "press_key": {"keys": "Enter"},
    "scroll": {"direction": "down"},
    "drag": {"from_x": 100, "from_y": 200, "to_x": 600, "to_y": 200},
    "navigate": {"url": "https://example.com/settings"},
    "go_back": {},
    "wait": {"seconds": 2},
    "done": {"answer": "Dark mode is on."},
    "ask_user": {"question": "Which account?"},
}


class ReplayLoop(DecodeLoop):
    """A decode loop whose 'model choice' is the next token of a target text among the tokens
    the constraint allows (the longest that matches); the time spent choosing is kept apart."""

    target: bytes = b""
    token_bytes: Any = None
    choose_s = 0.0

    def _sample(self, scores: Any) -> list[int]:
        import numpy as np

        t0 = time.perf_counter()
        decoder = self.tracker.decoders[0]
        done = b"".join(self.token_bytes(t) for t in decoder.token_ids)
        rest = self.target[len(done) :]
        allowed = np.flatnonzero(np.isfinite(scores[0].numpy()))
        best, best_len = int(allowed[0]), -1
        for token in allowed.tolist():
            data = self.token_bytes(token)
            if (data and rest.startswith(data) and len(data) > best_len) or (
                not rest and token in self.tracker.eos
            ):
                best, best_len = token, len(data) if data else 10**6
        ReplayLoop.choose_s += time.perf_counter() - t0
        return [best]


def replay(size: str, repeats: int) -> None:
    """Forward passes and tokens/s for REALISTIC calls, replayed on both engines."""
    from internvl_agent.engine import engine as engine_module

    engines = serve(size)
    original = engine_module.DecodeLoop
    engine_module.DecodeLoop = ReplayLoop  # type: ignore[misc]
    try:
        totals = {jump: {"passes": 0, "tokens": 0, "seconds": 0.0} for jump in (True, False)}
        same = True
        for r in range(repeats + 1):
            for tool, args in list(REALISTIC.items())[: 1 if r == 0 else None]:
                texts = {}
                for jump in (True, False):
                    llm, engine = engines[jump]
                    engine.jump_forward = jump
                    bound = llm.bind_tools(action_tools(), tool_choice=tool)
                    call = {"name": tool, "arguments": args}
                    ReplayLoop.target = json.dumps(call).encode()
                    ReplayLoop.token_bytes = engine._token_bytes
                    ReplayLoop.choose_s = 0.0
                    messages = list(llm._convert_input(PROMPT).to_messages())
                    request = llm._prepare(messages, None, max_tokens=256, **bound.kwargs).request
                    before = engine.stats["forward_passes"]
                    result = engine.generate(request)
                    texts[jump] = result.text
                    assert json.loads(result.text) == call, (tool, result.text)
                    if r:  # round 0 warms up (weights, prefix cache)
                        got = totals[jump]
                        got["passes"] += engine.stats["forward_passes"] - before
                        got["tokens"] += result.output_tokens
                        got["seconds"] += result.timings["generate_s"] - ReplayLoop.choose_s
                same &= texts[True] == texts[False]
    finally:
        engine_module.DecodeLoop = original  # type: ignore[misc]
    calls = repeats * len(REALISTIC)
    print(f"\n{size}: realistic calls of the {len(REALISTIC)} action tools replayed x{repeats}")
    print("  jump   passes/call  tokens/call  calls/s   tokens/s")
    for jump in (True, False):
        got = totals[jump]
        print(
            f"  {'on ' if jump else 'off'}    {got['passes'] / calls:9.1f}"
            f"  {got['tokens'] / calls:11.1f}  {calls / got['seconds']:7.2f}"
            f"  {got['tokens'] / got['seconds']:9.1f}"
        )
    on, off = totals[True], totals[False]
    print(
        f"  forward passes: {100 * (1 - on['passes'] / off['passes']):.0f}% fewer; tool-call "
        f"throughput x{off['seconds'] / on['seconds']:.2f}; same text on both paths: {same}"
    )


if __name__ == "__main__":
    main()

"""Jump-forward decoding: forced tokens join a forward pass; greedy output is unchanged."""

from __future__ import annotations

import json

import pytest

from internvl_agent.actions import action_tools
from internvl_agent.chat.chat_model import ChatInternVL
from internvl_agent.engine.engine import get_engine, register_model
from internvl_agent.engine.loading import LoadSpec
from internvl_agent.engine.tiny import random_model

TOOLS = [t.name for t in action_tools()]


def _pair(seed: int) -> dict[bool, ChatInternVL]:
    """One tiny random model (weights from `seed`) served with jump-forward on and off."""
    model, tokenizer = random_model("tiny", seed=seed)
    out = {}
    for jump in (True, False):
        name = f"jf-test-{seed}-{jump}"
        register_model(name, model, tokenizer, jump_forward=jump, prefix_cache_entries=0)
        out[jump] = ChatInternVL(
            model=name, device="cpu", dtype="float32", temperature=0, max_tokens=64
        )
    return out


def _passes(llm: ChatInternVL) -> int:
    return get_engine(LoadSpec(llm.model, device="cpu", dtype="float32")).stats["forward_passes"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_tool_calls_are_identical_with_fewer_passes(seed: int) -> None:
    pair = _pair(seed)
    for tool in [*TOOLS, "any"]:
        messages, passes = {}, {}
        for jump, llm in pair.items():
            before = _passes(llm)
            bound = llm.bind_tools(action_tools(), tool_choice=tool)
            messages[jump] = bound.invoke(f"Do it ({tool})")
            passes[jump] = _passes(llm) - before
        on, off = messages[True], messages[False]
        assert on.tool_calls and not on.invalid_tool_calls, (seed, tool)
        assert [(c["name"], c["args"]) for c in on.tool_calls] == [
            (c["name"], c["args"]) for c in off.tool_calls
        ], (seed, tool)
        assert on.usage_metadata == off.usage_metadata
        assert passes[False] == off.usage_metadata["output_tokens"]  # one pass per token
        assert passes[True] < passes[False], (seed, tool, passes)


def test_batched_rows_with_different_tools_match_solo_runs() -> None:
    """Rows of one padded batch, each with its own schema and forced runs of its own length."""
    pair = _pair(3)
    llm = pair[True]
    engine = get_engine(LoadSpec(llm.model, device="cpu", dtype="float32"))
    requests, solo = [], []
    for tool in TOOLS[:5]:
        text = f"Do it ({tool})"
        bound = llm.bind_tools(action_tools(), tool_choice=tool)
        messages = list(llm._convert_input(text).to_messages())
        requests.append(llm._prepare(messages, None, **bound.kwargs).request)
        solo.append(pair[False].bind_tools(action_tools(), tool_choice=tool).invoke(text))
    results = engine.generate_batch(requests)
    assert max(r.timings["batch_size"] for r in results) > 1
    for result, message in zip(results, solo, strict=True):
        call = json.loads(result.text)
        assert (call["name"], call["arguments"]) == (
            message.tool_calls[0]["name"],
            message.tool_calls[0]["args"],
        )

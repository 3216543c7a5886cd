"""logprobs / top_logprobs through ChatInternVL: the model's own distribution, streamed alike."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from internvl_agent.actions import action_tools
from internvl_agent.chat.chat_model import ChatInternVL
from internvl_agent.engine.engine import get_engine
from internvl_agent.engine.loading import LoadSpec
from internvl_agent.errors import ConfigurationError


@pytest.fixture(scope="module")
def llm(tiny_checkpoint: Path) -> ChatInternVL:
    return ChatInternVL(model=str(tiny_checkpoint), device="cpu", max_tokens=10)


def _forward_logprobs(engine, prompt_ids: list[int], generated: list[int]) -> torch.Tensor:
    """log-softmax of one plain forward pass over prompt + generated, at each generated token."""
    ids = torch.tensor([prompt_ids + generated])
    with torch.inference_mode():
        logits = engine.model(input_ids=ids).logits[0].float()
    rows = logits[len(prompt_ids) - 1 : len(prompt_ids) - 1 + len(generated)]
    return torch.log_softmax(rows, dim=-1)


def _ids(engine, entries: list[dict]) -> list[int]:
    """The token ids of logprob entries (by their bytes)."""
    table = {bytes(b): i for i, b in enumerate(engine._byte_table) if b}
    return [table[bytes(e["bytes"])] for e in entries]


@pytest.mark.parametrize("tool", [None, "click", "type_text"])
def test_logprobs_equal_a_direct_forward_pass(llm: ChatInternVL, tool: str | None) -> None:
    model = llm.bind_tools(action_tools(), tool_choice=tool) if tool else llm
    message = model.invoke("Open the settings", logprobs=True, top_logprobs=4, max_tokens=40)
    entries = message.response_metadata["logprobs"]["content"]
    assert message.response_metadata["logprobs"]["refusal"] is None
    engine = get_engine(LoadSpec(llm.model, device="cpu"))
    options = {**getattr(model, "kwargs", {}), "max_tokens": 40}
    messages = list(llm._convert_input("Open the settings").to_messages())
    call = llm._prepare(messages, None, **options)
    prompt = engine.prepare(call.request).input_ids
    ids = _ids(engine, entries)
    expected = _forward_logprobs(engine, prompt, ids)
    for entry, token, row in zip(entries, ids, expected, strict=True):
        assert entry["logprob"] == pytest.approx(float(row[token]), abs=1e-4)
        top = row.topk(4)
        assert [t["logprob"] for t in entry["top_logprobs"]] == pytest.approx(
            top.values.tolist(), abs=1e-4
        )
        assert bytes(entry["bytes"]) == engine._byte_table[token]
    if tool:  # jump-forward appended most of the call: their logprobs came from shared passes
        assert message.tool_calls and message.tool_calls[0]["name"] == tool


def test_streaming_and_invoke_agree(llm: ChatInternVL) -> None:
    for model in (llm, llm.bind_tools(action_tools(), tool_choice="click")):
        message = model.invoke("hello", logprobs=True, top_logprobs=2, max_tokens=30)
        chunks = list(model.stream("hello", logprobs=True, top_logprobs=2, max_tokens=30))
        per_chunk = [c.response_metadata.get("logprobs", {}).get("content", []) for c in chunks]
        total = chunks[0]
        for chunk in chunks[1:]:
            total += chunk
        want = message.response_metadata["logprobs"]["content"]
        for got in (
            [e for part in per_chunk for e in part],
            total.response_metadata["logprobs"]["content"],
        ):
            assert [e["token"] for e in got] == [e["token"] for e in want]
            assert [e["logprob"] for e in got] == pytest.approx(
                [e["logprob"] for e in want], abs=1e-4
            )


def test_logprobs_fields_and_errors(tiny_checkpoint: Path) -> None:
    llm = ChatInternVL(model=str(tiny_checkpoint), device="cpu", logprobs=True, max_tokens=3)
    entries = llm.invoke("hi").response_metadata["logprobs"]["content"]
    assert len(entries) == 3 and all(e["top_logprobs"] == [] for e in entries)
    assert "logprobs" not in llm.invoke("hi", logprobs=False).response_metadata
    with pytest.raises(ConfigurationError, match="needs logprobs=True"):
        llm.invoke("hi", logprobs=False, top_logprobs=2)
    with pytest.raises(ValueError):
        ChatInternVL(model=str(tiny_checkpoint), top_logprobs=21)


def test_unsatisfiable_schema_is_refused_by_chat_model(llm: ChatInternVL) -> None:
    schema = {"type": "object", "properties": {"a": {"$ref": "#"}}, "required": ["a"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "loop", "schema": schema}}
    with pytest.raises(ConfigurationError, match="no finite JSON value"):
        llm.invoke("hi", response_format=fmt)
    tool = {"type": "function", "function": {"name": "loop", "parameters": schema}}
    with pytest.raises(ConfigurationError, match="no finite JSON value"):
        llm.bind_tools([tool], tool_choice="loop").invoke("hi")

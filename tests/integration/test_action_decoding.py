"""Every tool call a constrained decoder lets the model write validates (issue 10, part 5).

The tiny random-weight checkpoint is forced (tool_choice) to call each action in turn, with
sampling at temperature 1.5 and several seeds: its noise explores what the grammar admits,
and every call it produces must pass `actions.parse_action`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from pydantic import BaseModel, Field

from internvl_agent.actions import (
    ACTION_MODELS,
    ActionValidationError,
    action_tools,
    done_with_output,
    parse_action,
)
from internvl_agent.chat.chat_model import ChatInternVL

SEEDS = range(12)


class Listing(BaseModel):
    """A typed final answer, as a user would ask for one."""

    title: str = Field(min_length=1)
    price: float
    tags: list[str] = Field(max_length=3)


JSON_OUTPUT = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "count": {"type": "integer", "minimum": 0}},
    "required": ["name", "count"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def llm(tiny_checkpoint: Path) -> ChatInternVL:
    return ChatInternVL(
        model=str(tiny_checkpoint), device="cpu", max_tiles=1, max_tokens=160, temperature=1.5
    )


def decode_all(llm: ChatInternVL, models: dict[str, Any]) -> tuple[int, list[str]]:
    """Decode len(SEEDS) forced calls of every tool in `models`; (count, problems)."""
    prompt = [HumanMessage("Use the tool on the page.")]
    count, problems = 0, []
    for name in models:
        # only the forced tool in the prompt: the grammar is the same, the prompt much shorter
        bound = llm.bind_tools(action_tools([name], models=models), tool_choice=name)
        for seed in SEEDS:
            reply = bound.invoke(prompt, seed=seed)
            count += 1
            if reply.invalid_tool_calls or len(reply.tool_calls) != 1:
                problems.append(f"{name} seed {seed}: no single call: {reply!r}")
                continue
            call = reply.tool_calls[0]
            try:
                parse_action(call["name"], call["args"], models=models)
            except ActionValidationError as exc:
                problems.append(f"{name} seed {seed}: {json.dumps(call['args'])}: {exc}")
    return count, problems


def test_every_decoded_action_call_validates(llm: ChatInternVL) -> None:
    count, problems = decode_all(llm, dict(ACTION_MODELS))
    print(f"decoded {count} calls of {len(ACTION_MODELS)} actions, {len(problems)} invalid")
    assert count == len(ACTION_MODELS) * len(SEEDS)
    assert problems == []


@pytest.mark.parametrize("schema", [Listing, JSON_OUTPUT], ids=["pydantic", "json-schema"])
def test_every_decoded_done_with_output_validates(llm: ChatInternVL, schema: Any) -> None:
    models = {**ACTION_MODELS, "done": done_with_output(schema)}
    count, problems = decode_all(llm, {"done": models["done"]})
    print(f"decoded {count} done calls with an output schema, {len(problems)} invalid")
    assert count == len(SEEDS)
    assert problems == []

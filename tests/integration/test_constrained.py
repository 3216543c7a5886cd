"""Constrained JSON decoding: schema-valid output within max_new_tokens, even from noise."""

from __future__ import annotations

import json

import jsonschema
import pytest
import torch
from pydantic import BaseModel
from transformers import AutoModelForImageTextToText, AutoTokenizer, LogitsProcessorList

from internvl_agent.chat.tools import parse_tool_calls
from internvl_agent.engine import constrained
from internvl_agent.engine.constrained import (
    JsonConstraint,
    JsonLogitsProcessor,
    apply_bitmask,
    closing_bound,
    make_logits_processor,
    tool_call_schema,
)
from internvl_agent.errors import ConfigurationError


class Joke(BaseModel):
    setup: str
    punchline: str
    rating: int | None = None


CLICK = {
    "type": "function",
    "function": {
        "name": "click",
        "description": "Click an element.",
        "parameters": {
            "type": "object",
            "properties": {
                "x": {"type": "integer"},
                "y": {"type": "integer"},
                "element": {"type": "string"},
                "button": {"enum": ["left", "right", "middle"]},
                "double": {"type": "boolean"},
                "modifiers": {"type": "array", "items": {"type": "string"}},
                "target": {
                    "type": "object",
                    "properties": {"label": {"type": "string"}, "index": {"type": "integer"}},
                    "required": ["label", "index"],
                },
            },
            "required": ["x", "y", "element", "button", "double", "target"],
        },
    },
}
TYPE_TEXT = {
    "type": "function",
    "function": {
        "name": "type_text",
        "description": "Type text.",
        "parameters": {
            "type": "object",
            "properties": {"text": {"type": "string"}, "submit": {"type": "boolean"}},
            "required": ["text"],
        },
    },
}
NESTED = {
    "type": "object",
    "properties": {
        "steps": {
            "type": "array",
            "minItems": 2,
            "items": {
                "type": "object",
                "properties": {
                    "action": {"enum": ["click", "type"]},
                    "args": {"type": "array", "items": {"type": "integer"}, "minItems": 1},
                },
                "required": ["action", "args"],
            },
        },
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["steps", "tags"],
}
SCHEMAS = {
    "tool_any": tool_call_schema([CLICK, TYPE_TEXT]),
    "tool_click": tool_call_schema([CLICK, TYPE_TEXT], name="click"),
    "joke": Joke.model_json_schema(),
    "nested_arrays": NESTED,
}
# Schemas with no static closing bound: best-effort fallback mode.
UNBOUNDED = {
    "pattern": {
        "type": "object",
        "properties": {"code": {"type": "string", "pattern": "^[a-z]{2,6}$"}},
        "required": ["code"],
    },
    "json_mode": {"type": "object"},
    "recursive": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "children": {"type": "array", "items": {"$ref": "#"}},
        },
        "required": ["name"],
    },
}


@pytest.fixture(scope="module")
def tokenizer(tiny_checkpoint):
    return AutoTokenizer.from_pretrained(tiny_checkpoint)


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    return AutoModelForImageTextToText.from_pretrained(tiny_checkpoint).eval()


@pytest.fixture(scope="module")
def eos(model) -> list[int]:
    return list(model.generation_config.eos_token_id)


@pytest.fixture(scope="module")
def vocab_size(model) -> int:
    return model.config.text_config.vocab_size


@pytest.fixture(scope="module")
def constraints(tokenizer, vocab_size) -> dict[str, JsonConstraint]:
    return {
        name: JsonConstraint(tokenizer, schema, vocab_size=vocab_size)
        for name, schema in SCHEMAS.items()
    }


def decode_json_row(tokenizer, row: list[int], eos: list[int]) -> str:
    """The text of a generated row up to its first EOS, special tokens kept (none expected)."""
    end = next((i for i, t in enumerate(row) if t in eos), len(row))
    return tokenizer.decode(row[:end], skip_special_tokens=False)


# --------------------------------------------------------------------------- schemas


def test_tool_call_schema_shapes() -> None:
    schema = SCHEMAS["tool_any"]
    assert [b["properties"]["name"] for b in schema["anyOf"]] == [
        {"const": "click"},
        {"const": "type_text"},
    ]
    jsonschema.validate({"name": "type_text", "arguments": {"text": "a"}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "type_text", "arguments": {"x": 1}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "scroll", "arguments": {}}, schema)
    one = SCHEMAS["tool_click"]
    assert "anyOf" not in one and one["properties"]["name"] == {"const": "click"}
    assert one["required"] == ["name", "arguments"]


def test_tool_call_schema_errors_and_defaults() -> None:
    with pytest.raises(ConfigurationError, match="click, type_text"):
        tool_call_schema([CLICK, TYPE_TEXT], name="scroll")
    with pytest.raises(ConfigurationError, match="without tools"):
        tool_call_schema([])
    with pytest.raises(ConfigurationError, match="OpenAI tool dict"):
        tool_call_schema([{"type": "function"}])
    bare = tool_call_schema([{"type": "function", "function": {"name": "noop"}}])
    jsonschema.validate({"name": "noop", "arguments": {}}, bare)


def test_tool_call_schema_hoists_each_tools_defs() -> None:
    class Point(BaseModel):
        x: int

    class Drag(BaseModel):
        start: Point
        end: Point

    def tool(name: str, params: dict) -> dict:
        return {"type": "function", "function": {"name": name, "parameters": params}}

    other = {"$defs": {"Point": {"type": "string"}}, "properties": {"p": {"$ref": "#/$defs/Point"}}}
    schema = tool_call_schema([tool("drag", Drag.model_json_schema()), tool("other", other)])
    assert set(schema["$defs"]) == {"tool0_Point", "tool1_Point"}
    jsonschema.validate({"name": "drag", "arguments": {"start": {"x": 1}, "end": {"x": 2}}}, schema)
    jsonschema.validate({"name": "other", "arguments": {"p": "s"}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "other", "arguments": {"p": {"x": 1}}}, schema)


def test_closing_bound() -> None:
    assert closing_bound({"type": "boolean"}) == 5
    assert closing_bound({"type": "string"}) == 7
    for schema in SCHEMAS.values():
        assert isinstance(closing_bound(schema), int)
    for schema in UNBOUNDED.values():
        assert closing_bound(schema) is None
    assert closing_bound({"type": "object"}) is None  # any properties
    assert closing_bound({"type": "array"}) is None  # any items
    assert closing_bound({}) is None


# --------------------------------------------------------------------------- constraints


def test_constraint_errors(tokenizer, monkeypatch) -> None:
    with pytest.raises(ConfigurationError, match=r"config\.vocab_size"):
        JsonConstraint(tokenizer, {"type": "string"}, vocab_size=len(tokenizer) - 1)
    with pytest.raises(ConfigurationError, match="grammar"):
        JsonConstraint(
            tokenizer, {"properties": {"a": {"$ref": "#/$defs/missing"}}}, vocab_size=len(tokenizer)
        )
    monkeypatch.setattr(constrained, "_PATH_LIMIT", 50)
    with pytest.raises(ConfigurationError, match="no way to complete"):
        JsonConstraint(tokenizer, {"type": "string", "minLength": 60}, vocab_size=len(tokenizer))


def test_min_tokens_and_budget_error(constraints, eos) -> None:
    joke = constraints["joke"]
    minimal = '{"setup": "", "punchline": ""}'
    assert joke.min_tokens <= len(minimal)
    assert constraints["tool_any"].min_tokens < constraints["tool_click"].min_tokens
    with pytest.raises(ConfigurationError, match=f"at least {joke.min_tokens} new tokens"):
        make_logits_processor([joke], max_new_tokens=joke.min_tokens - 1, eos_token_ids=eos)
    make_logits_processor([joke], max_new_tokens=joke.min_tokens, eos_token_ids=eos)


def test_grammars_are_cached_lru(tokenizer, vocab_size, monkeypatch) -> None:
    a = JsonConstraint(tokenizer, {"type": "integer"}, vocab_size=vocab_size)
    b = JsonConstraint(tokenizer, {"type": "integer"}, vocab_size=vocab_size)
    assert a._compiled is b._compiled
    compact = JsonConstraint(
        tokenizer, {"type": "integer"}, vocab_size=vocab_size, separators=(",", ":")
    )
    assert compact._compiled is not a._compiled
    grammars = constrained._vocab_for(tokenizer, vocab_size)._grammars
    monkeypatch.setattr(grammars, "max_entries", 2)
    for n in range(3):
        JsonConstraint(tokenizer, {"type": "string", "minLength": n}, vocab_size=vocab_size)
    c = JsonConstraint(tokenizer, {"type": "integer"}, vocab_size=vocab_size)
    assert c._compiled is not a._compiled  # evicted


@pytest.mark.slow
def test_closing_length_never_exceeds_the_static_bound(constraints, tokenizer) -> None:
    """Soundness of closing_bound on every prefix of many random valid outputs."""
    for name, constraint in constraints.items():
        bound = constraint.max_closing_tokens
        assert bound is not None
        for seed in range(6):
            text = random_generation(tokenizer, constraint, 400, seed, bias="structure")
            values = [constraint.closing_length(text[:n]) for n in range(len(text) + 1)]
            assert all(v is not None and v <= bound for v in values), (name, text)
            assert values[-1] == 0


# --------------------------------------------------------------------------- processor


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("density", [0.0, 0.001, 0.3, 0.999, 1.0])
@pytest.mark.parametrize("vocab", [40, 536, 3001])
def test_apply_bitmask_masks_exactly_its_rows(vocab: int, density: float, dtype) -> None:
    gen = torch.Generator().manual_seed(vocab)
    allowed = torch.rand(3, vocab, generator=gen) < density
    words = (vocab + 31) // 32
    padded = torch.zeros(3, words * 32, dtype=torch.int64)
    padded[:, :vocab] = allowed.long()
    packed = (padded.view(3, words, 32) << torch.arange(32)).sum(-1)
    bitmask = torch.where(packed >= 2**31, packed - 2**32, packed).to(torch.int32)
    scores = torch.randn(3, vocab + 5, generator=gen).to(dtype)  # wider than the vocabulary
    out = scores.clone()
    apply_bitmask(out, bitmask, [0, 2], vocab)
    for row in (0, 2):
        assert torch.equal(torch.isfinite(out[row, :vocab]), allowed[row])
        assert torch.equal(out[row, :vocab][allowed[row]], scores[row, :vocab][allowed[row]])
        assert torch.isinf(out[row, vocab:]).all()
    assert torch.equal(out[1], scores[1])


def random_generation(
    tokenizer, constraint: JsonConstraint, budget: int, seed: int, *, bias: str = "none"
) -> str:
    """Drive the processor with random logits (an adversarial stand-in for a model)."""
    vocab = constraint.vocab_size
    eos = [tokenizer.eos_token_id]
    proc = make_logits_processor([constraint], max_new_tokens=budget, eos_token_ids=eos)
    gen = torch.Generator().manual_seed(seed)
    boost = torch.zeros(vocab)
    if bias != "none":
        # Favour what makes JSON long: openers and separators, or long string tokens.
        chars = "[{,\\" if bias == "structure" else "abcdefghijklmnopqrstuvwxyz "
        for tid in range(len(tokenizer)):
            text = tokenizer.convert_ids_to_tokens(tid) or ""
            boost[tid] = 4.0 * sum(text.count(c) for c in chars) + (
                len(text) if bias == "long" else 0
            )
    boost[len(tokenizer) :] = 50.0  # padded ids must never win
    for tid in constraint.vocab.banned.tolist():
        boost[tid] = 50.0  # nor special / added tokens
    ids = torch.tensor([[0]])
    out: list[int] = []
    for _ in range(budget):
        scores = torch.randn(1, vocab, generator=gen) * 2 + boost
        scores = proc(ids, scores)
        token = int(torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=gen))
        out.append(token)
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
        if token in eos:
            break
    assert proc.stats["overruns"] == 0
    return decode_json_row(tokenizer, out, eos)


@pytest.mark.slow
@pytest.mark.parametrize("bias", ["none", "structure", "long"])
@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_random_logits_always_give_valid_json_within_budget(
    constraints, tokenizer, name: str, bias: str
) -> None:
    constraint = constraints[name]
    m = constraint.min_tokens
    for budget in sorted({m, m + 1, m + 3, 40, 100, 300} - set(range(m))):
        for seed in range(3):
            text = random_generation(tokenizer, constraint, budget, seed, bias=bias)
            jsonschema.validate(json.loads(text), SCHEMAS[name])


@pytest.mark.parametrize("name", sorted(UNBOUNDED))
def test_schemas_without_static_bound_best_effort(tokenizer, vocab_size, name: str) -> None:
    constraint = JsonConstraint(tokenizer, UNBOUNDED[name], vocab_size=vocab_size)
    assert constraint.max_closing_tokens is None
    for budget in (constraint.min_tokens + 20, 60, 150):
        for seed in range(3):
            text = random_generation(tokenizer, constraint, budget, seed, bias="structure")
            jsonschema.validate(json.loads(text), UNBOUNDED[name])


def test_processor_forces_eos_and_leaves_free_rows_alone(constraints, eos) -> None:
    joke = constraints["joke"]
    proc = make_logits_processor([joke, None], max_new_tokens=500, eos_token_ids=eos)
    text = '{"setup": "a", "punchline": "b"}'
    vocab = joke.vocab
    tokens = []
    data = text.encode()
    while data:  # spell the JSON with the longest matching tokens
        n = max(k for k in range(1, len(data) + 1) if data[:k] in vocab.by_bytes)
        tokens.append(vocab.by_bytes[data[:n]])
        data = data[n:]
    ids = torch.tensor([[0], [0]])
    for token in tokens:
        scores = torch.randn(2, joke.vocab_size)
        free = scores[1].clone()
        out = proc(ids, scores)
        assert torch.equal(out[1], free)
        assert torch.isfinite(out[0, token])
        ids = torch.cat([ids, torch.tensor([[token], [token]])], dim=1)
    out = proc(ids, torch.randn(2, joke.vocab_size))
    assert torch.isfinite(out[0]).nonzero().flatten().tolist() == sorted(eos)


def test_processor_rejects_wrong_batch(constraints, eos) -> None:
    proc = make_logits_processor([constraints["joke"]], max_new_tokens=50, eos_token_ids=eos)
    with pytest.raises(ConfigurationError, match="beam search"):
        proc(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 10))
    with pytest.raises(ConfigurationError, match="EOS"):
        JsonLogitsProcessor([None], max_new_tokens=5, eos_token_ids=[])


def test_padded_vocabulary_ids_are_never_allowed(tokenizer) -> None:
    padded = len(tokenizer) + 6  # like InternVL3: config.vocab_size > len(tokenizer)
    constraint = JsonConstraint(tokenizer, Joke.model_json_schema(), vocab_size=padded)
    assert constraint.vocab_size == padded
    for seed in range(3):
        text = random_generation(tokenizer, constraint, 60, seed)
        jsonschema.validate(json.loads(text), Joke.model_json_schema())


# --------------------------------------------------------------------------- with the model


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["greedy", "sample0", "sample1"])
@pytest.mark.parametrize("max_new_tokens", [40, 100, 300])
def test_tiny_model_batch_always_returns_valid_json(
    model, tokenizer, constraints, eos, max_new_tokens: int, mode: str
) -> None:
    """Rows with and without constraints in one batch; each constrained row validates."""
    names = [n for n in sorted(SCHEMAS) if constraints[n].min_tokens <= max_new_tokens]
    for name in sorted(set(SCHEMAS) - set(names)):  # cannot fit: refused up front
        with pytest.raises(ConfigurationError, match="raise max_new_tokens"):
            make_logits_processor(
                [constraints[name]], max_new_tokens=max_new_tokens, eos_token_ids=eos
            )
    rows: list[JsonConstraint | None] = [None]
    for name in names:
        rows += [constraints[name], None]
    proc = make_logits_processor(rows, max_new_tokens=max_new_tokens, eos_token_ids=eos)
    prompt = tokenizer(
        ["<|im_start|>user\nCall a tool<|im_end|>\n<|im_start|>assistant\n"] * len(rows),
        return_tensors="pt",
    )
    sampling = {} if mode == "greedy" else {"do_sample": True, "temperature": 1.5, "top_k": 0}
    if mode != "greedy":
        torch.manual_seed(int(mode[-1]))
    out = model.generate(
        **prompt,
        max_new_tokens=max_new_tokens,
        logits_processor=LogitsProcessorList([proc]),
        pad_token_id=tokenizer.pad_token_id,
        **sampling,
    )
    generated = out[:, prompt["input_ids"].shape[1] :].tolist()
    constrained_rows = [(i, c) for i, c in enumerate(rows) if c is not None]
    assert len(constrained_rows) == len(names)
    for (i, constraint), name in zip(constrained_rows, names, strict=True):
        text = decode_json_row(tokenizer, generated[i], eos)
        jsonschema.validate(json.loads(text), constraint.schema)
        assert name in SCHEMAS
    assert proc.stats["overruns"] == 0


def test_tool_call_prefix_and_suffix_are_forced(model, tokenizer, vocab_size, eos) -> None:
    schema = tool_call_schema([CLICK, TYPE_TEXT])
    constraint = JsonConstraint(
        tokenizer, schema, vocab_size=vocab_size, prefix="<tool_call>\n", suffix="\n</tool_call>"
    )
    assert constraint.prefix_ids[0] == tokenizer.convert_tokens_to_ids("<tool_call>")
    assert constraint.min_tokens == constraint.json_min_tokens + 4
    prompt = tokenizer(["<|im_start|>assistant\n"] * 2, return_tensors="pt")
    for budget in (constraint.min_tokens, 60):
        torch.manual_seed(budget)
        proc = make_logits_processor(
            [constraint, constraint], max_new_tokens=budget, eos_token_ids=eos
        )
        out = model.generate(
            **prompt,
            max_new_tokens=budget,
            logits_processor=LogitsProcessorList([proc]),
            pad_token_id=tokenizer.pad_token_id,
            do_sample=True,
        )
        for row in out[:, prompt["input_ids"].shape[1] :].tolist():
            text = decode_json_row(tokenizer, row, eos)
            assert text.startswith("<tool_call>\n") and text.endswith("\n</tool_call>")
            parsed = parse_tool_calls(text, tool_names=["click", "type_text"])
            assert parsed.invalid_tool_calls == [] and len(parsed.tool_calls) == 1
            call = parsed.tool_calls[0]
            jsonschema.validate({"name": call["name"], "arguments": call["args"]}, schema)


def test_without_closing_mode_output_is_cut_off(constraints, tokenizer, monkeypatch) -> None:
    """The control experiment: grammar masking alone does not finish in budget."""
    monkeypatch.setattr(JsonLogitsProcessor, "_closing_mode", lambda self, row, remaining: False)
    failures = 0
    for seed in range(3):
        text = random_generation(tokenizer, constraints["joke"], 40, seed, bias="long")
        try:
            json.loads(text)
        except json.JSONDecodeError:
            failures += 1
    assert failures == 3


def test_per_row_budgets(model, tokenizer, constraints, eos) -> None:
    joke = constraints["joke"]
    budgets = [joke.min_tokens + 2, 120, 120]
    with pytest.raises(ConfigurationError, match="2 max_new_tokens values for 3"):
        make_logits_processor([joke, joke, None], max_new_tokens=budgets[:2], eos_token_ids=eos)
    with pytest.raises(ConfigurationError, match="raise max_new_tokens"):
        make_logits_processor(
            [joke, None], max_new_tokens=[joke.min_tokens - 1, 9], eos_token_ids=eos
        )
    proc = make_logits_processor([joke, joke, None], max_new_tokens=budgets, eos_token_ids=eos)
    prompt = tokenizer(["<|im_start|>assistant\n"] * 3, return_tensors="pt")
    torch.manual_seed(0)
    out = model.generate(
        **prompt,
        max_new_tokens=max(budgets),
        logits_processor=LogitsProcessorList([proc]),
        pad_token_id=tokenizer.pad_token_id,
        do_sample=True,
        temperature=1.5,
        top_k=0,
    )
    rows = out[:, prompt["input_ids"].shape[1] :].tolist()
    for row, budget in zip(rows[:2], budgets, strict=False):
        text = decode_json_row(tokenizer, row, eos)
        jsonschema.validate(json.loads(text), joke.schema)
        json_tokens = next(i for i, t in enumerate(row) if t in eos)
        assert json_tokens <= budget


# --------------------------------------------------------------------------- hostile schemas


def _nested(levels: int) -> dict:
    schema: dict = {"type": "integer"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


UNSATISFIABLE = {
    "self": {"type": "object", "properties": {"a": {"$ref": "#"}}, "required": ["a"]},
    "through_defs": {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {"next": {"$ref": "#/$defs/node"}},
                "required": ["next"],
            }
        },
        "$ref": "#/$defs/node",
    },
    "through_arrays": {
        "$defs": {
            "n": {"type": "object", "properties": {"m": {"$ref": "#/$defs/m"}}, "required": ["m"]},
            "m": {"type": "array", "items": {"$ref": "#/$defs/n"}, "minItems": 1},
        },
        "$ref": "#/$defs/n",
    },
    "every_branch": {
        "anyOf": [
            {"type": "object", "properties": {"x": {"$ref": "#"}}, "required": ["x"]},
            {"type": "array", "prefixItems": [{"$ref": "#"}], "minItems": 1},
        ]
    },
}


@pytest.mark.parametrize("backend", ["llguidance", "xgrammar"])
@pytest.mark.parametrize("name", sorted(UNSATISFIABLE))
def test_unsatisfiable_recursive_schemas_are_refused(tokenizer, name: str, backend: str) -> None:
    with pytest.raises(ConfigurationError, match="no finite JSON value satisfies this schema"):
        JsonConstraint(tokenizer, UNSATISFIABLE[name], vocab_size=len(tokenizer), backend=backend)


def test_optional_recursion_and_escapes_are_accepted(tokenizer) -> None:
    for schema in (
        {"type": "object", "properties": {"a": {"$ref": "#"}}},
        {
            "anyOf": [
                {"type": "null"},
                {"type": "object", "properties": {"c": {"$ref": "#"}}, "required": ["c"]},
            ]
        },
        {
            "type": "object",
            "properties": {"kids": {"type": "array", "items": {"$ref": "#"}}},
            "required": ["kids"],
        },
    ):
        constraint = JsonConstraint(tokenizer, schema, vocab_size=len(tokenizer))
        text = random_generation(tokenizer, constraint, constraint.min_tokens + 40, 0)
        jsonschema.validate(json.loads(text), schema)


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        (_nested(80), "nests deeper than"),
        ({"enum": [f"value-{i}" for i in range(40_000)]}, "bytes; at most"),
        ({"enum": list(range(25_000))}, "more than"),
        ({"type": "string", "pattern": "a" * 5000}, "'pattern' of the JSON schema"),
        ({"type": "string", "minLength": 100_000}, "no way to complete"),
        ({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}, "grammar"),
    ],
)
def test_oversized_schemas_are_refused_with_the_reason(tokenizer, schema, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        JsonConstraint(tokenizer, schema, vocab_size=len(tokenizer))


def test_big_but_reasonable_schemas_still_work(tokenizer) -> None:
    for schema in (
        _nested(40),
        {"enum": [f"value-{i}" for i in range(3000)]},
        {"type": "string", "pattern": "^([a-z0-9]{1,10}\\.){1,20}[a-z]{2,8}$"},
    ):
        constraint = JsonConstraint(tokenizer, schema, vocab_size=len(tokenizer))
        text = random_generation(tokenizer, constraint, constraint.min_tokens + 30, 1)
        jsonschema.validate(json.loads(text), schema)


def test_unknown_backend_is_named(tokenizer) -> None:
    with pytest.raises(ConfigurationError, match="llguidance, xgrammar"):
        JsonConstraint(tokenizer, {"type": "integer"}, vocab_size=len(tokenizer), backend="x")

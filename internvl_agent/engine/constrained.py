"""Grammar-constrained JSON decoding (llguidance or xgrammar) that always finishes in budget.

Used when a tool call is forced (``tool_choice`` "any" or a tool name) or structured output is
asked for: each row of a batch gets its own JSON schema (or none), and even a random-weight
model then returns schema-valid JSON.

Decisions:

- Backend: llguidance by default (a core dependency without triton or CUDA packages: the
  core install is 1.2 GB instead of 2.3 GB with torch CPU, tools/measure_install.py), xgrammar
  where chosen (the ``xgrammar`` extra; ``backend=`` or $INTERNVL_AGENT_GRAMMAR_BACKEND). At
  150k tokens xgrammar fills a mask faster (8 vs 136 µs), but the whole processor here (mask,
  budget logic, forced tokens) costs about the same on both, ~0.2 ms/token
  (tools/bench_constrained.py), far below a forward pass of a real model. Both backends use one
  bitmask layout; `apply_bitmask` (ours, numpy on CPU) applies it for both.
- Schemas are untrusted input: `check_schema` refuses, before compiling, schemas over size,
  depth and pattern limits and schemas that no finite value satisfies (a required recursion,
  ``{"properties": {"a": {"$ref": "#"}}, "required": ["a"]}``); llguidance compiles under
  grammar-size and lexer-fuel limits.
- Forced tokens: where the grammar admits only one continuation, the row is forced to the
  backend's tokens for it (`_Row.grammar_forced`); the engine's decode loop feeds such runs in
  one forward pass (jump-forward, `JsonLogitsProcessor.jump`), with the same tokens a mask per
  pass would force.
- Coverage: a constrained row generates ``prefix`` (forced, as the tokenizer encodes it), the
  JSON value (grammar), ``suffix`` (forced), then EOS (forced). Both default to "": for tool
  calls the engine puts ``<tool_call>\\n`` at the end of the prompt (prefill, no budget spent)
  and adds ``\\n</tool_call>`` to the decoded text, so the constrained tokens are exactly
  ``{"name": ..., "arguments": {...}}``. Passing them as prefix/suffix instead makes the model
  emit the real ``<tool_call>`` tokens.
- Whitespace: none is free; the separators are fixed, by default Qwen2.5's ``", "`` and
  ``": "`` (what its template renders, so what the model saw in training; in byte-level BPE the
  space merges into the next token and costs almost nothing). ``separators=(",", ":")`` gives
  compact JSON.
- Inside the JSON, special and added tokens (``<|im_end|>``, ``<img>``, ``<tool_call>``...)
  are never allowed: they are protocol markers, and ``</tool_call>`` would end a call early.
- Budget: a *closing path* is what the greedy closer (`_Closer`) emits from a matcher state to
  finish the JSON: forced text as the longest matching tokens, otherwise one byte at a time,
  preferring bytes that close strings, numbers, objects and arrays. Its length is g(state)
  tokens. `make_logits_processor` raises if g(start) plus the prefix and suffix exceeds
  max_new_tokens. `closing_bound` derives from the schema a bound G (bytes, so also tokens) on
  g over every reachable state. While more than G tokens remain any grammar-allowed token is
  safe; after that (*closing mode*) a row may take only the next token of its closing path,
  or one of its k most likely allowed tokens that was checked to leave a path that fits
  (g(state + token) <= remaining - 1). So g(state) <= remaining holds at every step and the
  JSON always completes within budget. Schemas without a static bound (recursive ``$ref``,
  ``pattern``/``format`` strings, free-form objects or arrays) fall back to computing g at
  every step and entering closing mode `FALLBACK_MARGIN` tokens early: best effort.
"""

from __future__ import annotations

import json
import threading
import warnings
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor

from internvl_agent.engine.caches import LRU
from internvl_agent.errors import ConfigurationError

DEFAULT_SEPARATORS: tuple[str, str] = (", ", ": ")
GRAMMAR_CACHE_SIZE = 64  # compiled grammars kept per tokenizer
# Bounds on what a schema may cost (a request's schema is untrusted input).
SCHEMA_BYTES_LIMIT = 256 * 1024  # the schema's JSON text
SCHEMA_DEPTH_LIMIT = 128  # nesting of JSON containers in the schema text
SCHEMA_NODES_LIMIT = 20_000  # sub-schemas visited by the checks (enum values included)
PATTERN_LIMIT = 1_000  # characters of one "pattern"
GRAMMAR_SIZE_LIMIT = 500_000  # llguidance: grammar symbols
LEXER_FUEL_LIMIT = 5_000_000  # llguidance: lexer construction work (bounds time and memory)
CAREFUL_TOP_K = 4  # most likely tokens checked per step in closing mode
FALLBACK_MARGIN = 16  # closing-mode margin (tokens) for schemas without a static bound
_PATH_LIMIT = 4096  # longest closing path searched for
_LOOKAHEAD_OPTIONS = 6  # at most this many choices are compared by the closer's lookahead
_LOOKAHEAD_LIMIT = 512  # longest completion the lookahead follows


# --------------------------------------------------------------------------- schemas


def _functions(tools: Sequence[dict]) -> list[dict]:
    out = []
    for tool in tools:
        fn = tool.get("function", tool) if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise ConfigurationError(
                f"not an OpenAI tool dict: {tool!r}; build tools with "
                "langchain_core.utils.function_calling.convert_to_openai_tool"
            )
        out.append(fn)
    return out


def _rename_refs(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            k: renames.get(v, v) if k == "$ref" and isinstance(v, str) else _rename_refs(v, renames)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rename_refs(v, renames) for v in node]
    return node


def _hoist_defs(params: dict, tag: str, defs: dict) -> dict:
    """Move `params`' local definitions into `defs` (names prefixed by `tag`)."""
    renames: dict[str, str] = {}
    local: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        for name, sub in (params.get(key) or {}).items():
            renames[f"#/{key}/{name}"] = f"#/$defs/{tag}{name}"
            local[tag + name] = sub
    if not renames:
        return params
    body = {k: v for k, v in params.items() if k not in ("$defs", "definitions")}
    defs.update({name: _rename_refs(sub, renames) for name, sub in local.items()})
    return _rename_refs(body, renames)


def tool_call_schema(tools: Sequence[dict], *, name: str | None = None) -> dict:
    """JSON schema of one Qwen2.5 tool call ``{"name": ..., "arguments": {...}}``.

    An ``anyOf`` over `tools` (OpenAI tool dicts), or just the tool called `name`. Local
    ``$defs`` of each tool's parameters are moved to the top level under unique names.
    """
    fns = _functions(tools)
    if name is not None:
        fns = [fn for fn in fns if fn["name"] == name]
        if not fns:
            known = ", ".join(fn["name"] for fn in _functions(tools)) or "(none)"
            raise ConfigurationError(f"tool_choice names {name!r}, but the tools are: {known}")
    if not fns:
        raise ConfigurationError("a tool call cannot be forced without tools; bind some tools")
    defs: dict[str, Any] = {}
    branches = []
    for i, fn in enumerate(fns):
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        branches.append(
            {
                "type": "object",
                "properties": {
                    "name": {"const": fn["name"]},
                    "arguments": _hoist_defs(params, f"tool{i}_", defs),
                },
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    schema: dict[str, Any] = branches[0] if len(branches) == 1 else {"anyOf": branches}
    if defs:
        schema = {**schema, "$defs": defs}
    return schema


class _Bound:
    """Static upper bound, in bytes, of the greedy closing path from any state of a schema."""

    def __init__(self, root: Any, separators: tuple[str, str]) -> None:
        self.root = root
        self.item_sep = len(separators[0].encode())
        self.key_sep = len(separators[1].encode())
        self.active: set[str] = set()

    def measure(self, s: Any) -> tuple[int, int] | None:
        """(bytes of a whole value, bytes to close from inside one), or None if unbounded."""
        if not isinstance(s, dict) or not s:
            return None
        if "$ref" in s:
            return self._ref(s["$ref"])
        if "const" in s:
            n = len(json.dumps(s["const"], ensure_ascii=False).encode())
            return n, n
        if "enum" in s:
            if not s["enum"]:
                return None
            n = max(len(json.dumps(v, ensure_ascii=False).encode()) for v in s["enum"])
            return n, n
        branches = s.get("anyOf") or s.get("oneOf")
        if branches:
            return self._worst_of([self.measure(b) for b in branches])
        if "allOf" in s:
            return self.measure(s["allOf"][0]) if len(s["allOf"]) == 1 else None
        kind = s.get("type")
        if isinstance(kind, list):
            return self._worst_of([self.measure({**s, "type": k}) for k in kind])
        if kind is None:
            kind = "object" if "properties" in s else "array" if "items" in s else None
        return self._typed(kind, s)

    def _worst_of(self, parts: list[tuple[int, int] | None]) -> tuple[int, int] | None:
        if not parts or any(p is None for p in parts):
            return None
        return max(p[0] for p in parts if p), max(p[1] for p in parts if p)

    def _ref(self, ref: str) -> tuple[int, int] | None:
        if ref in self.active or not ref.startswith("#/"):
            return None  # recursive, or not local
        node: Any = self.root
        for part in ref[2:].split("/"):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        self.active.add(ref)
        try:
            return self.measure(node)
        finally:
            self.active.discard(ref)

    def _typed(self, kind: str | None, s: dict) -> tuple[int, int] | None:
        if kind == "string":
            if "pattern" in s or "format" in s:
                return None
            n = int(s.get("minLength", 0))
            return 2 + n, 7 + n  # worst: inside a \\uXXXX escape
        if kind in ("integer", "number"):
            keys = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
            limits = [s.get(k) for k in keys]
            numbers = [v for v in limits if isinstance(v, int | float) and not isinstance(v, bool)]
            digits = max([len(str(int(abs(v)))) + 1 for v in numbers] + [1])
            extra = 3 if kind == "number" else 0
            return digits + 1 + extra, digits + 3 + extra
        if kind == "boolean":
            return 5, 5
        if kind == "null":
            return 4, 4
        if kind == "object":
            return self._object(s)
        if kind == "array":
            return self._array(s)
        return None

    def _object(self, s: dict) -> tuple[int, int] | None:
        if s.get("additionalProperties") not in (None, False) or s.get("patternProperties"):
            return None
        props = s.get("properties")
        if props is None:
            return (2, 2) if s.get("additionalProperties") is False else None
        # Inside property p: finish it (worst_p), then at most every other entry, then "}".
        whole, parts = 2, []
        for key, sub in props.items():
            part = self.measure(sub)
            if part is None:
                return None
            whole += len(json.dumps(key, ensure_ascii=False).encode()) + self.key_sep
            whole += part[0] + self.item_sep
            parts.append(part)
        return whole, max([whole] + [whole - fresh + worst for fresh, worst in parts])

    def _array(self, s: dict) -> tuple[int, int] | None:
        # Inside an element: finish it, then at most the items minItems still needs, then "]".
        prefix = [self.measure(p) for p in s.get("prefixItems") or []]
        items = s.get("items")
        item = None if items is False else self.measure(items) if isinstance(items, dict) else None
        if any(p is None for p in prefix) or (item is None and items is not False):
            return None
        parts = [p for p in prefix if p is not None] + ([item] if item is not None else [])
        whole = 2 + sum(p[0] + self.item_sep for p in parts[: len(prefix)])
        if item is not None:
            missing = max(0, int(s.get("minItems", 0)) - len(prefix))
            whole += missing * (item[0] + self.item_sep)
        return whole, whole + max((p[1] for p in parts), default=0) + self.item_sep


def closing_bound(schema: dict, *, separators: tuple[str, str] = DEFAULT_SEPARATORS) -> int | None:
    """Bytes (so also tokens) that always suffice to finish the JSON from any state, or None."""
    measured = _Bound(schema, separators).measure(schema)
    return None if measured is None else measured[1]


def check_schema(schema: Any) -> None:
    """Refuse, with a ConfigurationError naming the problem, a schema that is too big or deep
    for bounded compilation, or that no finite JSON value satisfies (a required recursion)."""
    if not isinstance(schema, dict | bool):
        raise ConfigurationError(f"a JSON schema is an object, not {type(schema).__name__}")
    try:
        size = len(json.dumps(schema, ensure_ascii=False).encode())
    except (TypeError, ValueError, RecursionError) as exc:
        raise ConfigurationError(f"the JSON schema is not plain JSON: {exc}") from exc
    if size > SCHEMA_BYTES_LIMIT:
        raise ConfigurationError(
            f"the JSON schema is {size} bytes; at most {SCHEMA_BYTES_LIMIT} are accepted"
        )
    nodes, stack = 0, [(schema, 1)]
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if depth > SCHEMA_DEPTH_LIMIT:
            raise ConfigurationError(
                f"the JSON schema nests deeper than {SCHEMA_DEPTH_LIMIT} levels; flatten it "
                "(use $defs and $ref for repeated parts)"
            )
        if nodes > SCHEMA_NODES_LIMIT:
            raise ConfigurationError(
                f"the JSON schema has more than {SCHEMA_NODES_LIMIT} parts (enum values "
                "included); simplify it"
            )
        if isinstance(node, dict):
            pattern = node.get("pattern")
            if isinstance(pattern, str) and len(pattern) > PATTERN_LIMIT:
                raise ConfigurationError(
                    f"a 'pattern' of the JSON schema is {len(pattern)} characters; at most "
                    f"{PATTERN_LIMIT} are accepted"
                )
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    problem = _Finite(schema).unsatisfiable(schema)
    if problem is not None:
        raise ConfigurationError(
            f"no finite JSON value satisfies this schema: {problem}. Make the recursion "
            "optional (leave the property out of 'required', or allow null / an empty array)"
        )


class _Finite:
    """Whether a schema has a finite instance (a least fixed point over its $refs)."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self.active: list[str] = []
        self.visits = 0

    def unsatisfiable(self, node: Any, where: str = "the value") -> str | None:
        """Why no finite value satisfies `node` (None if one does), as far as the checks see."""
        self.visits += 1
        if self.visits > SCHEMA_NODES_LIMIT * 4:
            raise ConfigurationError("the JSON schema is too complex to check; simplify it")
        if node is False:
            return f"{where} is given the schema false"
        if not isinstance(node, dict):
            return None
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#"):
            if ref in self.active:
                return f"{where} must contain itself again ($ref {ref!r}, required at every level)"
            target = self._resolve(ref)
            if target is not None:
                self.active.append(ref)
                try:
                    problem = self.unsatisfiable(target, where)
                finally:
                    self.active.pop()
                if problem is not None:
                    return problem
        for key in ("allOf",):
            for _i, sub in enumerate(node.get(key) or []):
                problem = self.unsatisfiable(sub, where)
                if problem is not None:
                    return problem
        for key in ("anyOf", "oneOf"):
            branches = node.get(key)
            if isinstance(branches, list) and branches:
                problems = [self.unsatisfiable(b, where) for b in branches]
                if all(p is not None for p in problems):
                    return problems[0]
        if "const" in node or "enum" in node:
            return f"{where} has an empty enum" if node.get("enum") == [] else None
        kinds = node.get("type")
        kinds = kinds if isinstance(kinds, list) else [kinds]
        problems = [self._typed(k, node, where) for k in kinds]
        return None if any(p is None for p in problems) else problems[0]

    def _typed(self, kind: Any, node: dict, where: str) -> str | None:
        if kind == "object" or (kind is None and "properties" in node):
            props = node.get("properties") or {}
            extra = node.get("additionalProperties")
            for key in node.get("required") or []:
                sub = props.get(key, extra if isinstance(extra, dict) else True)
                problem = self.unsatisfiable(sub, f"property {key!r} of {where}")
                if problem is not None:
                    return problem
        elif kind == "array" or (kind is None and "items" in node):
            need = node.get("minItems", 0)
            prefix = node.get("prefixItems") or []
            need = need if isinstance(need, int) else 0
            for i in range(min(need, len(prefix))):
                problem = self.unsatisfiable(prefix[i], f"item {i} of {where}")
                if problem is not None:
                    return problem
            items = node.get("items")
            if need > len(prefix) and isinstance(items, dict | bool):
                return self.unsatisfiable(items, f"an item of {where}")
        return None

    def _resolve(self, ref: str) -> Any:
        node: Any = self.root
        for part in ref[1:].lstrip("/").split("/") if ref != "#" else []:
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return None
        return node


# --------------------------------------------------------------------------- vocabulary


BACKENDS = ("llguidance", "xgrammar")
BACKEND_ENV = "INTERNVL_AGENT_GRAMMAR_BACKEND"


def _xgr() -> Any:
    try:
        import xgrammar
    except ImportError as exc:
        raise ConfigurationError(
            "the xgrammar grammar backend is not installed: pip install 'internvl-agent[xgrammar]'"
            " or use backend='llguidance' (the default)"
        ) from exc
    return xgrammar


def _llg() -> Any:
    try:
        import llguidance
        import llguidance.hf
        import llguidance.torch
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ConfigurationError(
            "constrained decoding needs llguidance: pip install llguidance"
        ) from exc
    return llguidance


def resolve_backend(backend: str | None = None) -> str:
    """The grammar backend to use: `backend`, else $INTERNVL_AGENT_GRAMMAR_BACKEND, else
    llguidance (the core dependency; xgrammar is the optional ``xgrammar`` extra)."""
    import os

    name = (backend or os.environ.get(BACKEND_ENV) or "llguidance").strip().lower()
    if name not in BACKENDS:
        raise ConfigurationError(
            f"unknown grammar backend {name!r}; choose one of: {', '.join(BACKENDS)}"
        )
    return name


class _XgrMatcher:
    """The matcher interface the closer and rows use, on xgrammar."""

    def __init__(self, compiled: Any, stops: list[int] | None) -> None:
        self._m = _xgr().GrammarMatcher(compiled, override_stop_tokens=stops)

    def accept_token(self, token: int) -> bool:
        return bool(self._m.accept_token(token))

    def accept_string(self, data: bytes) -> bool:
        return bool(self._m.accept_string(data))

    def rollback(self, n: int) -> None:
        self._m.rollback(n)

    def is_completed(self) -> bool:
        return bool(self._m.is_completed())

    def forced_bytes(self) -> bytes:
        return self._m.find_jump_forward_string().encode("utf-8", errors="ignore")

    def forced_tokens(self) -> list[int]:
        return list(self._m.find_jump_forward_tokens())

    def fill_next_token_bitmask(self, bitmask: torch.Tensor, index: int = 0) -> None:
        self._m.fill_next_token_bitmask(bitmask, index)


class _LlgMatcher:
    """The matcher interface the closer and rows use, on llguidance (never enters its error
    state: tokens are validated before they are consumed)."""

    def __init__(self, tokenizer: Any, grammar: str, limits: Any) -> None:
        self._tokenizer = tokenizer
        self._m = _llg().LLMatcher(tokenizer, grammar, log_level=0, limits=limits)
        if self._m.is_error():
            raise ConfigurationError(
                f"cannot turn the JSON schema into a grammar: {self._m.get_error()}"
            )

    def accept_token(self, token: int) -> bool:
        if self._m.validate_tokens([token]) != 1:
            return False
        return bool(self._m.consume_token(token))

    def accept_string(self, data: bytes) -> bool:
        tokens = self._tokenizer.tokenize_bytes(data) if data else []
        return self._m.try_consume_tokens(tokens) == len(tokens)

    def rollback(self, n: int) -> None:
        self._m.rollback(n)

    def is_completed(self) -> bool:
        return bool(self._m.is_stopped()) and not self._m.is_error()

    def forced_bytes(self) -> bytes:
        return bytes(self._m.compute_ff_bytes())

    def forced_tokens(self) -> list[int]:
        return list(self._m.compute_ff_tokens())

    def fill_next_token_bitmask(self, bitmask: torch.Tensor, index: int = 0) -> None:
        _llg().torch.fill_next_token_bitmask(self._m, bitmask, index)


def _allocate_bitmask(rows: int, vocab_size: int) -> torch.Tensor:
    """An all-ones int32 bitmask (both backends use this layout: bit j of word i is id 32i+j)."""
    return torch.full(((rows, (vocab_size + 31) // 32)), -1, dtype=torch.int32)


# Bytes the greedy closer tries, best first, by lexical context.
_LETTERS = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_PRINTABLE = bytes(range(0x20, 0x7F))


def _order(*groups: bytes) -> bytes:
    seen: dict[int, None] = {}
    for group in (*groups, _PRINTABLE):
        for b in group:
            seen.setdefault(b, None)
    return bytes(seen)


_PRIORITY = {
    "string": _order(b'"', _LETTERS, b"0123456789_-. "),
    "escape": _order(b'"'),
    "hex": _order(b"0123456789abcdefABCDEF"),
    "number": _order(b"}],", b"0123456789"),
    "value": _order(b'}]0"tnf-,:[{', _LETTERS),
}


def _pack(allowed: torch.Tensor) -> torch.Tensor:
    """An xgrammar-layout int32 bitmask row from a boolean vocabulary mask."""
    padded = torch.zeros((allowed.numel() + 31) // 32 * 32, dtype=torch.int64)
    padded[: allowed.numel()] = allowed.long()
    words = (padded.view(-1, 32) << torch.arange(32)).sum(dim=1)
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)


def _unpack(bitmask: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Boolean [rows, vocab_size] view of an xgrammar int32 bitmask."""
    shifts = torch.arange(32, dtype=torch.int32, device=bitmask.device)
    bits = (bitmask.unsqueeze(-1) >> shifts) & 1
    return bits.reshape(bitmask.shape[0], -1)[:, :vocab_size].bool()


class _Vocab:
    """Per-(tokenizer, vocab size, backend) data: token bytes, compiler, grammar cache."""

    def __init__(self, tokenizer: Any, vocab_size: int, backend: str) -> None:
        self.vocab_size = vocab_size
        self.backend = backend
        self.tokenizer = tokenizer
        if backend == "xgrammar":
            xgr = _xgr()
            self.info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
            self.compiler = xgr.GrammarCompiler(self.info, max_threads=2, cache_enabled=False)
            self.token_bytes: list[bytes] = list(self.info.decoded_vocab)
            backend_special = set(self.info.special_token_ids)
        else:
            llg = _llg()
            self.info = llg.hf.from_tokenizer(tokenizer, n_vocab=vocab_size)
            self.limits = llg.LLParserLimits(
                max_grammar_size=GRAMMAR_SIZE_LIMIT, initial_lexer_fuel=LEXER_FUEL_LIMIT
            )
            self.token_bytes = [
                b"" if self.info.is_special_token(t) else self.info.decode_bytes([t])
                for t in range(vocab_size)
            ]
            backend_special = {t for t in range(vocab_size) if self.info.is_special_token(t)}
        # Added tokens are protocol markers (<|im_end|>, <img>, <tool_call>...), never JSON text.
        banned = set(getattr(tokenizer, "all_special_ids", []) or [])
        banned |= {int(t) for t in getattr(tokenizer, "added_tokens_decoder", {}) or {}}
        banned |= backend_special
        self.banned = torch.tensor(sorted(t for t in banned if t < vocab_size), dtype=torch.long)
        allowed = torch.ones(vocab_size, dtype=torch.bool)
        allowed[self.banned] = False
        allowed[len(tokenizer) :] = False  # lm_head padding ids
        self.allowed_bits = _pack(allowed)
        self.by_bytes: dict[bytes, int] = {}
        for tid, data in enumerate(self.token_bytes):
            if data and tid not in banned and tid < len(tokenizer):
                self.by_bytes.setdefault(data, tid)
        self.max_token_len = max((len(b) for b in self.by_bytes), default=1)
        self.closers = {self.by_bytes[b] for b in (b'"', b"}", b"]") if b in self.by_bytes}
        self.priority = {
            ctx: [self.by_bytes[bytes([b])] for b in order if bytes([b]) in self.by_bytes]
            for ctx, order in _PRIORITY.items()
        }
        self._grammars: LRU[str, Any] = LRU(GRAMMAR_CACHE_SIZE)

    def compile(self, schema: dict, separators: tuple[str, str]) -> Any:
        """The compiled grammar of `schema` (LRU-cached by schema JSON and separators)."""
        key = json.dumps([schema, separators], ensure_ascii=False)
        cached = self._grammars.get(key)
        if cached is not None:
            return cached
        try:
            if self.backend == "xgrammar":
                compiled = self.compiler.compile_json_schema(
                    json.dumps(schema, ensure_ascii=False),
                    any_whitespace=False,
                    separators=separators,
                    strict_mode=True,
                )
            else:
                compiled = self._llg_grammar(schema, separators)
        except (RuntimeError, ValueError, TypeError) as exc:
            raise ConfigurationError(f"cannot turn the JSON schema into a grammar: {exc}") from exc
        self._grammars.put(key, compiled)
        return compiled

    def _llg_grammar(self, schema: dict, separators: tuple[str, str]) -> str:
        llg = _llg()
        options = {
            "whitespace_flexible": False,
            "item_separator": separators[0],
            "key_separator": separators[1],
            "coerce_one_of": True,  # oneOf as anyOf, as xgrammar does
        }
        body = _strict({k: v for k, v in schema.items() if k != "x-guidance"})
        grammar = llg.LLMatcher.grammar_from_json_schema(
            json.dumps(body, ensure_ascii=False), overrides=options
        )
        is_error, messages = llg.LLMatcher.validate_grammar_with_warnings(
            grammar, self.info, limits=self.limits
        )
        if is_error:
            raise ValueError("; ".join(messages))
        return grammar

    def new_matcher(self, compiled: Any, stops: list[int] | None) -> Any:
        if self.backend == "xgrammar":
            return _XgrMatcher(compiled, stops)
        return _LlgMatcher(self.info, compiled, self.limits)


def _strict(node: Any) -> Any:
    """`node` with ``additionalProperties: false`` on every object schema that does not say
    (xgrammar's strict mode: the grammar allows exactly the listed properties)."""
    if isinstance(node, list):
        return [_strict(v) for v in node]
    if not isinstance(node, dict):
        return node
    literal = ("const", "enum", "default", "examples")
    out = {k: v if k in literal else _strict(v) for k, v in node.items()}
    if "properties" in out and not {"additionalProperties", "patternProperties"} & set(out):
        out["additionalProperties"] = False
    return out


_VOCABS: weakref.WeakKeyDictionary[Any, dict[tuple[int, str], _Vocab]] = weakref.WeakKeyDictionary()
_VOCABS_LOCK = threading.Lock()


def _vocab_for(tokenizer: Any, vocab_size: int, backend: str | None = None) -> _Vocab:
    name = resolve_backend(backend)
    with _VOCABS_LOCK:
        per_key = _VOCABS.setdefault(tokenizer, {})
        if (vocab_size, name) not in per_key:
            per_key[(vocab_size, name)] = _Vocab(tokenizer, vocab_size, name)
        return per_key[(vocab_size, name)]


# --------------------------------------------------------------------------- closing paths

# Lexical state of the JSON text: (in a string, escape, after a number byte).
# escape: 0 none, -1 just after a backslash, k > 0 hex digits of \\uXXXX still due.
Lex = tuple[bool, int, bool]
START: Lex = (False, 0, False)
_NUMBER_BYTES = frozenset(b"0123456789.eE+-")


def _lex_feed(state: Lex, data: bytes) -> Lex:
    in_string, escape, number = state
    for ch in data:
        if in_string:
            if escape == -1:
                escape = 4 if ch == 0x75 else 0  # \u
            elif escape > 0:
                escape -= 1
            elif ch == 0x5C:  # backslash
                escape = -1
            elif ch == 0x22:  # quote
                in_string = False
        elif ch == 0x22:
            in_string, number = True, False
        else:
            number = ch in _NUMBER_BYTES
    return in_string, escape, number


def _lex_context(state: Lex) -> str:
    in_string, escape, number = state
    if in_string:
        return "escape" if escape == -1 else "hex" if escape > 0 else "string"
    return "number" if number else "value"


class _Closer:
    """Finds closing paths on a live matcher, then rolls it back.

    At each step: the longest token of the grammar's forced text if there is some; else the
    first allowed byte of the context's priority list when it closes something (``"``, ``}``,
    ``]``); else the best of the first few allowed bytes, judged by a plain greedy completion
    after each (one level of lookahead: it picks ``null`` over an object, the short tool name
    over the long one...). The path is a pure function of the matcher state, so the path from
    the state after its first token is the rest of it.
    """

    def __init__(self, vocab: _Vocab) -> None:
        self.vocab = vocab

    def path(
        self, matcher: Any, lex: Lex, limit: int, *, lookahead: bool = True
    ) -> tuple[int | None, int | None]:
        """(length, first token) of the closing path, or (None, None) if longer than `limit`."""
        steps, first = 0, None
        try:
            while not matcher.is_completed():
                if steps >= limit:
                    return None, None
                token = self._advance(matcher, lex, lookahead)
                if token is None:
                    return None, None
                steps += 1
                first = token if first is None else first
                lex = _lex_feed(lex, self.vocab.token_bytes[token])
            return steps, first
        finally:
            if steps:
                matcher.rollback(steps)

    def _advance(self, matcher: Any, lex: Lex, lookahead: bool) -> int | None:
        """Accept the closer's next token on `matcher` and return it (None if stuck)."""
        vocab = self.vocab
        data = matcher.forced_bytes()
        if data:
            for n in range(min(len(data), vocab.max_token_len), 0, -1):
                token = vocab.by_bytes.get(data[:n])
                if token is not None and matcher.accept_token(token):
                    return token
        options: list[int] = []
        for token in vocab.priority[_lex_context(lex)]:
            if not matcher.accept_token(token):
                continue
            if not lookahead or (not options and token in vocab.closers):
                return token
            matcher.rollback(1)
            options.append(token)
            if len(options) > _LOOKAHEAD_OPTIONS:
                break  # a free choice (string text, digits): the first one will do
        if not options:
            return self._any_allowed(matcher)
        best, best_len = options[0], _LOOKAHEAD_LIMIT
        if len(options) <= _LOOKAHEAD_OPTIONS:
            for token in options:
                matcher.accept_token(token)
                next_lex = _lex_feed(lex, vocab.token_bytes[token])
                length, _ = self.path(matcher, next_lex, best_len - 1, lookahead=False)
                matcher.rollback(1)
                if length is not None and length + 1 < best_len:
                    best, best_len = token, length + 1
        matcher.accept_token(best)
        return best

    def _any_allowed(self, matcher: Any) -> int | None:
        bitmask = _allocate_bitmask(1, self.vocab.vocab_size)
        matcher.fill_next_token_bitmask(bitmask)
        bitmask &= self.vocab.allowed_bits
        for token in _unpack(bitmask, self.vocab.vocab_size)[0].nonzero().flatten().tolist():
            if self.vocab.token_bytes[token] and matcher.accept_token(token):
                return token
        return None


_NUMPY_FLOATS = (torch.float16, torch.float32, torch.float64)


def apply_bitmask(
    scores: torch.Tensor, bitmask: torch.Tensor, rows: Sequence[int], vocab_size: int
) -> None:
    """Set to -inf the scores of `rows` whose bit is 0 in `bitmask`, and ids >= vocab_size.

    On CPU (numpy views, no copies) a row that allows few tokens (a JSON structural position)
    is rebuilt from its allowed ids, others are unpacked whole. Elsewhere the mask is unpacked
    on the scores' device. Used for both backends' masks (same layout); with xgrammar it also
    avoids xgrammar 0.2.8's CPU kernel, which writes -inf one element past `vocab_size`, i.e.
    into the next row or past the tensor.
    """
    width = min(vocab_size, scores.shape[-1])
    rows = list(rows)
    if scores.device.type == "cpu" and scores.dtype in _NUMPY_FLOATS:
        bits, values = bitmask.numpy(), scores.detach().numpy()
        for i in rows:
            words = bits[i]
            used = np.flatnonzero(words)
            if used.size * 8 < words.size:
                unpacked = np.unpackbits(words[used].view(np.uint8), bitorder="little")
                ids = (used[:, None] * 32 + np.arange(32)).ravel()[unpacked.view(bool)]
                ids = ids[ids < width]
                kept = values[i, ids]
                values[i, :] = -np.inf
                values[i, ids] = kept
            else:
                allowed = np.unpackbits(words.view(np.uint8), bitorder="little")[:width]
                np.putmask(values[i, :width], ~allowed.view(bool), -np.inf)
    else:
        index = torch.tensor(rows, device=scores.device)
        allowed_rows = _unpack(bitmask[rows].to(scores.device), width)
        scores[index, :width] = scores[index, :width].masked_fill(~allowed_rows, float("-inf"))
    if scores.shape[-1] > width:
        scores[rows, width:] = float("-inf")


# --------------------------------------------------------------------------- constraints


class JsonConstraint:
    """A JSON schema compiled for one tokenizer; share it across any number of generations.

    `vocab_size` is the model's (``config.vocab_size``, the logits width); it may exceed
    ``len(tokenizer)`` (InternVL3: 151674 vs 151665) and the extra ids are never allowed.
    Compiled grammars are cached (LRU) per tokenizer, keyed by the schema JSON and separators.
    """

    def __init__(
        self,
        tokenizer: Any,
        schema: dict,
        *,
        vocab_size: int,
        prefix: str = "",
        suffix: str = "",
        separators: tuple[str, str] = DEFAULT_SEPARATORS,
        backend: str | None = None,
    ) -> None:
        if vocab_size < len(tokenizer):
            raise ConfigurationError(
                f"vocab_size={vocab_size} is smaller than the tokenizer ({len(tokenizer)} "
                "tokens); pass the model's config.vocab_size"
            )
        self.schema = schema
        self.prefix, self.suffix = prefix, suffix
        self.separators: tuple[str, str] = (separators[0], separators[1])
        self.vocab_size = vocab_size
        check_schema(schema)
        self.vocab = _vocab_for(tokenizer, vocab_size, backend)
        self.backend = self.vocab.backend
        self.prefix_ids: list[int] = tokenizer.encode(prefix, add_special_tokens=False)
        self.suffix_ids: list[int] = tokenizer.encode(suffix, add_special_tokens=False)
        self._compiled = self.vocab.compile(schema, self.separators)
        self.closer = _Closer(self.vocab)
        self.max_closing_tokens: int | None = closing_bound(schema, separators=self.separators)
        length, _ = self.closer.path(self.new_matcher(), START, _PATH_LIMIT)
        if length is None:
            raise ConfigurationError(
                f"found no way to complete a JSON value for this schema within {_PATH_LIMIT} "
                "tokens; check that it can be satisfied and that its required parts are not "
                "too long"
            )
        self.json_min_tokens: int = length
        self.min_tokens: int = len(self.prefix_ids) + length + len(self.suffix_ids)

    def new_matcher(self, eos_token_ids: Iterable[int] | None = None) -> Any:
        """A fresh matcher at the start of the JSON value."""
        stops = list(eos_token_ids or []) or None
        return self.vocab.new_matcher(self._compiled, stops)

    def closing_length(self, text: str) -> int | None:
        """Tokens of the closing path after JSON text `text`; None if `text` is not a prefix."""
        matcher = self.new_matcher()
        data = text.encode()
        if data and not matcher.accept_string(data):
            return None
        length, _ = self.closer.path(matcher, _lex_feed(START, data), _PATH_LIMIT)
        return length


class _Row:
    """Decoding state of one constrained batch row: prefix, JSON, suffix, then EOS.

    Tokens the row is *forced* to take (`forced`) are the same whether they are appended one
    forward pass each (masking) or several at once (jump-forward): the prefix, the grammar's
    forced text in the backend's tokenization (only while the row is not in closing mode: there
    the closer decides), the suffix and EOS.
    """

    def __init__(self, constraint: JsonConstraint, eos_token_ids: list[int], budget: int) -> None:
        self.constraint = constraint
        self.matcher = constraint.new_matcher(eos_token_ids)
        self.budget = budget
        self.generated = 0
        self.lex: Lex = START
        self.prefix_left = list(constraint.prefix_ids)
        self.suffix_left = list(constraint.suffix_ids)
        self.json_done = False
        self.done = False
        self._ff: list[int] | None = None  # the grammar's forced tokens at this state

    @property
    def remaining(self) -> int:
        """New tokens left for the JSON value (the suffix's are set aside)."""
        return self.budget - self.generated - len(self.suffix_left)

    def closing_mode(self) -> bool:
        bound = self.constraint.max_closing_tokens
        if bound is not None:
            return self.remaining - 1 < bound
        length, _ = self.constraint.closer.path(self.matcher, self.lex, self.remaining)
        return length is None or self.remaining - 1 < length + FALLBACK_MARGIN

    def forced(self) -> int | None:
        """The prefix, suffix or EOS token (-1) this row must take next, if any."""
        if self.prefix_left:
            return self.prefix_left[0]
        if self.json_done:
            return self.suffix_left[0] if self.suffix_left else -1
        return None

    def grammar_forced(self) -> int | None:
        """The next token of the grammar's forced text, if any (not for closing mode)."""
        if self._ff is None:
            self._ff = self.matcher.forced_tokens()
        return self._ff[0] if self._ff else None

    def accept(self, token: int, eos: set[int]) -> None:
        """Advance past the sampled `token`."""
        self.generated += 1
        if self.prefix_left and token == self.prefix_left[0]:
            self.prefix_left.pop(0)
        elif self.json_done and self.suffix_left and token == self.suffix_left[0]:
            self.suffix_left.pop(0)
        elif token in eos:
            self.done = True
        elif not self.prefix_left and not self.json_done and self.matcher.accept_token(token):
            self.lex = _lex_feed(self.lex, self.constraint.vocab.token_bytes[token])
            self.json_done = self.matcher.is_completed()
            self._ff = self._ff[1:] if self._ff and self._ff[0] == token else None
        else:
            warnings.warn(
                f"token {token} was sampled outside the constraint (did another logits processor "
                "change the scores?); this row is no longer constrained",
                RuntimeWarning,
                stacklevel=3,
            )
            self.done = True


class JsonLogitsProcessor(LogitsProcessor):
    """Constrains each batch row to its JSON schema and finishes it within `max_new_tokens`.

    `max_new_tokens` is one budget for all rows or one per row (rows of a batch may have
    asked for different lengths; generate must then run with the largest). Stateful: use a
    new processor for each `generate` call. `stats` counts steps, closing-mode
    row steps, candidate checks and overruns (steps where the closing path no longer fitted:
    0 for every schema with a static bound).

    As a `transformers` logits processor it reads each step's sampled tokens from `input_ids`.
    The engine's own decode loop calls `accept` and `mask` instead, and `jump` to take a row's
    forced tokens without a forward pass each.
    """

    def __init__(
        self,
        constraints: Sequence[JsonConstraint | None],
        *,
        max_new_tokens: int | Sequence[int],
        eos_token_ids: Iterable[int],
        top_k: int = CAREFUL_TOP_K,
    ) -> None:
        self.eos = list(dict.fromkeys(int(t) for t in eos_token_ids))
        if not self.eos:
            raise ConfigurationError("constrained decoding needs at least one EOS token id")
        self.budgets = _budgets(max_new_tokens, len(constraints))
        self.top_k = top_k
        self.rows = [
            None if c is None else _Row(c, self.eos, b)
            for c, b in zip(constraints, self.budgets, strict=True)
        ]
        self._eos_set = set(self.eos)
        self._prompt_len: int | None = None
        self._bitmask: torch.Tensor | None = None
        self.stats = {"steps": 0, "closing_steps": 0, "checks": 0, "overruns": 0, "jumped": 0}

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[0] != len(self.rows):
            raise ConfigurationError(
                f"the processor has {len(self.rows)} rows but the batch has {input_ids.shape[0]}"
                " (beam search and num_return_sequences > 1 are not supported when constrained)"
            )
        if self._prompt_len is None:
            self._prompt_len = input_ids.shape[1]
        else:
            for i, token in enumerate(input_ids[:, -1].tolist()):
                self.accept(i, int(token))
        self.mask(scores)
        return scores

    def accept(self, i: int, token: int) -> None:
        """Row `i` took `token` (unconstrained and finished rows ignore it)."""
        row = self.rows[i]
        if row is not None and not row.done:
            row.accept(token, self._eos_set)

    def jump(self, i: int, limit: int) -> tuple[list[int], bool]:
        """Accept and return row `i`'s forced tokens (at most `limit`), and whether EOS is
        forced after them (the row is then complete)."""
        row = self.rows[i]
        tokens: list[int] = []
        if row is None:
            return tokens, False
        while not row.done and len(tokens) < limit:
            forced, _ = self._next_forced(row)
            if forced is None:
                break
            if forced == -1:
                return tokens, True
            row.accept(forced, self._eos_set)
            tokens.append(forced)
        self.stats["jumped"] += len(tokens)
        return tokens, False

    def mask(self, scores: torch.Tensor) -> torch.Tensor:
        """Constrain `scores` (one row per batch row) for the next token, in place."""
        self.stats["steps"] += 1
        grammar_rows, closing_rows = [], []
        for i, row in enumerate(self.rows):
            if row is None or row.done:
                continue
            forced, closing = self._next_forced(row)
            if forced is not None:
                self._force(scores, i, self.eos if forced == -1 else [forced])
                continue
            grammar_rows.append(i)
            if closing:
                closing_rows.append((i, row, row.remaining))
        if grammar_rows:
            self._apply_grammar(scores, grammar_rows)
        for i, row, remaining in closing_rows:
            self._restrict_to_safe(scores, i, row, remaining)
        return scores

    def _next_forced(self, row: _Row) -> tuple[int | None, bool]:
        """(the token `row` must take next or None, -1 for EOS; whether it is in closing mode)."""
        forced = row.forced()
        if forced is not None:
            return forced, False
        grammar = row.grammar_forced()
        if not self._closing_mode(row, row.remaining):
            return grammar, False
        # Closing mode: the grammar's forced token still, if a closing path fits after it.
        if grammar is not None and row.matcher.accept_token(grammar):
            lex = _lex_feed(row.lex, row.constraint.vocab.token_bytes[grammar])
            length, _ = row.constraint.closer.path(row.matcher, lex, row.remaining - 1)
            row.matcher.rollback(1)
            if length is not None:
                return grammar, False
        return None, True

    def _closing_mode(self, row: _Row, remaining: int) -> bool:
        return row.closing_mode()

    @staticmethod
    def _force(scores: torch.Tensor, i: int, tokens: list[int]) -> None:
        """Leave row `i` only `tokens` (made finite if another processor had banned them)."""
        if scores.device.type == "cpu" and scores.dtype in _NUMPY_FLOATS:
            values = scores.detach().numpy()[i]
            keep = values[tokens]
            keep[np.isinf(keep)] = 0.0
            values[:] = -np.inf
            values[tokens] = keep
            return
        kept = scores[i, tokens].clone()
        kept[torch.isinf(kept)] = 0.0
        scores[i] = float("-inf")
        scores[i, tokens] = kept

    def _apply_grammar(self, scores: torch.Tensor, rows: list[int]) -> None:
        first = self.rows[rows[0]]
        assert first is not None
        vocab = first.constraint.vocab
        if self._bitmask is None:
            self._bitmask = _allocate_bitmask(len(self.rows), vocab.vocab_size)
        for i in rows:
            self.rows[i].matcher.fill_next_token_bitmask(self._bitmask, i)  # type: ignore[union-attr]
        self._bitmask &= vocab.allowed_bits
        apply_bitmask(scores, self._bitmask, rows, vocab.vocab_size)

    def _restrict_to_safe(self, scores: torch.Tensor, i: int, row: _Row, remaining: int) -> None:
        """Keep the closing path's next token and the top-k tokens that still close in time."""
        self.stats["closing_steps"] += 1
        closer = row.constraint.closer
        _, first = closer.path(row.matcher, row.lex, remaining)
        if first is None:
            self.stats["overruns"] += 1
            _, first = closer.path(row.matcher, row.lex, _PATH_LIMIT)
            if first is None:
                return  # stuck: the grammar mask alone applies
        keep = [first]
        for token in _top_tokens(scores, i, self.top_k):
            if token == first or not row.matcher.accept_token(token):
                continue
            self.stats["checks"] += 1
            lex = _lex_feed(row.lex, row.constraint.vocab.token_bytes[token])
            length, _ = closer.path(row.matcher, lex, remaining - 1)
            row.matcher.rollback(1)
            if length is not None:
                keep.append(token)
        self._force(scores, i, keep)


def _top_tokens(scores: torch.Tensor, i: int, k: int) -> list[int]:
    """The ids of the (at most) `k` best finite scores of row `i`, best first."""
    if scores.device.type == "cpu" and scores.dtype in _NUMPY_FLOATS:
        values = scores.detach().numpy()[i]
        picked: list[int] = []
        saved = []
        for _ in range(k):  # k argmax passes beat a full sort or torch.topk on CPU
            j = int(values.argmax())
            if values[j] == -np.inf:
                break
            picked.append(j)
            saved.append(values[j])
            values[j] = -np.inf
        values[picked] = saved
        return picked
    top = scores[i].topk(min(k, scores.shape[-1]))
    return [t for v, t in zip(top.values.tolist(), top.indices.tolist(), strict=True) if v > -1e38]


def _budgets(max_new_tokens: int | Sequence[int], rows: int) -> list[int]:
    budgets = [max_new_tokens] * rows if isinstance(max_new_tokens, int) else list(max_new_tokens)
    if len(budgets) != rows:
        raise ConfigurationError(f"{len(budgets)} max_new_tokens values for {rows} batch rows")
    return budgets


def make_logits_processor(
    constraints: Sequence[JsonConstraint | None],
    *,
    max_new_tokens: int | Sequence[int],
    eos_token_ids: int | Iterable[int],
) -> JsonLogitsProcessor:
    """A `transformers.LogitsProcessor` for one `generate` call: one constraint per batch row.

    None leaves a row unconstrained. `max_new_tokens` is the budget of every row, or one per
    row. Raises ConfigurationError when a constrained row cannot be completed within its
    budget even along its shortest closing path.
    """
    eos = [eos_token_ids] if isinstance(eos_token_ids, int) else list(eos_token_ids)
    for constraint, budget in zip(
        constraints, _budgets(max_new_tokens, len(constraints)), strict=True
    ):
        if constraint is not None and constraint.min_tokens > budget:
            raise ConfigurationError(
                f"this JSON schema needs at least {constraint.min_tokens} new tokens to be "
                f"completed, but max_new_tokens={budget}; raise max_new_tokens"
            )
    return JsonLogitsProcessor(constraints, max_new_tokens=max_new_tokens, eos_token_ids=eos)

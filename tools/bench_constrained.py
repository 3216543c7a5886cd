"""Benchmark constrained JSON decoding: xgrammar vs llguidance, and our budget-aware processor.

Run: ``.venv/bin/python tools/bench_constrained.py`` (about 2 minutes the first time: it trains
a ~150k-token byte-level BPE tokenizer offline and caches it under ``.cache/bench/``).

It measures, on the tiny checkpoint's tokenizer (528 tokens) and on the big one:

1. setup: tokenizer preparation and grammar compilation (ms);
2. per-token overhead of a logits processor (µs/token), teacher-forcing the same valid tool call
   into each library's matcher against a logits row as wide as the vocabulary: mask fill,
   token accept and mask application (the same code for both: our `apply_bitmask`), with a
   lm_head padded by 8 ids like InternVL3's; then our product processor (xgrammar + budget
   logic) far from the budget and with a tight budget (closing mode);
3. end-to-end ``model.generate`` tokens/s on the tiny checkpoint without and with each
   constraint (sampling, a schema with a free-text field so rows run to the budget).

Results on the development machine (2 CPU cores shared with other jobs, 1 torch thread;
torch 2.13 CPU, xgrammar 0.2.8, llguidance 1.9.1), medians of a typical run (run-to-run
spread ~20%; the ratios hold):

    tokenizer  vocab    library     tok prep  compile   fill  accept  apply*  total  µs/token
    tiny       536      xgrammar      1.3 ms   1.7 ms    1.4     1.1    15     17
    tiny       536      llguidance    4.0 ms   1.2 ms   11.6     1.3    11     24
    big        150024   xgrammar      552 ms    17 ms    4.6     1.9    87     93
    big        150024   llguidance   1377 ms   3.6 ms   25.7     2.7   137    165
    (* the same code applies both masks; llguidance's are costlier to apply here because
     they are less often all-or-nothing)

    mask computation (fill): llguidance / xgrammar = 8.2x (tiny), 5.6x (big); whole
    per-token overhead: 1.40x and 1.77x.
    Ours (xgrammar + budget logic): 28 / 162 µs per token far from the budget and
    0.20 / 0.38 ms per token in closing mode (tiny / big vocabulary).
    End to end on the tiny checkpoint (sampling, 96 new tokens), time per token vs none:
    within noise (x0.97-1.07 for all three); the processors take 6.4% (xgrammar), 6.8%
    (llguidance) and 7.7% (ours) of the time of a ~1.5 ms tiny-model step, far less of a
    real model's step.

Rerun 2026-12-01 (machine under heavy load; see docs/benchmarks.md): at 150k tokens the
product processor costs 193 µs/token on llguidance and 210 on xgrammar far from the budget
(588 / 406 in closing mode), although xgrammar fills raw masks faster. llguidance needs no
triton (core install 1205 MB vs 2258 MB, tools/measure_install.py), so it is the core backend
and xgrammar the optional ``xgrammar`` extra; "ours" below runs the default backend.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForImageTextToText,
    AutoTokenizer,
    LogitsProcessor,
    LogitsProcessorList,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from internvl_agent.engine.constrained import (  # noqa: E402
    DEFAULT_SEPARATORS,
    JsonConstraint,
    apply_bitmask,
    make_logits_processor,
    tool_call_schema,
)
from internvl_agent.engine.tiny import (  # noqa: E402
    SPECIAL_TOKENS,
    TOOL_TOKENS,
    write_random_checkpoint,
)

CLICK_TOOL = {
    "type": "function",
    "function": {
        "name": "click",
        "description": "Click a screen element.",
        "parameters": {
            "type": "object",
            "properties": {
                "x": {"type": "integer"},
                "y": {"type": "integer"},
                "element": {"type": "string"},
                "button": {"enum": ["left", "right", "middle"]},
                "double": {"type": "boolean"},
                "modifiers": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["x", "y", "element"],
        },
    },
}
TYPE_TOOL = {
    "type": "function",
    "function": {
        "name": "type_text",
        "description": "Type text.",
        "parameters": {
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
        },
    },
}
SCHEMA = tool_call_schema([CLICK_TOOL, TYPE_TOOL])
TARGET = {
    "name": "click",
    "arguments": {
        "x": 512,
        "y": 384,
        "element": "the blue Search button at the top of the page, next to the login form",
        "button": "left",
        "double": False,
        "modifiers": ["ctrl", "shift"],
    },
}
E2E_SCHEMA = TYPE_TOOL["function"]["parameters"]
SEPARATORS = DEFAULT_SEPARATORS


# --------------------------------------------------------------------------- tokenizers


def _words(rng: random.Random, n: int) -> list[str]:
    syllables = [c + v for c in "bcdfghjklmnprstvwxyz" for v in "aeiou"]
    syllables += ["th", "ch", "sh", "qu", "ing", "ed", "er", "tion", "ly", "ment"]
    words = {"".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(n)}
    return sorted(words)


def _corpus(rng: random.Random, words: list[str], lines: int):
    for _ in range(lines):
        k = rng.randint(5, 30)
        ws = [
            words[min(int(rng.paretovariate(0.6)) - 1, len(words) - 1)]
            if rng.random() < 0.5
            else rng.choice(words)
            for _ in range(k)
        ]
        ws = [w.capitalize() if rng.random() < 0.1 else w for w in ws]
        if rng.random() < 0.3:
            yield json.dumps({ws[0]: " ".join(ws[1:]), "n": rng.randint(0, 100000)})
        else:
            yield " ".join(ws)


def big_tokenizer(cache: Path, vocab_size: int) -> Any:
    """A byte-level BPE tokenizer with ~`vocab_size` tokens, trained offline (cached)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    path = cache / f"bigtok-{vocab_size}"
    if (path / "tokenizer.json").exists():
        return AutoTokenizer.from_pretrained(path)
    print(f"training a {vocab_size}-token BPE tokenizer (cached in {path}) ...", flush=True)
    rng = random.Random(0)
    words = _words(rng, 400_000)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(rng, words, 400_000), trainer=trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TOOL_TOKENS])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    fast.save_pretrained(path)
    return fast


# --------------------------------------------------------------------------- libraries


def _apply(scores: torch.Tensor, bitmask: torch.Tensor, vocab_size: int) -> None:
    """The shared mask application (ours; both libraries use xgrammar's bitmask layout)."""
    apply_bitmask(scores, bitmask, [0], vocab_size)


class XgrLib:
    """Plain xgrammar masking (no budget logic)."""

    name = "xgrammar"

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        import xgrammar as xgr

        self.xgr, self.vocab_size = xgr, vocab_size
        self.info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
        self.compiler = xgr.GrammarCompiler(self.info, max_threads=2, cache_enabled=False)

    def compile(self, schema: dict) -> Any:
        return self.compiler.compile_json_schema(
            schema, any_whitespace=False, separators=SEPARATORS
        )

    def matcher(self, compiled: Any) -> Any:
        return self.xgr.GrammarMatcher(compiled)

    def bitmask(self, rows: int) -> torch.Tensor:
        return self.xgr.allocate_token_bitmask(rows, self.vocab_size)

    def fill(self, matcher: Any, bitmask: torch.Tensor, row: int) -> None:
        matcher.fill_next_token_bitmask(bitmask, row)

    def accept(self, matcher: Any, token: int) -> bool:
        return matcher.accept_token(token)


class LlgLib:
    """Plain llguidance masking (no budget logic)."""

    name = "llguidance"

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        import llguidance
        import llguidance.hf
        import llguidance.torch

        self.llg, self.llg_torch, self.vocab_size = llguidance, llguidance.torch, vocab_size
        self.tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size)

    def compile(self, schema: dict) -> Any:
        grammar = self.llg.LLMatcher.grammar_from_json_schema(
            schema,
            defaults={
                "whitespace_flexible": False,
                "item_separator": SEPARATORS[0],
                "key_separator": SEPARATORS[1],
            },
        )
        self.llg.LLMatcher(self.tokenizer, grammar)  # compile once, like xgrammar
        return grammar

    def matcher(self, compiled: Any) -> Any:
        matcher = self.llg.LLMatcher(self.tokenizer, compiled)
        assert not matcher.is_error(), matcher.get_error()
        return matcher

    def bitmask(self, rows: int) -> torch.Tensor:
        return torch.full(((rows, (self.vocab_size + 31) // 32)), -1, dtype=torch.int32)

    def fill(self, matcher: Any, bitmask: torch.Tensor, row: int) -> None:
        self.llg_torch.fill_next_token_bitmask(matcher, bitmask, row)

    def accept(self, matcher: Any, token: int) -> bool:
        return matcher.consume_token(token)


class PlainProcessor(LogitsProcessor):
    """A minimal one-row masking processor over a library (for end-to-end timings)."""

    def __init__(self, lib: Any, compiled: Any, eos: int) -> None:
        self.lib, self.matcher, self.eos = lib, lib.matcher(compiled), eos
        self.bitmask = lib.bitmask(1)
        self.started = False

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.started:
            token = int(input_ids[0, -1])
            if token != self.eos:
                self.lib.accept(self.matcher, token)
        self.started = True
        self.lib.fill(self.matcher, self.bitmask, 0)
        _apply(scores, self.bitmask, self.lib.vocab_size)
        return scores


# --------------------------------------------------------------------------- measurements


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def setup_costs(lib_cls: type, tokenizer: Any, vocab_size: int) -> tuple[Any, float, float]:
    """The library wrapper, and ms to prepare the tokenizer and to compile SCHEMA (warm)."""
    lib_cls(tokenizer, vocab_size).compile(SCHEMA)  # imports and lazy initialisation
    t0 = time.perf_counter()
    lib = lib_cls(tokenizer, vocab_size)
    t1 = time.perf_counter()
    lib.compile(SCHEMA)
    t2 = time.perf_counter()
    return lib, (t1 - t0) * 1e3, (t2 - t1) * 1e3


def per_token(lib: Any, tokens: list[int], repeats: int) -> dict[str, float]:
    """Median µs/token of fill, accept and apply, teacher-forcing `tokens`."""
    compiled = lib.compile(SCHEMA)
    bitmask = lib.bitmask(1)
    fill, accept, apply = [], [], []
    for _ in range(repeats):
        matcher = lib.matcher(compiled)
        for token in tokens:
            scores = torch.randn(1, lib.vocab_size)  # fresh logits, as from a model
            t0 = time.perf_counter()
            lib.fill(matcher, bitmask, 0)
            t1 = time.perf_counter()
            _apply(scores, bitmask, lib.vocab_size)
            t2 = time.perf_counter()
            assert lib.accept(matcher, token)
            t3 = time.perf_counter()
            fill.append(t1 - t0)
            apply.append(t2 - t1)
            accept.append(t3 - t2)
    out = {"fill": _median_us(fill), "accept": _median_us(accept), "apply": _median_us(apply)}
    out["total"] = out["fill"] + out["accept"] + out["apply"]
    return out


def product_per_token(
    tokenizer: Any,
    vocab_size: int,
    tokens: list[int],
    repeats: int,
    budget: int,
    backend: str = "llguidance",
) -> tuple[float, dict[str, int]]:
    """Median µs/token of our processor's __call__, teacher-forcing `tokens` with `budget`."""
    constraint = JsonConstraint(tokenizer, SCHEMA, vocab_size=vocab_size, backend=backend)
    eos = tokenizer.eos_token_id
    prompt = torch.tensor([[eos]])
    times: list[float] = []
    stats: dict[str, int] = {}
    for _ in range(repeats):
        proc = make_logits_processor([constraint], max_new_tokens=budget, eos_token_ids=[eos])
        ids = prompt
        for token in tokens:
            scores = torch.randn(1, vocab_size)
            t0 = time.perf_counter()
            proc(ids, scores)
            times.append(time.perf_counter() - t0)
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
        stats = proc.stats
    return _median_us(times), stats


class Timed(LogitsProcessor):
    """Wraps a processor and adds up the time spent in it."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.seconds = inner, 0.0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        t0 = time.perf_counter()
        out = self.inner(input_ids, scores)
        self.seconds += time.perf_counter() - t0
        return out


E2E_KINDS = ("none", "xgrammar", "llguidance", "ours")


def end_to_end(checkpoint: Path, new_tokens: int, repeats: int) -> dict[str, dict[str, float]]:
    """Per kind, medians over rounds: tokens/s, new tokens, share of time in the processor,
    and time per token relative to unconstrained generation in the same round.

    Kinds run interleaved, round after round, so load changes on the machine hit all alike.
    "none" gets min_new_tokens so that it generates as many tokens as the constrained runs.
    """
    model = AutoModelForImageTextToText.from_pretrained(checkpoint).eval()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    vocab_size = model.config.text_config.vocab_size
    eos = tokenizer.eos_token_id
    prompt = tokenizer(
        "<|im_start|>user\nType hello<|im_end|>\n<|im_start|>assistant\n", return_tensors="pt"
    )
    libs = {"xgrammar": XgrLib(tokenizer, vocab_size), "llguidance": LlgLib(tokenizer, vocab_size)}
    compiled = {name: lib.compile(E2E_SCHEMA) for name, lib in libs.items()}
    constraint = JsonConstraint(tokenizer, E2E_SCHEMA, vocab_size=vocab_size)

    def make(kind: str) -> Timed | None:
        if kind == "none":
            return None
        if kind == "ours":
            return Timed(
                make_logits_processor([constraint], max_new_tokens=new_tokens, eos_token_ids=eos)
            )
        return Timed(PlainProcessor(libs[kind], compiled[kind], eos))

    samples: dict[str, dict[str, list[float]]] = {
        k: {"rate": [], "tokens": [], "share": [], "ratio": []} for k in E2E_KINDS
    }
    for r in range(repeats + 1):
        per_token: dict[str, float] = {}
        for kind in E2E_KINDS:
            torch.manual_seed(r)
            proc = make(kind)
            extra = {"min_new_tokens": new_tokens} if proc is None else {}
            t0 = time.perf_counter()
            out = model.generate(
                **prompt,
                max_new_tokens=new_tokens,
                do_sample=True,
                logits_processor=LogitsProcessorList([proc] if proc else []),
                pad_token_id=tokenizer.pad_token_id,
                **extra,
            )
            elapsed = time.perf_counter() - t0
            new = out[0, prompt["input_ids"].shape[1] :]
            if kind == "ours":
                json.loads(tokenizer.decode(new, skip_special_tokens=True))  # always complete
            per_token[kind] = elapsed / len(new)
            if r:  # round 0 warms up
                got = samples[kind]
                got["rate"].append(len(new) / elapsed)
                got["tokens"].append(len(new))
                got["share"].append(proc.seconds / elapsed if proc else 0.0)
                got["ratio"].append(per_token[kind] / per_token["none"])
    return {k: {name: statistics.median(v) for name, v in samples[k].items()} for k in E2E_KINDS}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vocab-size", type=int, default=150_000, help="big tokenizer size")
    parser.add_argument("--repeats", type=int, default=20, help="teacher-forced passes")
    parser.add_argument("--e2e-tokens", type=int, default=96, help="new tokens per generate")
    parser.add_argument("--e2e-repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "bench")
    parser.add_argument("--skip-big", action="store_true", help="tiny tokenizer only")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = write_random_checkpoint(Path(tmp) / "tiny")
        tokenizers = {"tiny": AutoTokenizer.from_pretrained(checkpoint)}
        if not args.skip_big:
            tokenizers["big"] = big_tokenizer(args.cache, args.vocab_size)
        text = json.dumps(TARGET, separators=SEPARATORS)

        print("\n== setup (ms) and per-token overhead (µs/token, median) ==")
        print(
            f"{'tokenizer':<9} {'vocab':>7} {'library':<11} {'tok prep':>9} {'compile':>8}"
            f" {'fill':>7} {'accept':>7} {'apply':>7} {'total':>7}"
        )
        for tname, tok in tokenizers.items():
            vocab_size = len(tok) + 8  # a padded lm_head, like InternVL3's 151674 > 151665
            tokens = tok.encode(text, add_special_tokens=False)
            totals = {}
            for lib_cls in (XgrLib, LlgLib):
                lib, t_prep, t_compile = setup_costs(lib_cls, tok, vocab_size)
                per_token(lib, tokens, 2)  # warm-up
                res = per_token(lib, tokens, args.repeats)
                totals[lib.name] = res
                print(
                    f"{tname:<9} {vocab_size:>7} {lib.name:<11} {t_prep:>9.1f} {t_compile:>8.1f}"
                    f" {res['fill']:>7.1f} {res['accept']:>7.1f} {res['apply']:>7.1f}"
                    f" {res['total']:>7.1f}"
                )
            fill = totals["llguidance"]["fill"] / totals["xgrammar"]["fill"]
            total = totals["llguidance"]["total"] / totals["xgrammar"]["total"]
            print(f"{'':<18}llguidance / xgrammar: fill {fill:.2f}x, total {total:.2f}x")
            for backend in ("llguidance", "xgrammar"):
                free, _ = product_per_token(
                    tok, vocab_size, tokens, args.repeats, budget=4096, backend=backend
                )
                tight, stats = product_per_token(
                    tok,
                    vocab_size,
                    tokens,
                    max(3, args.repeats // 4),
                    budget=len(tokens) + 1,
                    backend=backend,
                )
                print(
                    f"{'':<18}ours ({backend} + budget + forced tokens): {free:.1f} µs/token "
                    f"far from the budget; {tight:.1f} µs/token with budget = "
                    f"{len(tokens) + 1} tokens ({stats['closing_steps']}/{len(tokens)} steps "
                    "in closing mode)"
                )

        print(f"\n== end to end: tiny checkpoint, sampling, {args.e2e_tokens} new tokens ==")
        results = end_to_end(checkpoint, args.e2e_tokens, args.e2e_repeats)
        for kind, res in results.items():
            print(
                f"{kind:<11} {res['rate']:>7.1f} tokens/s ({res['tokens']:.0f} tokens)"
                f"  time/token x{res['ratio']:.2f} vs none"
                f"  ({100 * res['share']:.1f}% of the time in the logits processor)"
            )


if __name__ == "__main__":
    main()

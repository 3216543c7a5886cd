"""A fast tokenizer for InternLM2 / InternLM2.5 checkpoints, built from the released files.

InternVL2.5 2B/8B/26B ship their tokenizer as a sentencepiece ``tokenizer.model`` plus remote
code (``tokenization_internlm2.py``), which this package never runs. `build_internlm2_tokenizer`
builds a `PreTrainedTokenizerFast` that gives the original `InternLM2Tokenizer`'s ids:

- the sentencepiece pieces and BPE merges (ranked by piece score), following the model's own
  normalizer spec (transformers' `SpmConverter.build_tokenizer_from_spm_proto`);
- every entry of tokenizer_config.json's ``added_tokens_decoder`` at its own id: the placeholder
  pieces 92538..92543 are RENAMED to the chat specials (``<|im_end|>`` is 92542), InternVL's tags
  are appended after the sentencepiece vocabulary (``<IMG_CONTEXT>`` is 92546);
- ``<s>`` prepended to every encoded text, as `InternLM2Tokenizer.build_inputs_with_special_tokens`.

Decoding is sentencepiece's own (▁ -> space, byte fallback), lossless. The original also ran the
legacy ``clean_up_tokenization`` (" ." -> ".") on every decode; transformers 5 refuses that for
BPE tokenizers because it corrupts text, and so do we. Reading ``tokenizer.model`` needs
sentencepiece's protobuf schema (the ``protobuf`` package).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from internvl_agent.errors import CheckpointError

# Piece types of sentencepiece's ModelProto.SentencePiece.Type.
_NORMAL, _CONTROL, _USER_DEFINED = 1, 3, 4


def spm_schema() -> Any:
    """sentencepiece's protobuf schema module (sentencepiece_model_pb2)."""
    try:
        from sentencepiece import sentencepiece_model_pb2
    except ImportError as exc:  # sentencepiece or protobuf missing
        raise CheckpointError(
            f"reading a sentencepiece tokenizer.model needs the sentencepiece and protobuf "
            f"packages ({exc}): pip install sentencepiece protobuf"
        ) from exc
    return sentencepiece_model_pb2


def read_spm_proto(path: Path) -> Any:
    """The parsed sentencepiece ModelProto of `path`."""
    proto = spm_schema().ModelProto()
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception as exc:  # protobuf's DecodeError has no stable import path
        raise CheckpointError(f"{path} is not a sentencepiece model: {exc}") from exc
    return proto


def added_tokens(tokenizer_config: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """tokenizer_config.json's ``added_tokens_decoder`` as {id: entry}."""
    decoder = tokenizer_config.get("added_tokens_decoder") or {}
    return {int(i): dict(entry) for i, entry in decoder.items()}


def build_internlm2_tokenizer(source: str | Path) -> Any:
    """A `PreTrainedTokenizerFast` equal to the original InternLM2Tokenizer of `source`."""
    from tokenizers import AddedToken, processors
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import SpmConverter

    folder = Path(source)
    model_file = folder / "tokenizer.model"
    if not model_file.exists():
        raise CheckpointError(
            f"{folder} has no tokenizer.model; an InternLM2 checkpoint ships its tokenizer as "
            "that sentencepiece file. Download the complete checkpoint folder."
        )
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text()) if config_file.exists() else {}
    proto = read_spm_proto(model_file)
    extra = added_tokens(config)
    size = len(proto.pieces)
    renamed = {i: entry["content"] for i, entry in extra.items() if i < size}
    appended = sorted(i for i in extra if i >= size)
    if appended and appended != list(range(size, size + len(appended))):
        raise CheckpointError(
            f"{config_file}: the added tokens {appended} do not follow the sentencepiece "
            f"vocabulary ({size} pieces) without gaps, so their ids cannot be kept."
        )
    vocab = {p.piece: i for i, p in enumerate(proto.pieces)}
    for i, content in renamed.items():
        del vocab[proto.pieces[i].piece]
        vocab[content] = i
    tokenizer = SpmConverter.build_tokenizer_from_spm_proto(
        proto, vocab, _merges(proto, set(renamed)), legacy=False
    )
    if tokenizer is None:  # a unigram model: not what InternLM2 ships
        raise CheckpointError(f"{model_file} is not a BPE sentencepiece model.")
    # Every added token at its id (renamed ones map onto their piece, the rest are appended in
    # order), never normalized, split out of text before sentencepiece sees it.
    tokenizer.add_tokens(
        [
            AddedToken(
                extra[i]["content"],
                special=bool(extra[i].get("special", True)),
                normalized=False,
                lstrip=bool(extra[i].get("lstrip", False)),
                rstrip=bool(extra[i].get("rstrip", False)),
                single_word=bool(extra[i].get("single_word", False)),
            )
            for i in sorted(extra)
        ]
    )
    for i in sorted(extra):
        got = tokenizer.token_to_id(extra[i]["content"])
        if got != i:
            raise CheckpointError(
                f"{config_file}: added token {extra[i]['content']!r} should be id {i} but "
                f"lands at {got}; the tokenizer files do not match."
            )
    bos = proto.pieces[proto.trainer_spec.bos_id].piece if proto.trainer_spec.bos_id >= 0 else None
    if config.get("add_bos_token", True) and bos is not None:
        bos_id = proto.trainer_spec.bos_id
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 $B:1", special_tokens=[(bos, bos_id)]
        )
    unk = proto.trainer_spec.unk_piece or "<unk>"
    eos = proto.pieces[proto.trainer_spec.eos_id].piece if proto.trainer_spec.eos_id >= 0 else None
    specials = [e["content"] for i, e in sorted(extra.items()) if e.get("special", True)]
    named = {bos, eos, unk}
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=bos,
        eos_token="<|im_end|>" if "<|im_end|>" in vocab else eos,
        unk_token=unk,
        pad_token=eos,
        additional_special_tokens=[t for t in specials if t not in named],
        clean_up_tokenization_spaces=False,
        padding_side="left",
        model_max_length=int(config.get("model_max_length") or 32768),
    )


def _merges(proto: Any, skip: set[int]) -> list[tuple[str, str]]:
    """BPE merges of the normal pieces, best score first (sentencepiece merges by score).

    Renamed placeholder pieces are left out: they are reached only as added tokens."""
    normal = {
        p.piece: (p.score, i)
        for i, p in enumerate(proto.pieces)
        if p.type == _NORMAL and i not in skip
    }
    ranked = []
    for piece, (score, index) in normal.items():
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in normal and right in normal:
                ranked.append((-score, index, left, right))
    return [(left, right) for _, _, left, right in sorted(ranked)]

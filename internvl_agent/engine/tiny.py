"""Random-weight InternVL checkpoints with the real architecture, built offline.

They load exactly like a real native (``*-hf``) checkpoint, so the whole stack (tokenizer, image
tokens, vision tower, projector, language model, generation) can be exercised without
downloading weights. Their output is noise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from internvl_agent.engine.convert import chat_template

# InternVL's image and grounding tags, after the Qwen2.5 specials in every tokenizer.
INTERNVL_TAGS = (
    "<img>",
    "</img>",
    "<IMG_CONTEXT>",
    "<quad>",
    "</quad>",
    "<ref>",
    "</ref>",
    "<box>",
    "</box>",
)
# InternVL's special tokens (the Qwen2.5 ones first, then InternVL's image and grounding tags).
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", *INTERNVL_TAGS)
# Qwen2.5 adds these as plain (non-special) tokens so they survive skip_special_tokens.
TOOL_TOKENS = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>")

# Qwen2-style chat template (what transformers' apply_chat_template uses; the engine renders
# prompts itself with the same format).
CHAT_TEMPLATE = chat_template("You are a helpful assistant.")

NOISE_NOTICE = (
    "This checkpoint has RANDOM weights: it has InternVL's real architecture and tokens, "
    "but everything it generates is noise. Use it to test an installation offline."
)

_CORPUS = """
The quick brown fox jumps over the lazy dog. Click the blue button at the top of the page.
Please provide the bounding box coordinate of the region this sentence describes.
{"name": "click", "arguments": {"x": 500, "y": 250, "element": "Search button"}}
{"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
Type your password, press Enter, scroll down, open the menu, select the first result.
Login Username Password Submit Cancel Search Results Add to cart Settings Home Back Next
You are a helpful assistant. The user asked a question about the image in the screenshot.
0 1 2 3 4 5 6 7 8 9 10 100 1000 true false null [ ] { } , : " ' ( ) < > / \\ - _ = + * # @ !
def main(): return {"status": "ok", "values": [1, 2, 3]}  # comment
"""


@dataclass(frozen=True)
class ModelSize:
    """Layer sizes of a random checkpoint."""

    vision_hidden: int
    vision_layers: int
    vision_heads: int
    vision_intermediate: int
    text_hidden: int
    text_layers: int
    text_heads: int
    text_kv_heads: int
    text_intermediate: int
    vocab_size: int | None = None  # None: the tokenizer's size
    tokenizer_vocab: int = 512  # BPE merges trained offline; large for realistic token counts


SIZES: dict[str, ModelSize] = {
    "tiny": ModelSize(32, 2, 2, 64, 64, 2, 4, 2, 128),
    # The real InternVL3 layer sizes (InternViT-300M + Qwen2.5), for benchmarks.
    "1b": ModelSize(1024, 24, 16, 4096, 896, 24, 14, 2, 4864, 151674, 32000),
    "2b": ModelSize(1024, 24, 16, 4096, 1536, 28, 12, 2, 8960, 151674, 32000),
}


def _training_text(vocab_size: int, limit_bytes: int = 6_000_000) -> list[str]:
    """Text to train BPE on: the small built-in corpus, or for a large vocabulary (realistic
    token counts, about 4 characters a token on English and code) Python's own library."""
    lines = _CORPUS.strip().splitlines() * 4
    if vocab_size <= 2048:
        return lines
    import sysconfig

    total = 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="ignore")
        lines.extend(text.splitlines())
        total += len(text)
        if total > limit_bytes:
            break
    return lines


def build_tokenizer(vocab_size: int = 512):
    """Train a byte-level BPE tokenizer with InternVL's special tokens (offline)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_training_text(vocab_size), trainer=trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TOOL_TOKENS])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        model_max_length=32768,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_config(tokenizer, size: ModelSize):
    """An InternVLConfig with InternVL3's structure and the given layer sizes."""
    from transformers import InternVLConfig

    vocab = size.vocab_size or len(tokenizer)
    return InternVLConfig(
        vision_config={
            "hidden_size": size.vision_hidden,
            "num_hidden_layers": size.vision_layers,
            "num_attention_heads": size.vision_heads,
            "intermediate_size": size.vision_intermediate,
            "image_size": [448, 448],
            "patch_size": [14, 14],
            "use_mean_pooling": False,
        },
        text_config={
            "model_type": "qwen2",
            "hidden_size": size.text_hidden,
            "num_hidden_layers": size.text_layers,
            "num_attention_heads": size.text_heads,
            "num_key_value_heads": size.text_kv_heads,
            "intermediate_size": size.text_intermediate,
            "vocab_size": vocab,
            "max_position_embeddings": 32768,
            "rope_theta": 1_000_000.0,
            "tie_word_embeddings": True,
            "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": None,
        },
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=256,
        downsample_ratio=0.5,
        tie_word_embeddings=True,
    )


def random_model(size: str = "tiny", *, seed: int = 0) -> tuple[Any, Any]:
    """(model, tokenizer) with random weights, built in memory (no files)."""
    import torch
    from transformers import GenerationConfig, InternVLForConditionalGeneration

    if size not in SIZES:
        from internvl_agent.errors import ConfigurationError

        raise ConfigurationError(f"unknown size {size!r}; choose one of {sorted(SIZES)}")
    tokenizer = build_tokenizer(SIZES[size].tokenizer_vocab)
    config = build_config(tokenizer, SIZES[size])
    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        eos_token_id=[tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")],
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    return model, tokenizer


def write_random_checkpoint(
    directory: str | Path, size: str = "tiny", *, seed: int = 0, dtype: str = "float32"
) -> Path:
    """Write a random-weight native InternVL checkpoint to `directory` and return its path."""
    import torch

    model, tokenizer = random_model(size, seed=seed)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    model.to(getattr(torch, dtype)).save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "README.md").write_text(f"# Random InternVL checkpoint ({size})\n\n{NOISE_NOTICE}\n")
    meta = {"internvl_agent_random_checkpoint": True, "size": size, "seed": seed}
    (out / "internvl_agent_random.json").write_text(json.dumps(meta, indent=2))
    return out


def is_random_checkpoint(directory: str | Path) -> bool:
    """True for a checkpoint written by `write_random_checkpoint`."""
    return (Path(directory) / "internvl_agent_random.json").exists()


# --------------------------------------------------------------------------- original format
#
# Tiny checkpoints in InternVL's ORIGINAL remote-code layout (config.json with llm_config and
# vision_config, the original weight names, the tokenizer files as released), for tests and
# offline smoke tests of the conversion. `original_native_model` builds the native model with the
# same random weights, so a conversion can be compared with it.

# InternLM2's chat specials, in the id order of the released tokenizer (92538..92543).
INTERNLM2_CHAT_SPECIALS = (
    "<|plugin|>",
    "<|interpreter|>",
    "<|action_end|>",
    "<|action_start|>",
    "<|im_end|>",
    "<|im_start|>",
)
LLM_FAMILIES = ("qwen2", "internlm2")
_REMOTE_CODE_MAP = {
    "AutoConfig": "configuration_internvl_chat.InternVLChatConfig",
    "AutoModel": "modeling_internvl_chat.InternVLChatModel",
    "AutoModelForCausalLM": "modeling_internvl_chat.InternVLChatModel",
}
# Text the tiny sentencepiece model is trained on (and that tests tokenize): several scripts.
SPM_CORPUS = (
    _CORPUS
    + """
你好，世界！这是一个测试句子。请描述这张图片的内容。书生·万象是多模态大语言模型。
こんにちは世界。これはテストです。画像を説明してください。カタカナとひらがな。
Café naïve résumé façade jalapeño Ångström Straße Crème brûlée über señor.
for i in range(10):\n    print(i)  # indentation matters\n\tif x == 1: return None
    four spaces    and tabs\t\there   trailing spaces   .\n
"""
)


def train_sentencepiece(vocab_size: int = 600) -> bytes:
    """A tiny sentencepiece BPE model with InternLM2's options (byte fallback, no dummy prefix,
    whitespace kept), plus the six placeholder pieces InternLM2 renames, at the end."""
    import io

    import sentencepiece as spm

    from internvl_agent.engine.internlm2_tokenizer import spm_schema

    schema = spm_schema()
    buffer = io.BytesIO()
    lines = [line for line in SPM_CORPUS.splitlines() if line.strip()] * 8
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=buffer,
        model_type="bpe",
        vocab_size=vocab_size,
        byte_fallback=True,
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        split_digits=True,
        allow_whitespace_only_pieces=True,
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    proto = schema.ModelProto()
    proto.ParseFromString(buffer.getvalue())
    lowest = min(p.score for p in proto.pieces)
    for n in range(6):
        piece = proto.pieces.add()
        piece.piece = f"[UNUSED_TOKEN_{141 + n}]"
        piece.score = lowest - 1 - n
        piece.type = schema.ModelProto.SentencePiece.USER_DEFINED
    return proto.SerializeToString()


def _added(content: str, special: bool = True) -> dict[str, Any]:
    return {
        "content": content,
        "lstrip": False,
        "normalized": False,
        "rstrip": False,
        "single_word": False,
        "special": special,
    }


def write_internlm2_tokenizer_files(directory: Path) -> None:
    """tokenizer.model + tokenizer_config.json laid out as InternVL2.5's InternLM2 releases."""
    model = train_sentencepiece()
    (directory / "tokenizer.model").write_bytes(model)
    import sentencepiece as spm

    size = spm.SentencePieceProcessor(model_proto=model).get_piece_size()
    decoder = {0: _added("<unk>"), 1: _added("<s>"), 2: _added("</s>")}
    for n, token in enumerate(INTERNLM2_CHAT_SPECIALS):
        decoder[size - 6 + n] = _added(token)
    for n, token in enumerate(INTERNVL_TAGS):
        decoder[size + n] = _added(token)
    config = {
        "added_tokens_decoder": {str(i): e for i, e in sorted(decoder.items())},
        "additional_special_tokens": [*INTERNLM2_CHAT_SPECIALS[::-1], *INTERNVL_TAGS],
        "auto_map": {"AutoTokenizer": ["tokenization_internlm2.InternLM2Tokenizer", None]},
        "bos_token": "<s>",
        "eos_token": "</s>",
        "pad_token": "</s>",
        "unk_token": "<unk>",
        "clean_up_tokenization_spaces": False,
        "model_max_length": 8192,
        "tokenizer_class": "InternLM2Tokenizer",
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2))


def write_qwen2_tokenizer_files(directory: Path, vocab_size: int = 512) -> None:
    """vocab.json + merges.txt + tokenizer_config.json laid out as InternVL3's Qwen2 releases."""
    fast = build_tokenizer(vocab_size)
    model = json.loads(fast.backend_tokenizer.to_str())["model"]
    vocab: dict[str, int] = model["vocab"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    specials = [(t, True) for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")]
    tokens = [*specials, *((t, False) for t in TOOL_TOKENS), *((t, True) for t in INTERNVL_TAGS)]
    decoder = {len(vocab) + n: _added(t, special) for n, (t, special) in enumerate(tokens)}
    config = {
        "add_prefix_space": False,
        "added_tokens_decoder": {str(i): e for i, e in decoder.items()},
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>", *INTERNVL_TAGS],
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
        "model_max_length": 8192,
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2))


def original_config(llm: str, size: ModelSize, vocab_size: int, tokenizer: Any) -> dict[str, Any]:
    """config.json of an original InternVL checkpoint, as released (remote-code keys included)."""
    if llm not in LLM_FAMILIES:
        from internvl_agent.errors import ConfigurationError

        raise ConfigurationError(f"unknown language model {llm!r}; choose qwen2 or internlm2")
    common = {
        "hidden_size": size.text_hidden,
        "intermediate_size": size.text_intermediate,
        "num_hidden_layers": size.text_layers,
        "num_attention_heads": size.text_heads,
        "num_key_value_heads": size.text_kv_heads,
        "max_position_embeddings": 32768,
        "hidden_act": "silu",
        "vocab_size": vocab_size,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "attn_implementation": "flash_attention_2",
    }
    if llm == "qwen2":
        llm_config = {
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            **common,
            "rms_norm_eps": 1e-6,
            "rope_theta": 1_000_000.0,
            "rope_scaling": None,
            "use_sliding_window": False,
            "sliding_window": 32768,
            "max_window_layers": size.text_layers,
            "bos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
            "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
        }
    else:
        llm_config = {
            "architectures": ["InternLM2ForCausalLM"],
            "auto_map": {
                "AutoConfig": "configuration_internlm2.InternLM2Config",
                "AutoModel": "modeling_internlm2.InternLM2ForCausalLM",
                "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM",
            },
            "model_type": "internlm2",
            **common,
            "bias": False,
            "rms_norm_eps": 1e-5,
            "rope_theta": 1_000_000,
            "rope_scaling": {"type": "dynamic", "factor": 2.0},
            "bos_token_id": 1,
            "eos_token_id": 2,  # as released: `</s>`, although turns end with <|im_end|>
            "pad_token_id": 2,
        }
    return {
        "architectures": ["InternVLChatModel"],
        "auto_map": _REMOTE_CODE_MAP,
        "model_type": "internvl_chat",
        "downsample_ratio": 0.5,
        "dynamic_image_size": True,
        "force_image_size": 448,
        "max_dynamic_patch": 12,
        "min_dynamic_patch": 1,
        "ps_version": "v2",
        "select_layer": -1,
        "template": "internvl2_5",
        "torch_dtype": "bfloat16",
        "use_thumbnail": True,
        "llm_config": llm_config,
        "vision_config": {
            "architectures": ["InternVisionModel"],
            "model_type": "intern_vit_6b",
            "hidden_size": size.vision_hidden,
            "intermediate_size": size.vision_intermediate,
            "num_attention_heads": size.vision_heads,
            "num_hidden_layers": size.vision_layers,
            "image_size": 448,
            "patch_size": 14,
            "num_channels": 3,
            "qkv_bias": True,
            "qk_normalization": False,
            "norm_type": "layer_norm",
            "layer_norm_eps": 1e-6,
            "hidden_act": "gelu",
            "drop_path_rate": 0.0,
            "initializer_factor": 1.0,
            "use_flash_attn": True,
        },
    }


ORIGINAL_SIZES: dict[str, ModelSize] = {
    # 8 query heads over 2 KV heads, so InternLM2's wqkv interleave has groups of 4.
    "tiny": ModelSize(32, 2, 2, 64, 64, 2, 8, 2, 128),
    "1b": SIZES["1b"],
}


def write_original_tokenizer(directory: Path, llm: str) -> Any:
    """Write the released tokenizer files of `llm` and return the tokenizer the conversion
    builds from them."""
    from internvl_agent.engine.convert import convert_tokenizer

    if llm == "internlm2":
        write_internlm2_tokenizer_files(directory)
    else:
        write_qwen2_tokenizer_files(directory)
    return convert_tokenizer(directory, llm)


def original_native_model(directory: Path, llm: str, size: str = "tiny", *, seed: int = 0) -> Any:
    """The native model with the random weights `write_original_checkpoint` writes to
    `directory` (whose tokenizer files must already be there)."""
    import torch
    from transformers import InternVLConfig, InternVLForConditionalGeneration

    from internvl_agent.engine.convert import convert_tokenizer, native_config

    if size not in ORIGINAL_SIZES:
        from internvl_agent.errors import ConfigurationError

        raise ConfigurationError(f"unknown size {size!r}; choose one of {sorted(ORIGINAL_SIZES)}")
    tokenizer = convert_tokenizer(directory, llm)
    dims = ORIGINAL_SIZES[size]
    vocab = dims.vocab_size or len(tokenizer)
    config = original_config(llm, dims, vocab, tokenizer)
    native = native_config(
        config,
        llm,
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        tied=False,
    )
    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(InternVLConfig(**native)).eval()
    return model, tokenizer, config


def write_original_checkpoint(
    directory: str | Path,
    llm: str = "qwen2",
    size: str = "tiny",
    *,
    seed: int = 0,
    dtype: str = "float32",
    shard_bytes: int | None = None,
) -> Path:
    """Write a random-weight checkpoint in InternVL's ORIGINAL format; `shard_bytes` splits the
    weights into several safetensors files with an index, as large releases are."""
    import torch
    from safetensors.torch import save_file

    from internvl_agent.engine.convert import geometry, to_original

    if llm not in LLM_FAMILIES:
        from internvl_agent.errors import ConfigurationError

        raise ConfigurationError(f"unknown language model {llm!r}; choose qwen2 or internlm2")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    write_original_tokenizer(out, llm)
    model, _, config = original_native_model(out, llm, size, seed=seed)
    state = {k: v.to(getattr(torch, dtype)).contiguous() for k, v in model.state_dict().items()}
    del model
    tensors = to_original(state, llm, geometry(config))
    del state
    shards: list[dict[str, Any]] = [{}]
    used = 0
    for name, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shard_bytes and shards[-1] and used + nbytes > shard_bytes:
            shards.append({})
            used = 0
        shards[-1][name] = tensor
        used += nbytes
    weight_map = {}
    for index, shard in enumerate(shards, 1):
        file = (
            "model.safetensors"
            if len(shards) == 1
            else f"model-{index:05d}-of-{len(shards):05d}.safetensors"
        )
        save_file(shard, str(out / file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, file))
    if len(shards) > 1:
        index_data = {"metadata": {}, "weight_map": weight_map}
        (out / "model.safetensors.index.json").write_text(json.dumps(index_data, indent=2))
    (out / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False))
    (out / "generation_config.json").write_text(json.dumps({"do_sample": False}))
    (out / "README.md").write_text(
        f"# Random InternVL checkpoint, original format ({llm}, {size})\n\n{NOISE_NOTICE}\n"
    )
    meta = {"internvl_agent_random_checkpoint": True, "size": size, "seed": seed, "llm": llm}
    (out / "internvl_agent_random.json").write_text(json.dumps(meta, indent=2))
    return out

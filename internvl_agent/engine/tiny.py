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

# InternVL's special tokens (the Qwen2.5 ones first, then InternVL's image and grounding tags).
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
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
# Qwen2.5 adds these as plain (non-special) tokens so they survive skip_special_tokens.
TOOL_TOKENS = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>")

# Qwen2-style chat template (what transformers' apply_chat_template uses; the engine renders
# prompts itself with the same format).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>\\n' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

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

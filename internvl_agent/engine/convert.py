"""Convert InternVL's original remote-code checkpoints to the native transformers layout.

The model cards ship ``architectures: ["InternVLChatModel"]`` checkpoints whose code runs only
with ``trust_remote_code``. This module reads their config.json, safetensors and tokenizer files
as data (no .py file is ever imported) and writes an `InternVLForConditionalGeneration`
checkpoint:

- `check_convertible` decides the language-model family (Qwen2/Qwen2.5 -> qwen2, InternLM2/2.5
  -> Llama) and refuses the others by name;
- `native_config` maps the configs (untied output layer, rope settings, the image token id of
  the tokenizer, InternViT's options);
- `RULES` is the one table of weight names, used forwards by `convert_checkpoint` (shard by
  shard, so peak memory is about one shard) and backwards by `to_original` (tiny checkpoints);
- `ensure_converted` converts once into a cache folder keyed by the source's commit or file
  hashes, writing to a temporary folder renamed at the end, so a half-written conversion is never
  used and a full disk leaves nothing behind.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from internvl_agent.engine.prompt import IM_END, IMG_CONTEXT, template_system_message
from internvl_agent.errors import CheckpointError, UnsupportedCheckpointError

ORIGINAL_ARCHITECTURES = frozenset({"InternVLChatModel"})
CONVERSION_FILE = "internvl_agent_conversion.json"
CONVERSION_VERSION = 1
# llm_config.architectures -> the family this module converts it as.
FAMILIES = {"Qwen2ForCausalLM": "qwen2", "InternLM2ForCausalLM": "internlm2"}
SUPPORTED_HELP = (
    "internvl-agent converts original InternVL checkpoints whose language model is Qwen2/Qwen2.5 "
    "(InternVL3 1B/2B/8B/14B/38B/78B, InternVL2.5(-MPO) 1B/4B/38B/78B) or InternLM2/InternLM2.5 "
    "(InternVL2.5(-MPO) 2B/8B/26B), and loads native transformers checkpoints "
    "(InternVLForConditionalGeneration, e.g. 'OpenGVLab/InternVL3-2B-hf')."
)
# Files a conversion reads: never code.
SOURCE_PATTERNS = [
    "*.json",
    "*.safetensors",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "*.tiktoken",
]


def is_original(config: dict[str, Any]) -> bool:
    """True for InternVL's original remote-code format."""
    return bool(set(config.get("architectures") or []) & ORIGINAL_ARCHITECTURES)


def check_convertible(checkpoint: str, config: dict[str, Any]) -> str:
    """The language-model family of an original checkpoint, or an error naming what works."""
    llm = config.get("llm_config") or {}
    architectures = llm.get("architectures") or []
    family = FAMILIES.get(architectures[0]) if architectures else None
    if family is None:
        raise UnsupportedCheckpointError(
            f"{checkpoint!r} is an original InternVL checkpoint with a "
            f"{', '.join(architectures) or 'unnamed'} language model, which internvl-agent "
            f"cannot convert. {SUPPORTED_HELP}"
        )
    if config.get("ps_version", "v2") != "v2":
        raise UnsupportedCheckpointError(
            f"{checkpoint!r} uses pixel shuffle {config.get('ps_version')!r} (InternVL 1.x); "
            f"only 'v2' (InternVL2 and later) has a native equivalent. {SUPPORTED_HELP}"
        )
    template = config.get("template") or "internvl2_5"
    if config.get("system_message") is None and template_system_message(template) is None:
        raise UnsupportedCheckpointError(
            f"{checkpoint!r} uses the chat template {template!r}, whose prompt format "
            f"internvl-agent does not know (it knows internvl2_5, Hermes-2, internlm2-chat). "
            f"{SUPPORTED_HELP}"
        )
    return family


# --------------------------------------------------------------------------- weight names


@dataclass(frozen=True)
class Rule:
    """One original weight name pattern and the native name(s) it becomes.

    ``{n}`` stands for a layer number, ``{p}`` for weight/bias. A rule with several targets
    splits the tensor along its rows with `split` (and `join` puts it back together)."""

    original: str
    native: tuple[str, ...]
    split: str | None = None  # "thirds" (InternViT qkv) or "wqkv" (InternLM2, per KV group)

    def regex(self, pattern: str) -> re.Pattern[str]:
        text = re.escape(pattern).replace(r"\{n\}", r"(?P<n>\d+)").replace(r"\{p\}", r"(?P<p>\w+)")
        return re.compile(text + r"\Z")


_VISION = [
    Rule("vision_model.embeddings.class_embedding", ("embeddings.cls_token",)),
    Rule("vision_model.embeddings.position_embedding", ("embeddings.position_embeddings",)),
    Rule(
        "vision_model.embeddings.patch_embedding.{p}",
        ("embeddings.patch_embeddings.projection.{p}",),
    ),
    Rule(
        "vision_model.encoder.layers.{n}.attn.qkv.{p}",
        ("L.attention.q_proj.{p}", "L.attention.k_proj.{p}", "L.attention.v_proj.{p}"),
        split="thirds",
    ),
    Rule("vision_model.encoder.layers.{n}.attn.proj.{p}", ("L.attention.projection_layer.{p}",)),
    Rule("vision_model.encoder.layers.{n}.attn.q_norm.{p}", ("L.attention.q_norm.{p}",)),
    Rule("vision_model.encoder.layers.{n}.attn.k_norm.{p}", ("L.attention.k_norm.{p}",)),
    Rule("vision_model.encoder.layers.{n}.ls1", ("L.lambda_1",)),
    Rule("vision_model.encoder.layers.{n}.ls2", ("L.lambda_2",)),
    Rule("vision_model.encoder.layers.{n}.mlp.fc1.{p}", ("L.mlp.fc1.{p}",)),
    Rule("vision_model.encoder.layers.{n}.mlp.fc2.{p}", ("L.mlp.fc2.{p}",)),
    Rule("vision_model.encoder.layers.{n}.norm1.{p}", ("L.layernorm_before.{p}",)),
    Rule("vision_model.encoder.layers.{n}.norm2.{p}", ("L.layernorm_after.{p}",)),
]
_PROJECTOR = [
    Rule("mlp1.0.{p}", ("model.multi_modal_projector.layer_norm.{p}",)),
    Rule("mlp1.1.{p}", ("model.multi_modal_projector.linear_1.{p}",)),
    Rule("mlp1.3.{p}", ("model.multi_modal_projector.linear_2.{p}",)),
]
_QWEN2 = [
    Rule("language_model.model.embed_tokens.{p}", ("model.language_model.embed_tokens.{p}",)),
    Rule("language_model.model.norm.{p}", ("model.language_model.norm.{p}",)),
    *(
        Rule(f"language_model.model.layers.{{n}}.{name}.{{p}}", (f"T.{name}.{{p}}",))
        for name in (
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "mlp.gate_proj",
            "mlp.up_proj",
            "mlp.down_proj",
            "input_layernorm",
            "post_attention_layernorm",
        )
    ),
    Rule("language_model.lm_head.{p}", ("lm_head.{p}",)),
]
_INTERNLM2 = [
    Rule("language_model.model.tok_embeddings.{p}", ("model.language_model.embed_tokens.{p}",)),
    Rule("language_model.model.norm.{p}", ("model.language_model.norm.{p}",)),
    Rule(
        "language_model.model.layers.{n}.attention.wqkv.{p}",
        ("T.self_attn.q_proj.{p}", "T.self_attn.k_proj.{p}", "T.self_attn.v_proj.{p}"),
        split="wqkv",
    ),
    *(
        Rule(f"language_model.model.layers.{{n}}.{old}.{{p}}", (f"T.{new}.{{p}}",))
        for old, new in (
            ("attention.wo", "self_attn.o_proj"),
            ("feed_forward.w1", "mlp.gate_proj"),
            ("feed_forward.w3", "mlp.up_proj"),
            ("feed_forward.w2", "mlp.down_proj"),
            ("attention_norm", "input_layernorm"),
            ("ffn_norm", "post_attention_layernorm"),
        )
    ),
    Rule("language_model.output.{p}", ("lm_head.{p}",)),
]
_PREFIXES = {
    "L.": "model.vision_tower.encoder.layer.{n}.",
    "T.": "model.language_model.layers.{n}.",
    "embeddings.": "model.vision_tower.embeddings.",
}


def _expand(rule: Rule) -> Rule:
    native = []
    for target in rule.native:
        for short, full in _PREFIXES.items():
            if target.startswith(short):
                target = full + target[len(short) :]
                break
        native.append(target)
    return Rule(rule.original, tuple(native), rule.split)


RULES: dict[str, list[Rule]] = {
    family: [_expand(r) for r in (*_VISION, *_PROJECTOR, *lm)]
    for family, lm in (("qwen2", _QWEN2), ("internlm2", _INTERNLM2))
}


@dataclass(frozen=True)
class Geometry:
    """What the wqkv split needs to know about the language model's attention."""

    heads: int
    kv_heads: int
    head_dim: int


def convert_tensor(
    name: str, tensor: Any, family: str, geometry: Geometry
) -> list[tuple[str, Any]]:
    """The native (name, tensor) pairs one original tensor becomes."""
    for rule in RULES[family]:
        match = rule.regex(rule.original).match(name)
        if match is None:
            continue
        names = [t.format(**match.groupdict()) for t in rule.native]
        if rule.split is None:
            return [(names[0], tensor)]
        parts = _split(tensor, rule.split, geometry)
        return list(zip(names, parts, strict=True))
    raise CheckpointError(
        f"unknown weight {name!r} in an original InternVL checkpoint ({family} language "
        "model); the checkpoint does not have the layout this converter knows."
    )


def to_original(state_dict: dict[str, Any], family: str, geometry: Geometry) -> dict[str, Any]:
    """The inverse of `convert_tensor` over a whole native state dict (for test checkpoints)."""
    out: dict[str, Any] = {}
    rules = RULES[family]
    used: set[str] = set()
    for name in state_dict:
        if name in used:
            continue
        for rule in rules:
            match = rule.regex(rule.native[0]).match(name)
            if match is None:
                continue
            groups = match.groupdict()
            names = [t.format(**groups) for t in rule.native]
            original = rule.original.format(**groups)
            if rule.split is None:
                out[original] = state_dict[name]
            else:
                out[original] = _join([state_dict[n] for n in names], rule.split, geometry)
            used.update(names)
            break
        else:
            if not any(rule.regex(t).match(name) for rule in rules for t in rule.native[1:]):
                raise CheckpointError(f"native weight {name!r} has no original name")
    return out


def _split(tensor: Any, how: str, g: Geometry) -> list[Any]:
    if how == "thirds":
        return [part.clone() for part in tensor.chunk(3, dim=0)]
    # InternLM2's wqkv rows are (kv_heads, groups + 2, head_dim): per KV head, `groups` query
    # blocks, then one key block, then one value block.
    groups = g.heads // g.kv_heads
    rows = tensor.reshape(g.kv_heads, groups + 2, g.head_dim, -1)
    tail = tensor.shape[1:]
    q = rows[:, :groups].reshape(g.kv_heads * groups * g.head_dim, *tail)
    k = rows[:, groups].reshape(g.kv_heads * g.head_dim, *tail)
    v = rows[:, groups + 1].reshape(g.kv_heads * g.head_dim, *tail)
    return [q.contiguous().clone(), k.contiguous().clone(), v.contiguous().clone()]


def _join(parts: list[Any], how: str, g: Geometry) -> Any:
    import torch

    if how == "thirds":
        return torch.cat(parts, dim=0)
    q, k, v = parts
    groups = g.heads // g.kv_heads
    tail = q.shape[1:]
    blocks = [
        q.reshape(g.kv_heads, groups, g.head_dim, -1),
        k.reshape(g.kv_heads, 1, g.head_dim, -1),
        v.reshape(g.kv_heads, 1, g.head_dim, -1),
    ]
    return torch.cat(blocks, dim=1).reshape(-1, *tail).contiguous()


# --------------------------------------------------------------------------- configs

_DROPPED_LLM_KEYS = {
    "_name_or_path",
    "auto_map",
    "architectures",
    "attn_implementation",
    "_attn_implementation",
    "_attn_implementation_autoset",
    "use_flash_attn",
    "torch_dtype",
    "dtype",
    "transformers_version",
}


def native_config(
    config: dict[str, Any], family: str, *, image_token_id: int, eos_token_id: int, tied: bool
) -> dict[str, Any]:
    """The native InternVLConfig (as a dict) of an original config."""
    vision = config.get("vision_config") or {}
    llm = dict(config.get("llm_config") or {})
    image_size = int(config.get("force_image_size") or vision.get("image_size") or 448)
    patch = int(vision.get("patch_size") or 14)
    ratio = float(config.get("downsample_ratio", 0.5))
    vision_config = {
        "hidden_size": vision["hidden_size"],
        "num_hidden_layers": vision["num_hidden_layers"],
        "num_attention_heads": vision["num_attention_heads"],
        "intermediate_size": vision["intermediate_size"],
        "hidden_act": vision.get("hidden_act", "gelu"),
        "layer_norm_eps": vision.get("layer_norm_eps", 1e-6),
        "norm_type": vision.get("norm_type", "layer_norm"),
        "attention_bias": bool(vision.get("qkv_bias", True)),
        "use_qk_norm": bool(vision.get("qk_normalization", False)),
        "image_size": [image_size, image_size],
        "patch_size": [patch, patch],
        "num_channels": vision.get("num_channels", 3),
        "layer_scale_init_value": vision.get("initializer_factor", 0.1),
        # InternViT has no final norm: mean pooling makes the native one an identity.
        "use_mean_pooling": True,
        "use_absolute_position_embeddings": True,
    }
    if family == "qwen2":
        text = {k: v for k, v in llm.items() if k not in _DROPPED_LLM_KEYS}
        text.update(model_type="qwen2", architectures=["Qwen2ForCausalLM"])
    else:
        heads = int(llm["num_attention_heads"])
        rope: dict[str, Any] = {
            "rope_type": "default",
            "rope_theta": float(llm.get("rope_theta", 1e4)),
        }
        scaling = llm.get("rope_scaling")
        if scaling:
            rope.update({k: v for k, v in scaling.items() if k != "type"})
            rope["rope_type"] = scaling.get("rope_type") or scaling.get("type") or "default"
        text = {
            "model_type": "llama",
            "architectures": ["LlamaForCausalLM"],
            "vocab_size": llm["vocab_size"],
            "hidden_size": llm["hidden_size"],
            "intermediate_size": llm["intermediate_size"],
            "num_hidden_layers": llm["num_hidden_layers"],
            "num_attention_heads": heads,
            "num_key_value_heads": int(llm.get("num_key_value_heads") or heads),
            "head_dim": int(llm["hidden_size"]) // heads,
            "hidden_act": llm.get("hidden_act", "silu"),
            "max_position_embeddings": llm.get("max_position_embeddings", 32768),
            "rms_norm_eps": llm.get("rms_norm_eps", 1e-5),
            "rope_parameters": rope,
            "attention_bias": bool(llm.get("bias", False)),
            "mlp_bias": False,
            "bos_token_id": llm.get("bos_token_id", 1),
            "pad_token_id": llm.get("pad_token_id", 2),
        }
    text["eos_token_id"] = eos_token_id
    text["tie_word_embeddings"] = tied
    text["use_cache"] = True
    return {
        "architectures": ["InternVLForConditionalGeneration"],
        "model_type": "internvl",
        "vision_config": vision_config,
        "text_config": text,
        "image_token_id": image_token_id,
        "image_seq_length": int((image_size // patch) ** 2 * ratio**2),
        "downsample_ratio": ratio,
        "projector_hidden_act": "gelu",
        "vision_feature_layer": int(config.get("select_layer", -1)),
        "vision_feature_select_strategy": "default",
        "tie_word_embeddings": tied,
        "dtype": config.get("torch_dtype") or llm.get("torch_dtype") or "bfloat16",
    }


def geometry(config: dict[str, Any]) -> Geometry:
    llm = config.get("llm_config") or {}
    heads = int(llm.get("num_attention_heads", 1))
    kv = int(llm.get("num_key_value_heads") or heads)
    return Geometry(heads, kv, int(llm.get("hidden_size", heads)) // heads)


# --------------------------------------------------------------------------- tokenizers


def convert_tokenizer(source: Path, family: str) -> Any:
    """The fast tokenizer of an original checkpoint, ending turns with ``<|im_end|>``."""
    if family == "internlm2":
        from internvl_agent.engine.internlm2_tokenizer import build_internlm2_tokenizer

        return build_internlm2_tokenizer(source)
    from transformers import AutoTokenizer

    try:  # Qwen2Tokenizer is native transformers: no remote code involved
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    except Exception as exc:  # tokenizer errors have no common base
        raise CheckpointError(f"could not read the Qwen2 tokenizer of {source}: {exc}") from exc
    tokenizer.eos_token = IM_END
    return tokenizer


# --------------------------------------------------------------------------- conversion


ProgressFn = Callable[[int], None]


def source_shards(source: Path) -> list[Path]:
    """The safetensors files of a checkpoint folder, in index order."""
    index = source / "model.safetensors.index.json"
    if index.exists():
        weight_map = json.loads(index.read_text()).get("weight_map", {})
        return [source / name for name in dict.fromkeys(weight_map.values())]
    single = source / "model.safetensors"
    if single.exists():
        return [single]
    if any(source.glob("*.bin")):
        raise CheckpointError(
            f"{source} holds PyTorch .bin weights; internvl-agent converts safetensors only "
            "(.bin files are pickles that can run code). Use the safetensors release."
        )
    raise CheckpointError(f"{source} has no model.safetensors or model.safetensors.index.json.")


def convert_checkpoint(
    source: str | Path,
    destination: str | Path,
    *,
    progress: bool = True,
    source_id: str | None = None,
    revision: str | None = None,
) -> Path:
    """Convert the original checkpoint folder `source` into `destination` (created atomically).

    Written to a temporary folder beside `destination` and renamed at the end; on any error
    (a full disk included) the temporary folder is removed and `destination` is untouched."""
    source, destination = Path(source), Path(destination)
    config = json.loads((source / "config.json").read_text())
    label = source_id or str(source)
    if not is_original(config):
        raise CheckpointError(
            f"{label} is not an original InternVL checkpoint (InternVLChatModel)."
        )
    family = check_convertible(label, config)
    if destination.exists() and any(destination.iterdir()):
        raise CheckpointError(f"{destination} exists and is not empty; choose a new folder.")
    shards = source_shards(source)
    total = sum(s.stat().st_size for s in shards)
    destination.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(destination.parent).free
    if free < total:
        raise _no_space(destination, total, free)
    temp = destination.parent / f".{destination.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        temp.mkdir()
        _write(source, temp, config, family, shards, total, progress, label, revision)
        if destination.exists():
            destination.rmdir()  # empty (checked above)
        os.replace(temp, destination)
    except OSError as exc:
        shutil.rmtree(temp, ignore_errors=True)
        if exc.errno == errno.ENOSPC:
            raise _no_space(destination, total, shutil.disk_usage(destination.parent).free) from exc
        raise CheckpointError(f"converting {label} to {destination} failed: {exc}") from exc
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return destination


def _no_space(destination: Path, needed: int, free: int) -> CheckpointError:
    return CheckpointError(
        f"not enough disk space to convert into {destination}: the converted checkpoint needs "
        f"about {needed / 1e9:.2f} GB and {free / 1e9:.2f} GB are free. Free some space, or "
        "point $INTERNVL_AGENT_CACHE (or `internvl-agent convert SRC DST`) at a bigger disk. "
        "Nothing was left behind."
    )


def _write(
    source: Path,
    out: Path,
    config: dict[str, Any],
    family: str,
    shards: list[Path],
    total: int,
    progress: bool,
    label: str,
    revision: str | None,
) -> None:
    from transformers import GenerationConfig

    tokenizer = convert_tokenizer(source, family)
    image_token_id = tokenizer.convert_tokens_to_ids(IMG_CONTEXT)
    eos_id = tokenizer.convert_tokens_to_ids(IM_END)
    for token, token_id in ((IMG_CONTEXT, image_token_id), (IM_END, eos_id)):
        if not isinstance(token_id, int) or token_id == tokenizer.unk_token_id:
            raise CheckpointError(f"the tokenizer of {label} has no {token} token.")
    head = "language_model.output." if family == "internlm2" else "language_model.lm_head."
    tied = not any(name.startswith(head) for name in _names(shards))
    native = native_config(
        config, family, image_token_id=image_token_id, eos_token_id=eos_id, tied=tied
    )
    native["dtype"] = _stored_dtype(shards)  # what the weights are, whatever the config says
    weight_map = _write_weights(shards, out, family, geometry(config), total, progress, label)
    _check_complete(native, weight_map, label)
    (out / "config.json").write_text(json.dumps(native, indent=2, ensure_ascii=False))
    tokenizer.chat_template = _chat_template(config)
    tokenizer.save_pretrained(out)
    _portable_tokenizer_config(out / "tokenizer_config.json")
    GenerationConfig(
        eos_token_id=eos_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None
    ).save_pretrained(out)
    system = config.get("system_message") or template_system_message(config.get("template"))
    meta = {
        "format_version": CONVERSION_VERSION,
        "source": label,
        "revision": revision,
        "llm": family,
        "template": config.get("template") or "internvl2_5",
        "system_message": system,
    }
    (out / CONVERSION_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False))


def _stored_dtype(shards: list[Path]) -> str:
    from safetensors import safe_open

    with safe_open(str(shards[0]), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118  # safe_open is not a dict
            if key.startswith("language_model."):
                return (
                    str(f.get_slice(key).get_dtype())
                    .replace("BF16", "bfloat16")
                    .replace("F16", "float16")
                    .replace("F32", "float32")
                )
    return "bfloat16"


def _names(shards: list[Path]) -> Iterator[str]:
    from safetensors import safe_open

    for shard in shards:
        with safe_open(str(shard), framework="pt") as f:
            yield from f.keys()


def _write_weights(
    shards: list[Path],
    out: Path,
    family: str,
    geom: Geometry,
    total: int,
    progress: bool,
    label: str,
) -> dict[str, str]:
    """Convert shard by shard: one output file per input file, one shard in memory at a time."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn
    from safetensors import safe_open
    from safetensors.torch import save_file

    weight_map: dict[str, str] = {}
    columns = ("[progress.description]{task.description}", BarColumn(), DownloadColumn())
    bar = Progress(
        *columns, TimeRemainingColumn(), console=Console(stderr=True), disable=not progress
    )
    with bar:
        task = bar.add_task(f"converting {Path(label).name}", total=total)
        for index, shard in enumerate(shards, 1):
            name = (
                "model.safetensors"
                if len(shards) == 1
                else f"model-{index:05d}-of-{len(shards):05d}.safetensors"
            )
            tensors: dict[str, Any] = {}
            with safe_open(str(shard), framework="pt") as f:
                for key in f.keys():  # noqa: SIM118  # safe_open is not a dict
                    tensor = f.get_tensor(key)
                    for new_name, new_tensor in convert_tensor(key, tensor, family, geom):
                        tensors[new_name] = new_tensor.contiguous()
                        weight_map[new_name] = name
                    bar.advance(task, tensor.numel() * tensor.element_size())
            save_file(tensors, str(out / name), metadata={"format": "pt"})
            del tensors
    if len(shards) > 1:
        size = sum((out / n).stat().st_size for n in set(weight_map.values()))
        table = {"metadata": {"total_size": size}, "weight_map": dict(sorted(weight_map.items()))}
        (out / "model.safetensors.index.json").write_text(json.dumps(table, indent=2))
    return weight_map


def _check_complete(native: dict[str, Any], weight_map: dict[str, str], label: str) -> None:
    """Every weight the native model has must have been written (and nothing else)."""
    import torch
    from transformers import InternVLConfig, InternVLForConditionalGeneration

    with torch.device("meta"):
        model = InternVLForConditionalGeneration(InternVLConfig(**native))
    expected = set(model.state_dict())
    if native["tie_word_embeddings"]:
        expected.discard("lm_head.weight")
    missing, extra = sorted(expected - set(weight_map)), sorted(set(weight_map) - expected)
    if missing or extra:
        raise CheckpointError(
            f"converting {label}: the weights do not match the native model "
            f"(missing {missing[:5]}, unexpected {extra[:5]}); the checkpoint is incomplete or "
            "of a layout this converter does not know."
        )


def _portable_tokenizer_config(path: Path) -> None:
    """Name the tokenizer class every transformers version knows (not v5's TokenizersBackend)."""
    data = json.loads(path.read_text())
    if data.get("tokenizer_class") in (None, "TokenizersBackend"):
        data["tokenizer_class"] = "PreTrainedTokenizerFast"
    data.pop("auto_map", None)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False))


def _chat_template(config: dict[str, Any]) -> str:
    """InternVL's internvl2_5 format as a transformers chat template (for vLLM / lmdeploy)."""
    system = config.get("system_message") or template_system_message(config.get("template"))
    return chat_template(system or "")


def chat_template(system_message: str) -> str:
    """The internvl2_5 prompt format (Qwen2's ChatML) as a transformers chat template, with
    `system_message` when the messages bring none."""
    default = json.dumps(system_message, ensure_ascii=False)
    return (
        "{% if messages[0]['role'] != 'system' %}"
        f"{{{{ '<|im_start|>system\\n' + {default} + '<|im_end|>\\n' }}}}"
        "{% endif %}"
        "{% for message in messages %}"
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


# --------------------------------------------------------------------------- the cache


def cache_root() -> Path:
    """$INTERNVL_AGENT_CACHE, else <HF_HOME>/internvl_agent/converted."""
    env = os.environ.get("INTERNVL_AGENT_CACHE")
    if env:
        return Path(env).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "internvl_agent" / "converted"


def source_key(source: Path) -> str:
    """A key for the source's content: its hub commit when it is a hub snapshot, else hashes.

    Files in the HF cache link to blobs named by their content hash; other files are hashed
    (small ones whole; weights by size, mtime, safetensors header and tail, which is fast and
    changes whenever the file is rewritten)."""
    digest = hashlib.sha256(f"v{CONVERSION_VERSION}".encode())
    if source.parent.name == "snapshots" and re.fullmatch(r"[0-9a-f]{40}", source.name):
        digest.update(source.name.encode())
        return digest.hexdigest()[:16]
    for path in sorted(p for p in source.iterdir() if p.is_file() and not p.name.endswith(".py")):
        digest.update(path.name.encode())
        if path.is_symlink() and path.resolve().parent.name == "blobs":
            digest.update(path.resolve().name.encode())
            continue
        stat = path.stat()
        with path.open("rb") as f:
            if stat.st_size <= 64 * 1024 * 1024:
                digest.update(f.read())
            else:
                digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
                digest.update(f.read(1024 * 1024))
                f.seek(-1024 * 1024, os.SEEK_END)
                digest.update(f.read())
    return digest.hexdigest()[:16]


def download_source(checkpoint: str, revision: str | None) -> Path:
    """The local folder of an original checkpoint: the folder itself, or a hub snapshot of
    its data files (never its .py files)."""
    local = Path(checkpoint).expanduser()
    if local.is_dir():
        return local
    from huggingface_hub import snapshot_download

    try:
        return Path(
            snapshot_download(checkpoint, revision=revision, allow_patterns=SOURCE_PATTERNS)
        )
    except Exception as exc:  # offline, unknown repo, gated, network...
        raise CheckpointError(
            f"could not download {checkpoint!r} from the Hugging Face hub "
            f"({type(exc).__name__}: {exc}). Download it where there is network "
            f"(`huggingface-cli download {checkpoint} --local-dir DIR`) and pass model='DIR'."
        ) from exc


def ensure_converted(
    checkpoint: str, revision: str | None = None, *, progress: bool = True
) -> Path:
    """The native conversion of an original checkpoint, converting it on first use."""
    source = download_source(checkpoint, revision)
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", checkpoint.rstrip("/").split("/")[-1]) or "model"
    target = cache_root() / f"{name}-{source_key(source)}"
    if (target / CONVERSION_FILE).exists():
        return target
    try:
        return convert_checkpoint(
            source, target, progress=progress, source_id=checkpoint, revision=revision
        )
    except CheckpointError:
        if (target / CONVERSION_FILE).exists():  # another process finished it meanwhile
            return target
        raise


def conversion_info(folder: str | Path) -> dict[str, Any] | None:
    """What `convert_checkpoint` recorded about a converted folder (None for other folders)."""
    path = Path(folder) / CONVERSION_FILE
    return json.loads(path.read_text()) if path.exists() else None

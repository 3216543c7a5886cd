"""Find, check and load an InternVL checkpoint.

One place decides the checkpoint format, the device, the dtype, the device map for several
GPUs, the attention implementation and quantization, so that errors name the fix. Native
checkpoints (InternVLForConditionalGeneration) load directly; InternVL's original remote-code
checkpoints (InternVLChatModel) are converted once by `engine.convert` into a cache folder and
loaded from there, without running their code.
"""

from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from internvl_agent.engine.convert import (
    SUPPORTED_HELP,
    check_convertible,
    conversion_info,
    ensure_converted,
    is_original,
)
from internvl_agent.engine.prompt import INTERNVL_SYSTEM_MESSAGE
from internvl_agent.errors import (
    CheckpointError,
    ConfigurationError,
    UnsupportedCheckpointError,
)

Quantization = Literal["8bit", "4bit"]
DEFAULT_MODEL = "OpenGVLab/InternVL3-2B-hf"

_NATIVE_ARCHITECTURES = {"InternVLForConditionalGeneration"}


@dataclass(frozen=True)
class LoadSpec:
    """Everything that identifies one loaded model in a process."""

    checkpoint: str
    device: str = "auto"
    dtype: str = "auto"
    device_map: str | None = None  # None, "auto" or "split" (the model cards' multi-GPU split)
    quantization: Quantization | None = None
    attn_implementation: str | None = None  # None: flash_attention_2 when usable, else sdpa
    revision: str | None = None


@dataclass
class LoadedModel:
    """A model and tokenizer ready for generation."""

    model: Any
    tokenizer: Any
    spec: LoadSpec
    device: Any  # torch.device the inputs go to
    dtype: Any  # torch.dtype of the weights
    name: str  # a short name for response_metadata (e.g. "InternVL3-2B-hf")
    system_message: str = INTERNVL_SYSTEM_MESSAGE  # the checkpoint's default system message
    folder: str | None = None  # where the weights were loaded from (a conversion's cache folder)


def resolve_device(device: str) -> str:
    """Turn "auto" into "cuda" or "cpu" and check an explicit CUDA device exists."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigurationError(
                f"device={device!r} but PyTorch sees no CUDA GPU (torch {torch.__version__}). "
                "Use device='cpu', or install a CUDA build of torch on a machine with a GPU."
            )
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ConfigurationError(
                f"device={device!r} but only {torch.cuda.device_count()} CUDA device(s) exist."
            )
        return device
    if device in ("cpu", "mps"):
        return device
    raise ConfigurationError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'.")


def resolve_dtype(dtype: str, device: str) -> Any:
    """ "auto" is bfloat16 on CUDA (float16 where bf16 is unsupported) and float32 elsewhere."""
    import torch

    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    names = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32"}
    value = getattr(torch, names.get(dtype, dtype), None)
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise ConfigurationError(
            f"unknown dtype {dtype!r}; use 'auto', 'bfloat16', 'float16' or 'float32'."
        )
    return value


def split_device_map(num_layers: int, num_gpus: int) -> dict[str, int]:
    """The model cards' multi-GPU split for native checkpoints.

    GPU 0 holds the vision tower, the projector, the embeddings, the final norm, the LM head and
    the last decoder layer, and counts as half a GPU for the remaining decoder layers.
    """
    if num_gpus < 1:
        raise ConfigurationError("split device map needs at least one GPU")
    per_gpu = math.ceil(num_layers / (num_gpus - 0.5)) if num_gpus > 1 else num_layers
    counts = [per_gpu] * num_gpus
    counts[0] = math.ceil(per_gpu * 0.5) if num_gpus > 1 else num_layers
    device_map: dict[str, int] = {}
    layer = 0
    for gpu, count in enumerate(counts):
        for _ in range(count):
            if layer < num_layers:
                device_map[f"model.language_model.layers.{layer}"] = gpu
                layer += 1
    for name in (
        "model.vision_tower",
        "model.multi_modal_projector",
        "model.language_model.embed_tokens",
        "model.language_model.norm",
        "model.language_model.rotary_emb",
        "lm_head",
        f"model.language_model.layers.{num_layers - 1}",
    ):
        device_map[name] = 0
    return device_map


def read_config(checkpoint: str, revision: str | None = None) -> dict[str, Any]:
    """Read config.json of a local directory or a hub id, with errors that name the fix."""
    local = Path(checkpoint).expanduser()
    if local.is_dir():
        path = local / "config.json"
        if not path.exists():
            raise CheckpointError(
                f"{local} has no config.json, so it is not a transformers checkpoint. Point "
                "model= at the folder that holds config.json, tokenizer files and *.safetensors."
            )
        return json.loads(path.read_text())
    if local.exists():
        raise CheckpointError(f"{local} is a file; model= takes a checkpoint folder or a hub id.")
    if checkpoint.startswith((".", "/", "~")) or checkpoint.count("/") != 1:
        raise CheckpointError(
            f"checkpoint {checkpoint!r} is neither an existing folder nor a hub id of the form "
            "'owner/name' (e.g. 'OpenGVLab/InternVL3-2B-hf')."
        )
    try:
        from huggingface_hub import hf_hub_download

        path = Path(hf_hub_download(checkpoint, "config.json", revision=revision))
    except Exception as exc:  # offline, unknown repo, gated, network...
        raise CheckpointError(
            f"could not get {checkpoint!r} from the Hugging Face hub ({type(exc).__name__}: "
            f"{exc}). If this machine is offline, download it where there is network "
            f"(`huggingface-cli download {checkpoint} --local-dir DIR`), copy DIR here and pass "
            "model='DIR' (a local path), or set HF_HUB_OFFLINE=1 when it is already cached."
        ) from exc
    return json.loads(Path(path).read_text())


def check_format(checkpoint: str, config: dict[str, Any]) -> str:
    """ "native" or "original" (convertible); refuse what cannot be loaded, naming what can."""
    architectures = set(config.get("architectures") or [])
    if is_original(config):
        check_convertible(checkpoint, config)
        return "original"
    if config.get("model_type") != "internvl" and not architectures & _NATIVE_ARCHITECTURES:
        raise UnsupportedCheckpointError(
            f"{checkpoint!r} is a {config.get('model_type')!r} checkpoint "
            f"({', '.join(sorted(architectures)) or 'no architectures'}), not InternVL. "
            f"{SUPPORTED_HELP}"
        )
    return "native"


def choose_attention(spec: LoadSpec, device: str, dtype: Any) -> str:
    """flash_attention_2 when installed and usable, else PyTorch's sdpa."""
    import torch

    if spec.attn_implementation:
        if spec.attn_implementation == "flash_attention_2" and not _has("flash_attn"):
            raise ConfigurationError(
                "attn_implementation='flash_attention_2' needs flash-attn: "
                "pip install 'internvl-agent[gpu]'."
            )
        return spec.attn_implementation
    usable = device.startswith("cuda") and dtype in (torch.float16, torch.bfloat16)
    return "flash_attention_2" if usable and _has("flash_attn") else "sdpa"


def quantization_config(spec: LoadSpec, device: str) -> Any:
    """A BitsAndBytesConfig for 8-bit / 4-bit loading, with clear errors when it cannot work."""
    if spec.quantization is None:
        return None
    if spec.quantization not in ("8bit", "4bit"):
        raise ConfigurationError(f"quantization={spec.quantization!r}; use '8bit', '4bit' or None.")
    if not _has("bitsandbytes"):
        raise ConfigurationError(
            f"quantization={spec.quantization!r} needs bitsandbytes: "
            "pip install 'internvl-agent[quant]'."
        )
    if not device.startswith("cuda"):
        raise ConfigurationError("8-bit / 4-bit loading needs a CUDA GPU (device='cuda').")
    import torch
    from transformers import BitsAndBytesConfig

    if spec.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=["vision_tower"])
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
        llm_int8_skip_modules=["vision_tower", "multi_modal_projector", "lm_head"],
    )


def load_model(spec: LoadSpec) -> LoadedModel:
    """Load weights and tokenizer; every failure becomes a CheckpointError naming the fix."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    config = read_config(spec.checkpoint, spec.revision)
    folder, revision = spec.checkpoint, spec.revision
    if check_format(spec.checkpoint, config) == "original":
        folder, revision = str(ensure_converted(spec.checkpoint, spec.revision)), None
        config = read_config(folder)
    info = conversion_info(folder) if Path(folder).is_dir() else None
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "attn_implementation": choose_attention(spec, device, dtype),
        "revision": revision,
    }
    quant = quantization_config(spec, device)
    if quant is not None:
        kwargs["quantization_config"] = quant
    device_map = _device_map(spec, config, device)
    if device_map is not None:
        kwargs["device_map"] = device_map
    elif quant is not None:
        kwargs["device_map"] = {"": device}
    try:
        model = AutoModelForImageTextToText.from_pretrained(folder, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(folder, revision=revision)
    except Exception as exc:  # safetensors, torch and hub errors have no common base
        raise CheckpointError(
            f"could not load {spec.checkpoint!r}{_converted_note(folder, spec)}: {exc}. Check "
            "that the folder holds a complete InternVL checkpoint (config.json, tokenizer files, "
            "*.safetensors)."
        ) from exc
    if device_map is None and quant is None:
        model.to(torch.device(device))  # type: ignore[arg-type]  # transformers' stub
    model.eval()
    embeddings: Any = model.get_input_embeddings()
    input_device = embeddings.weight.device
    name = Path(spec.checkpoint.rstrip("/")).name
    system = (info or {}).get("system_message") or INTERNVL_SYSTEM_MESSAGE
    return LoadedModel(
        model, tokenizer, spec, torch.device(input_device), dtype, name, system, folder
    )


def _converted_note(folder: str, spec: LoadSpec) -> str:
    return f" (converted to {folder})" if folder != spec.checkpoint else ""


def _device_map(spec: LoadSpec, config: dict[str, Any], device: str) -> Any:
    if spec.device_map is None:
        return None
    if spec.device_map == "auto":
        return "auto"
    if spec.device_map == "split":
        import torch

        if not device.startswith("cuda"):
            raise ConfigurationError("device_map='split' needs CUDA GPUs.")
        num_layers = int(config.get("text_config", {}).get("num_hidden_layers", 0))
        return split_device_map(num_layers, torch.cuda.device_count())
    raise ConfigurationError(f"device_map={spec.device_map!r}; use None, 'auto' or 'split'.")


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None

"""The local engine on the tiny random-weight checkpoint: prompts, decoding, batching, errors."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from PIL import Image

from internvl_agent.engine.decoding import RowDecoder
from internvl_agent.engine.engine import InternVLEngine, get_engine
from internvl_agent.engine.images import TilingConfig
from internvl_agent.engine.loading import (
    LoadSpec,
    check_format,
    load_model,
    read_config,
    resolve_device,
    resolve_dtype,
    split_device_map,
)
from internvl_agent.engine.prompt import INTERNVL_SYSTEM_MESSAGE, Turn, render_segments
from internvl_agent.engine.requests import GenerationRequest, SamplingParams
from internvl_agent.errors import (
    CheckpointError,
    ConfigurationError,
    ContextLengthError,
    UnsupportedCheckpointError,
)


@pytest.fixture(scope="module")
def engine(tiny_checkpoint: Path) -> InternVLEngine:
    return get_engine(LoadSpec(str(tiny_checkpoint), device="cpu"))


def _request(text: str = "Hello", **kwargs) -> GenerationRequest:
    return GenerationRequest([Turn("user", [text])], **kwargs)


# --- prompt rendering ---


def _prompt(engine: InternVLEngine, turns: list[Turn], **kwargs) -> str:
    """The prompt text the engine really tokenizes for `turns` (decoded back)."""
    ids = engine.prepare(GenerationRequest(turns, tiling=TilingConfig(max_tiles=2), **kwargs))
    return engine.tokenizer.decode(ids.input_ids)


def test_prompt_has_default_system_and_generation_prompt(engine: InternVLEngine) -> None:
    prompt = _prompt(engine, [Turn("user", ["Hi"])])
    assert prompt == (
        f"<|im_start|>system\n{INTERNVL_SYSTEM_MESSAGE}<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_prompt_single_image_is_unnumbered_and_sized_by_tiles(engine: InternVLEngine) -> None:
    wide = Image.new("RGB", (896, 448))  # a 2x1 grid and a thumbnail: 3 tiles
    prompt = _prompt(engine, [Turn("user", [wide, "What?"])], default_system=None)
    assert prompt.count("<IMG_CONTEXT>") == 3 * engine.tokens_per_tile
    assert "Image-1" not in prompt
    assert prompt.startswith("<|im_start|>user\n<img><IMG_CONTEXT>")
    assert "</img>\nWhat?<|im_end|>" in prompt


def test_prompt_numbers_several_images_across_turns(engine: InternVLEngine) -> None:
    small, wide = Image.new("RGB", (10, 10)), Image.new("RGB", (896, 448))
    turns = [Turn("system", ["S"]), Turn("user", [small, "a"]), Turn("user", [wide, "b"])]
    prompt = _prompt(engine, turns, prefill="<tool_call>\n")
    assert prompt.index("Image-1: <img>") < prompt.index("Image-2: <img>")
    assert prompt.count("<IMG_CONTEXT>") == (1 + 3) * engine.tokens_per_tile
    assert prompt.startswith("<|im_start|>system\nS<|im_end|>")
    assert prompt.endswith("<|im_start|>assistant\n<tool_call>\n")


def test_prompt_rejects_tile_count_mismatch() -> None:
    with pytest.raises(ValueError, match="2 tile counts"):
        render_segments([Turn("user", [Image.new("RGB", (4, 4))])], [1, 1])


# --- incremental decoding and stop strings ---


class _CharTokenizer:
    """Token i decodes to chr(i); 0 is the end token."""

    def decode(self, ids, skip_special_tokens=False):
        return "".join(chr(i) for i in ids)


def _feed(decoder: RowDecoder, text: str) -> list[str]:
    return [decoder.add_token(ord(c)) for c in text if not decoder.done]


def test_stop_string_spanning_tokens_truncates_and_is_never_emitted() -> None:
    dec = RowDecoder(_CharTokenizer(), {0}, 100, stop=("STOP",))
    emitted = "".join(_feed(dec, "abcSTOPxyz"))
    assert emitted == "abc" and dec.final_text() == "abc"
    assert dec.finish_reason == "stop"


def test_partial_stop_prefix_is_released_when_it_does_not_complete() -> None:
    dec = RowDecoder(_CharTokenizer(), {0}, 100, stop=("STOP",))
    parts = _feed(dec, "abST")
    assert "".join(parts) == "ab"  # "ST" held back
    parts += _feed(dec, "Xy")
    assert "".join(parts) == "abSTXy" and not dec.done


def test_length_and_eos_finish_reasons() -> None:
    dec = RowDecoder(_CharTokenizer(), {0}, 3)
    assert "".join(_feed(dec, "abcdef")) == "abc" and dec.finish_reason == "length"
    dec = RowDecoder(_CharTokenizer(), {0}, 10)
    _feed(dec, "ab")
    dec.add_token(0)
    assert dec.finish_reason == "stop" and dec.final_text() == "ab" and dec.num_generated == 3


def test_multibyte_characters_come_out_whole(tiny_checkpoint: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    text = "héllo wörld — 你好 ✓"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    dec = RowDecoder(tok, {tok.convert_tokens_to_ids("<|im_end|>")}, 1000)
    deltas = [dec.add_token(i) for i in ids]
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) + dec.cancel("length") == text


# --- loading ---


def test_device_and_dtype_resolution() -> None:
    import torch

    assert resolve_device("cpu") == "cpu"
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("bf16", "cpu") == torch.bfloat16
    with pytest.raises(ConfigurationError, match="unknown dtype"):
        resolve_dtype("int3", "cpu")
    with pytest.raises(ConfigurationError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigurationError, match="no CUDA GPU"):
            resolve_device("cuda:0")


def test_split_device_map_covers_every_module_once(tiny_checkpoint: Path) -> None:
    from transformers import AutoModelForImageTextToText

    for layers, gpus in [(24, 2), (28, 4), (48, 8), (2, 1)]:
        dm = split_device_map(layers, gpus)
        layer_keys = [k for k in dm if ".layers." in k]
        assert len(layer_keys) == layers
        assert dm["model.vision_tower"] == 0 and dm["lm_head"] == 0
        assert dm[f"model.language_model.layers.{layers - 1}"] == 0
        assert set(dm.values()) <= set(range(gpus))
    model = AutoModelForImageTextToText.from_pretrained(tiny_checkpoint)
    names = {n for n, _ in model.named_modules()}
    assert set(split_device_map(2, 2)) <= names


def test_missing_and_malformed_checkpoints_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        read_config(str(tmp_path))
    with pytest.raises(CheckpointError, match="neither an existing folder nor a hub id"):
        read_config("./does/not/exist")
    with pytest.raises(UnsupportedCheckpointError, match="cannot convert"):  # no llm_config
        check_format("OpenGVLab/InternVL3-2B", {"architectures": ["InternVLChatModel"]})
    with pytest.raises(UnsupportedCheckpointError, match="not InternVL"):
        check_format("x/y", {"model_type": "llama", "architectures": ["LlamaForCausalLM"]})


def test_offline_hub_error_explains_local_path(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError, match="local-dir"):
        read_config("OpenGVLab/not-a-real-model-xyz")


def test_quantization_without_bitsandbytes_is_a_clear_error(tiny_checkpoint: Path) -> None:
    spec = LoadSpec(str(tiny_checkpoint), device="cpu", quantization="8bit")
    with pytest.raises(ConfigurationError, match=r"bitsandbytes|CUDA"):
        load_model(spec)


def test_corrupt_weights_are_a_checkpoint_error(tiny_checkpoint: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny_checkpoint.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="could not load"):
        load_model(LoadSpec(str(broken), device="cpu"))


# --- generation ---


def test_engines_are_shared_and_lazy(tiny_checkpoint: Path) -> None:
    spec = LoadSpec(str(tiny_checkpoint), device="cpu", dtype="float32")
    fresh = get_engine(spec)
    assert get_engine(spec) is fresh
    assert get_engine(LoadSpec(str(tiny_checkpoint), device="cpu", dtype="bfloat16")) is not fresh


def test_generate_counts_image_tokens(engine: InternVLEngine) -> None:
    img = Image.new("RGB", (900, 450), "white")
    req = GenerationRequest(
        [Turn("user", [img, "Describe"])], max_new_tokens=5, tiling=TilingConfig(max_tiles=2)
    )
    result = engine.generate(req)
    assert result.num_images == 1
    assert result.image_tokens == 3 * 256  # 2x1 grid + thumbnail
    assert result.input_tokens > result.image_tokens
    assert 1 <= result.output_tokens <= 5
    assert result.finish_reason in ("stop", "length")


def test_greedy_is_deterministic_and_streaming_matches(engine: InternVLEngine) -> None:
    first = engine.generate(_request(max_new_tokens=12))
    second = engine.generate(_request(max_new_tokens=12))
    streamed = "".join(engine.submit(_request(max_new_tokens=12)))
    assert first.text == second.text == streamed


def test_seeded_sampling_is_reproducible(engine: InternVLEngine) -> None:
    sampling = SamplingParams(temperature=1.0, top_p=0.9, top_k=50, seed=7)
    a = engine.generate(_request(max_new_tokens=10, sampling=sampling))
    b = engine.generate(_request(max_new_tokens=10, sampling=sampling))
    assert a.text == b.text and a.output_tokens == 10


def test_concurrent_requests_share_a_batch_and_match_solo_runs(engine: InternVLEngine) -> None:
    prompts = ["one", "two two", "three three three", "four"]
    solo = [engine.generate(_request(p, max_new_tokens=6)).text for p in prompts]
    results = engine.generate_batch([_request(p, max_new_tokens=6) for p in prompts])
    assert max(r.timings["batch_size"] for r in results) > 1
    assert [r.text for r in results] == solo  # left padding does not change greedy output


def test_rows_of_one_batch_keep_their_own_limits(engine: InternVLEngine) -> None:
    results = engine.generate_batch([_request(max_new_tokens=n) for n in (2, 9)])
    assert results[0].output_tokens <= 2 < results[1].output_tokens <= 9


def test_many_threads_at_once(engine: InternVLEngine) -> None:
    results: list[str] = [""] * 6
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = engine.generate(_request(f"thread {i}", max_new_tokens=4)).text
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and all(isinstance(r, str) for r in results)


def test_closing_a_stream_cancels_generation(engine: InternVLEngine) -> None:
    handle = engine.submit(_request(max_new_tokens=500))
    stream = iter(handle)
    next(stream, None)
    stream.close()
    result = handle.result()
    assert result.finish_reason in ("cancelled", "stop")
    assert result.output_tokens < 500


def test_timeout_ends_generation_with_its_own_reason(engine: InternVLEngine) -> None:
    result = engine.generate(_request(max_new_tokens=100_000, timeout_s=0.3))
    assert result.finish_reason == "timeout"
    assert 0 < result.output_tokens < 100_000


def test_prompt_longer_than_context_is_refused(engine: InternVLEngine) -> None:
    img = Image.new("RGB", (1920, 1080))
    turns = [Turn("user", [img] * 15 + ["too many images"])]
    with pytest.raises(ContextLengthError, match="max_tiles"):
        engine.prepare(GenerationRequest(turns, tiling=TilingConfig(max_tiles=12)))


def test_failures_reach_the_caller(engine: InternVLEngine, monkeypatch) -> None:
    def boom(batch):
        raise RuntimeError("device fell over")

    monkeypatch.setattr(engine, "_run_batch", boom)
    with pytest.raises(RuntimeError, match="device fell over"):
        engine.generate(_request(max_new_tokens=2))


def test_tiny_checkpoint_is_small_and_marked(tiny_checkpoint: Path) -> None:
    size = sum(f.stat().st_size for f in tiny_checkpoint.iterdir())
    assert size < 1_000_000
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert config["architectures"] == ["InternVLForConditionalGeneration"]
    assert "RANDOM" in (tiny_checkpoint / "README.md").read_text()

"""Original-format checkpoints end to end: conversion, cache, tokenizer, prompts, logits, greedy.

The references are InternVL's own code re-implemented in tests/support/internvl_reference.py
(InternLM2Tokenizer, model.chat's prompt, the model card's image preprocessing) and the native
model built from the same random weights as the original-format checkpoint.
"""

from __future__ import annotations

import errno
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from langchain_core.messages import AIMessage, HumanMessage
from PIL import Image

from internvl_agent.chat.chat_model import ChatInternVL
from internvl_agent.engine import convert
from internvl_agent.engine.convert import (
    CONVERSION_FILE,
    convert_checkpoint,
    ensure_converted,
)
from internvl_agent.engine.prompt import INTERNVL_SYSTEM_MESSAGE
from internvl_agent.engine.tiny import (
    INTERNLM2_CHAT_SPECIALS,
    INTERNVL_TAGS,
    original_native_model,
    write_original_checkpoint,
)
from internvl_agent.errors import CheckpointError
from tests.support.internvl_reference import (
    SYSTEM_MESSAGE,
    ReferenceInternLM2Tokenizer,
    _legacy_clean_up,
    model_card_pixels,
    model_card_prompt,
)

LLMS = ("qwen2", "internlm2")
MARKER = "REMOTE_CODE_RAN"
# Code files as the releases ship them; importing any of them would leave a marker file.
_CODE = (
    "modeling_internvl_chat.py",
    "configuration_internvl_chat.py",
    "tokenization_internlm2.py",
    "modeling_internlm2.py",
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("conversion-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INTERNVL_AGENT_CACHE", str(root))
        yield root


@pytest.fixture(scope="module")
def originals(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> dict[str, Path]:
    out = {}
    for llm in LLMS:
        folder = write_original_checkpoint(tmp_path_factory.mktemp(f"original-{llm}"), llm)
        for name in _CODE:
            marker = folder / MARKER
            (folder / name).write_text(f"open({str(marker)!r}, 'w').write('imported')\n")
        out[llm] = folder
    return out


@pytest.fixture(scope="module")
def llms(originals: dict[str, Path]) -> dict[str, ChatInternVL]:
    return {
        llm: ChatInternVL(model=str(path), device="cpu", max_tokens=8, temperature=0.0)
        for llm, path in originals.items()
    }


def _image(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def _block(image: Image.Image) -> dict:
    return {"type": "image", "image": image}


def _reference_ids(folder: Path, llm: str, query: str) -> list[int]:
    if llm == "internlm2":
        return ReferenceInternLM2Tokenizer(folder).encode(query)
    from transformers import AutoTokenizer  # Qwen2Tokenizer: native, what model.chat uses

    return AutoTokenizer.from_pretrained(folder)(query)["input_ids"]


def _engine_ids(llm: ChatInternVL, messages: list) -> list[int]:
    call = llm._prepare(messages, None)
    return call.engine.prepare(call.request).input_ids


# --------------------------------------------------------------------------- conversion


@pytest.mark.parametrize("llm", LLMS)
def test_converted_logits_equal_native_model_with_images(
    originals: dict[str, Path], tmp_path: Path, llm: str
) -> None:
    from transformers import InternVLForConditionalGeneration

    out = convert_checkpoint(originals[llm], tmp_path / "native", progress=False)
    converted = InternVLForConditionalGeneration.from_pretrained(out).eval()
    native, tokenizer, _ = original_native_model(originals[llm], llm)
    image_id = tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    assert converted.config.image_token_id == image_id
    ids = torch.tensor([[1, 5, 9, *([image_id] * 256), 7, 3, 11, 4]])
    pixels = torch.randn(1, 3, 448, 448)
    with torch.no_grad():
        got = converted(input_ids=ids, pixel_values=pixels).logits
        want = native(input_ids=ids, pixel_values=pixels).logits
    assert torch.equal(got, want)
    assert converted.config.text_config.tie_word_embeddings is False
    assert not torch.equal(converted.lm_head.weight, converted.get_input_embeddings().weight)


def test_internlm2_text_config_carries_rope_and_ends_turns_with_im_end(
    originals: dict[str, Path], tmp_path: Path
) -> None:
    out = convert_checkpoint(originals["internlm2"], tmp_path / "n", progress=False)
    config = json.loads((out / "config.json").read_text())["text_config"]
    assert config["model_type"] == "llama"
    assert config["rope_parameters"]["rope_type"] == "dynamic"
    assert config["rope_parameters"]["factor"] == 2.0
    assert config["rope_parameters"]["rope_theta"] == 1e6
    generation = json.loads((out / "generation_config.json").read_text())
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert generation["eos_token_id"] == im_end == config["eos_token_id"] != 2
    assert tokenizer.eos_token == "<|im_end|>"
    assert json.loads((out / "tokenizer_config.json").read_text())["tokenizer_class"] == (
        "PreTrainedTokenizerFast"
    )


def test_full_disk_gives_a_clear_error_and_leaves_nothing(
    originals: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import safetensors.torch

    def full_disk(tensors: dict, filename: str, metadata: dict | None = None) -> None:
        Path(filename).write_bytes(b"\0" * 1000)  # a partly written file
        raise OSError(errno.ENOSPC, "No space left on device", filename)

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    target = tmp_path / "out" / "converted"
    with pytest.raises(CheckpointError, match="not enough disk space") as info:
        convert_checkpoint(originals["qwen2"], target, progress=False)
    assert "INTERNVL_AGENT_CACHE" in str(info.value)
    assert not target.exists()
    assert list((tmp_path / "out").iterdir()) == []  # no temporary folder left


def test_refuses_a_non_empty_destination(originals: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="not empty"):
        convert_checkpoint(originals["qwen2"], tmp_path, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_several_shards_are_converted_one_by_one(
    originals: dict[str, Path], tmp_path: Path
) -> None:
    """A two-shard source gives a two-shard output with an index, and the same weights."""
    from safetensors.torch import load_file, save_file

    source = tmp_path / "sharded"
    source.mkdir()
    for item in originals["internlm2"].iterdir():
        if item.name != "model.safetensors":
            (source / item.name).write_bytes(item.read_bytes())
    tensors = load_file(originals["internlm2"] / "model.safetensors")
    names = sorted(tensors)
    halves = {
        "model-00001-of-00002.safetensors": names[::2],
        "model-00002-of-00002.safetensors": names[1::2],
    }
    weight_map = {}
    for file, keys in halves.items():
        save_file({k: tensors[k] for k in keys}, str(source / file))
        weight_map.update(dict.fromkeys(keys, file))
    (source / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    sharded = convert_checkpoint(source, tmp_path / "a", progress=False)
    single = convert_checkpoint(originals["internlm2"], tmp_path / "b", progress=False)
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == set(halves)
    merged = {}
    for file in halves:
        merged.update(load_file(sharded / file))
    want = load_file(single / "model.safetensors")
    assert merged.keys() == want.keys()
    assert all(torch.equal(merged[k], want[k]) for k in want)


# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize("llm", LLMS)
def test_chat_model_loads_original_checkpoint_through_the_cache(
    llms: dict[str, ChatInternVL],
    originals: dict[str, Path],
    cache: Path,
    llm: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answer = llms[llm].invoke([HumanMessage("Hello")])
    assert isinstance(answer, AIMessage)
    converted = [p for p in cache.iterdir() if p.name.startswith(originals[llm].name)]
    assert len(converted) == 1 and (converted[0] / CONVERSION_FILE).exists()
    assert not any(p.name.startswith(".") for p in cache.iterdir())  # no partial folders

    def no_second_conversion(*args: object, **kwargs: object) -> Path:
        raise AssertionError("converted twice")

    monkeypatch.setattr(convert, "convert_checkpoint", no_second_conversion)
    assert ensure_converted(str(originals[llm])) == converted[0]
    # The checkpoint's .py files were never imported.
    assert not (originals[llm] / MARKER).exists()
    assert not any(name.endswith(("internvl_chat", "internlm2")) for name in sys.modules)


def test_changed_source_is_converted_again(
    originals: dict[str, Path], tmp_path: Path, cache: Path
) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    for item in originals["qwen2"].iterdir():
        (copy / item.name).write_bytes(item.read_bytes())
    first = ensure_converted(str(copy), progress=False)
    config = json.loads((copy / "config.json").read_text())
    config["llm_config"]["rms_norm_eps"] = 1e-5
    (copy / "config.json").write_text(json.dumps(config))
    second = ensure_converted(str(copy), progress=False)
    assert first != second and (second / CONVERSION_FILE).exists()


# --------------------------------------------------------------------------- model.chat parity


def _cases(img1: Image.Image, img2: Image.Image) -> list[tuple[str, list, str, list, list | None]]:
    """(name, messages, model.chat question, images, history)."""
    return [
        ("text", [HumanMessage("Who are you?")], "Who are you?", [], None),
        (
            "single image",
            [HumanMessage([_block(img1), {"type": "text", "text": "Describe the image."}])],
            "<image>\nDescribe the image.",
            [img1],
            None,
        ),
        (
            "two images",
            [HumanMessage([_block(img1), _block(img2), {"type": "text", "text": "Compare."}])],
            "Image-1: <image>\nImage-2: <image>\nCompare.",
            [img1, img2],
            None,
        ),
        (
            "multi-turn",
            [
                HumanMessage([_block(img1), {"type": "text", "text": "What is it?"}]),
                AIMessage("A square."),
                HumanMessage("What colour?"),
            ],
            "What colour?",
            [img1],
            [("<image>\nWhat is it?", "A square.")],
        ),
    ]


@pytest.mark.parametrize("llm", LLMS)
def test_prompt_tokens_equal_model_chat(
    llms: dict[str, ChatInternVL], originals: dict[str, Path], llm: str
) -> None:
    img1, img2 = _image(448, 448, 1), _image(900, 450, 2)  # 1 tile; 2 tiles + thumbnail
    for name, messages, question, images, history in _cases(img1, img2):
        patches = [len(model_card_pixels(i)) for i in images]
        query = model_card_prompt(question, patches, history=history)
        want = _reference_ids(originals[llm], llm, query)
        assert _engine_ids(llms[llm], messages) == want, name
    assert SYSTEM_MESSAGE == INTERNVL_SYSTEM_MESSAGE
    if llm == "internlm2":
        assert want[0] == 1  # <s> starts the prompt, as InternLM2Tokenizer adds it


@pytest.mark.parametrize("llm", LLMS)
def test_greedy_tokens_equal_model_chat(
    llms: dict[str, ChatInternVL], originals: dict[str, Path], llm: str
) -> None:
    img = _image(900, 450, 3)
    messages = [HumanMessage([_block(img), {"type": "text", "text": "Describe the image."}])]
    pixels = torch.from_numpy(model_card_pixels(img))
    query = model_card_prompt("<image>\nDescribe the image.", [len(pixels)])
    ids = torch.tensor([_reference_ids(originals[llm], llm, query)])
    native, tokenizer, _ = original_native_model(originals[llm], llm)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    with torch.no_grad():
        out = native.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            pixel_values=pixels,
            max_new_tokens=8,
            do_sample=False,
            eos_token_id=im_end,
            pad_token_id=im_end,
        )
    new = out[0, ids.shape[1] :].tolist()
    if im_end in new:
        new = new[: new.index(im_end)]
    call = llms[llm]._prepare(messages, None)
    result = call.engine.submit(call.request).result()
    assert result.input_tokens == ids.shape[1]
    assert result.output_tokens == len(new) + (1 if result.finish_reason == "stop" else 0)
    assert result.text == tokenizer.decode(new, skip_special_tokens=False)


# --------------------------------------------------------------------------- the tokenizer

TEXTS = [
    "Hello world",
    "Hello, world. It's a test; isn't it? Yes !",
    "   leading spaces and trailing   ",
    "two  spaces,   three,    four,\t\ttabs",
    "line one\nline two\r\nline three\r\n\r\n",
    "\n\n\n",
    'def main():\n    return {"status": "ok", "values": [1, 2, 3]}  # comment\n',
    "for i in range(10):\n\tprint(i)\n",
    "你好，世界！这是一个测试句子。",
    "こんにちは世界。これはテストです。",
    "emoji 😀🎉👍🏽 and 🇫🇷 flags",
    "Café naïve résumé façade Ångström Straße",
    "mixed 中文 English 日本語 123456789",
    "numbers 3.14159 1,000,000 2024-01-01",
    "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
    "<img><IMG_CONTEXT><IMG_CONTEXT></img>\nDescribe",
    "<ref>the cat</ref><box>[[10, 20, 300, 400]]</box>",
    "<quad>a</quad> <|plugin|><|interpreter|><|action_start|>x<|action_end|>",
    "<s>already</s> a bos <unk>",
    "text<|im_end|>text <|im_end|> text",
    "",
    " ",
    "a",
    "ünïcödé\u00a0nbsp\u200bzero-width",
]


@pytest.fixture(scope="module")
def internlm2_tokenizers(originals: dict[str, Path]) -> tuple:
    from transformers import AutoTokenizer

    out = convert_checkpoint(
        originals["internlm2"], originals["internlm2"].parent / "tok", progress=False
    )
    return AutoTokenizer.from_pretrained(out), ReferenceInternLM2Tokenizer(originals["internlm2"])


def test_internlm2_special_ids_are_renamed_and_appended(internlm2_tokenizers: tuple) -> None:
    fast, ref = internlm2_tokenizers
    size = ref.vocab_size
    for n, token in enumerate(INTERNLM2_CHAT_SPECIALS):
        assert fast.convert_tokens_to_ids(token) == ref.to_id(token) == size - 6 + n
    for n, token in enumerate(INTERNVL_TAGS):
        assert fast.convert_tokens_to_ids(token) == size + n
    assert len(fast) == size + len(INTERNVL_TAGS)
    assert fast.bos_token_id == 1


def test_internlm2_encode_equals_original(internlm2_tokenizers: tuple) -> None:
    fast, ref = internlm2_tokenizers
    for text in TEXTS:
        assert fast(text)["input_ids"] == ref.encode(text), repr(text)
        assert fast(text, add_special_tokens=False)["input_ids"] == ref.encode(text, False)


def test_internlm2_decode_equals_original(internlm2_tokenizers: tuple) -> None:
    """skip_special_tokens=True (model.chat's decode): the same text, except that the original
    also ran the legacy clean-up (" ." -> "."), which we do not (it corrupts text)."""
    fast, ref = internlm2_tokenizers
    for text in TEXTS:
        ids = ref.encode(text)
        ours, theirs = fast.decode(ids, skip_special_tokens=True), ref.decode(ids, True)
        assert _legacy_clean_up(ours) == theirs, repr(text)
        if not any(t in text for t in ref.added_encoder):
            assert fast.decode(ids[1:]) == text  # lossless
            assert _legacy_clean_up(fast.decode(ids[1:])) == ref.decode(ids[1:])

"""The original -> native mapping itself: weight names, the qkv splits, configs, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from internvl_agent.engine.convert import (
    RULES,
    Geometry,
    check_convertible,
    convert_tensor,
    native_config,
    source_key,
    to_original,
)
from internvl_agent.engine.loading import check_format
from internvl_agent.errors import CheckpointError, UnsupportedCheckpointError


def _original(llm_arch: str, **extra) -> dict:
    return {
        "architectures": ["InternVLChatModel"],
        "template": "internvl2_5",
        "llm_config": {"architectures": [llm_arch], **extra},
    }


def test_internlm2_wqkv_split_matches_internlm2_attention() -> None:
    """InternLM2Attention: rows (kv, groups + 2, head_dim); queries, then a key, then a value."""
    heads, kv, head_dim, hidden = 8, 2, 4, 16
    groups = heads // kv
    wqkv = torch.randn((heads + 2 * kv) * head_dim, hidden)
    x = torch.randn(3, hidden)
    # modeling_internlm2.py: rearrange(qkv, "b q (h gs d) -> b q h gs d", gs=2 + groups)
    qkv = (x @ wqkv.T).reshape(3, kv, groups + 2, head_dim)
    want_q = qkv[:, :, :groups].reshape(3, heads * head_dim)  # "(h gs) d": head = h*groups + g
    want_k = qkv[:, :, -2].reshape(3, kv * head_dim)
    want_v = qkv[:, :, -1].reshape(3, kv * head_dim)
    out = dict(
        convert_tensor(
            "language_model.model.layers.3.attention.wqkv.weight",
            wqkv,
            "internlm2",
            Geometry(heads, kv, head_dim),
        )
    )
    prefix = "model.language_model.layers.3.self_attn."
    assert set(out) == {prefix + n for n in ("q_proj.weight", "k_proj.weight", "v_proj.weight")}
    torch.testing.assert_close(x @ out[prefix + "q_proj.weight"].T, want_q)
    torch.testing.assert_close(x @ out[prefix + "k_proj.weight"].T, want_k)
    torch.testing.assert_close(x @ out[prefix + "v_proj.weight"].T, want_v)


def test_internvit_qkv_split_matches_internvit_attention() -> None:
    """InternAttention: qkv(x).reshape(B, N, 3, heads, head_dim) -> q, k, v."""
    dim = 12
    weight, bias = torch.randn(3 * dim, dim), torch.randn(3 * dim)
    x = torch.randn(5, dim)
    q, k, v = (x @ weight.T + bias).reshape(5, 3, dim).unbind(1)
    geometry = Geometry(1, 1, 1)
    parts = {}
    for kind, tensor in (("weight", weight), ("bias", bias)):
        name = f"vision_model.encoder.layers.0.attn.qkv.{kind}"
        parts.update(convert_tensor(name, tensor, "qwen2", geometry))
    prefix = "model.vision_tower.encoder.layer.0.attention."
    for letter, want in zip("qkv", (q, k, v), strict=True):
        got = x @ parts[f"{prefix}{letter}_proj.weight"].T + parts[f"{prefix}{letter}_proj.bias"]
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize(
    ("family", "original", "native"),
    [
        (
            "internlm2",
            "language_model.model.tok_embeddings.weight",
            "model.language_model.embed_tokens.weight",
        ),
        ("internlm2", "language_model.output.weight", "lm_head.weight"),
        (
            "internlm2",
            "language_model.model.layers.7.attention.wo.weight",
            "model.language_model.layers.7.self_attn.o_proj.weight",
        ),
        (
            "internlm2",
            "language_model.model.layers.0.feed_forward.w1.weight",
            "model.language_model.layers.0.mlp.gate_proj.weight",
        ),
        (
            "internlm2",
            "language_model.model.layers.0.feed_forward.w3.weight",
            "model.language_model.layers.0.mlp.up_proj.weight",
        ),
        (
            "internlm2",
            "language_model.model.layers.0.feed_forward.w2.weight",
            "model.language_model.layers.0.mlp.down_proj.weight",
        ),
        (
            "internlm2",
            "language_model.model.layers.1.attention_norm.weight",
            "model.language_model.layers.1.input_layernorm.weight",
        ),
        (
            "internlm2",
            "language_model.model.layers.1.ffn_norm.weight",
            "model.language_model.layers.1.post_attention_layernorm.weight",
        ),
        (
            "qwen2",
            "language_model.model.layers.2.self_attn.q_proj.bias",
            "model.language_model.layers.2.self_attn.q_proj.bias",
        ),
        ("qwen2", "language_model.lm_head.weight", "lm_head.weight"),
        ("qwen2", "mlp1.0.weight", "model.multi_modal_projector.layer_norm.weight"),
        ("qwen2", "mlp1.1.bias", "model.multi_modal_projector.linear_1.bias"),
        ("qwen2", "mlp1.3.weight", "model.multi_modal_projector.linear_2.weight"),
        (
            "qwen2",
            "vision_model.embeddings.class_embedding",
            "model.vision_tower.embeddings.cls_token",
        ),
        (
            "qwen2",
            "vision_model.embeddings.patch_embedding.weight",
            "model.vision_tower.embeddings.patch_embeddings.projection.weight",
        ),
        (
            "qwen2",
            "vision_model.embeddings.position_embedding",
            "model.vision_tower.embeddings.position_embeddings",
        ),
        (
            "qwen2",
            "vision_model.encoder.layers.11.ls1",
            "model.vision_tower.encoder.layer.11.lambda_1",
        ),
        (
            "qwen2",
            "vision_model.encoder.layers.11.attn.proj.bias",
            "model.vision_tower.encoder.layer.11.attention.projection_layer.bias",
        ),
        (
            "qwen2",
            "vision_model.encoder.layers.0.attn.q_norm.weight",
            "model.vision_tower.encoder.layer.0.attention.q_norm.weight",
        ),
        (
            "qwen2",
            "vision_model.encoder.layers.0.norm2.bias",
            "model.vision_tower.encoder.layer.0.layernorm_after.bias",
        ),
    ],
)
def test_weight_names(family: str, original: str, native: str) -> None:
    tensor = torch.zeros(2, 2)
    assert convert_tensor(original, tensor, family, Geometry(1, 1, 1)) == [(native, tensor)]


def test_unknown_weight_is_an_error() -> None:
    with pytest.raises(CheckpointError, match=r"unknown weight 'language_model\.model\.foo'"):
        convert_tensor("language_model.model.foo", torch.zeros(1), "qwen2", Geometry(1, 1, 1))


def test_to_original_inverts_every_rule() -> None:
    geometry = Geometry(4, 2, 2)
    for family, rules in RULES.items():
        state = {}
        for rule in rules:
            for target in rule.native:
                rows = 8 if "self_attn.q_proj" in target else 4
                state[target.format(n="3", p="weight")] = torch.randn(rows, 8)
        back = {}
        for name, tensor in to_original(state, family, geometry).items():
            back.update(convert_tensor(name, tensor, family, geometry))
        assert back.keys() == state.keys()
        for name, tensor in state.items():
            torch.testing.assert_close(back[name], tensor)


def test_internlm2_config_is_untied_llama_with_its_rope() -> None:
    config = _original(
        "InternLM2ForCausalLM",
        vocab_size=92553,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        rms_norm_eps=1e-5,
        rope_theta=1_000_000,
        rope_scaling={"type": "dynamic", "factor": 2.0},
        bias=False,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    config["vision_config"] = {
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "intermediate_size": 4096,
        "qkv_bias": True,
        "qk_normalization": False,
    }
    native = native_config(
        config, "internlm2", image_token_id=92546, eos_token_id=92542, tied=False
    )
    text = native["text_config"]
    assert text["model_type"] == "llama"
    assert text["tie_word_embeddings"] is False and native["tie_word_embeddings"] is False
    assert text["head_dim"] == 128 and text["num_key_value_heads"] == 8
    assert text["rope_parameters"] == {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1e6}
    assert text["attention_bias"] is False and text["rms_norm_eps"] == 1e-5
    assert text["eos_token_id"] == 92542 and native["image_token_id"] == 92546
    assert native["image_seq_length"] == 256
    assert native["vision_config"]["use_mean_pooling"] is True  # InternViT has no final norm


def test_qwen2_config_drops_remote_code_keys() -> None:
    config = _original(
        "Qwen2ForCausalLM",
        auto_map={"AutoModel": "x.Y"},
        attn_implementation="flash_attention_2",
        rope_theta=1e6,
        hidden_size=896,
    )
    config["vision_config"] = {
        "hidden_size": 8,
        "num_hidden_layers": 1,
        "num_attention_heads": 1,
        "intermediate_size": 8,
    }
    native = native_config(config, "qwen2", image_token_id=151667, eos_token_id=151645, tied=True)
    text = native["text_config"]
    assert "auto_map" not in text and "attn_implementation" not in text
    assert text["model_type"] == "qwen2" and text["rope_theta"] == 1e6
    assert text["eos_token_id"] == 151645 and text["tie_word_embeddings"] is True


@pytest.mark.parametrize("arch", ["Phi3ForCausalLM", "InternLM3ForCausalLM", "LlamaForCausalLM"])
def test_unconvertible_language_models_are_refused_naming_what_works(arch: str) -> None:
    with pytest.raises(UnsupportedCheckpointError) as info:
        check_format("OpenGVLab/Mini-InternVL-Chat-4B-V1-5", _original(arch))
    message = str(info.value)
    assert arch in message and "Qwen2" in message and "InternLM2" in message
    assert "-V1-5-hf" not in message  # no advice to use a repository that does not exist


def test_families_and_formats() -> None:
    assert check_convertible("a/b", _original("Qwen2ForCausalLM")) == "qwen2"
    assert check_convertible("a/b", _original("InternLM2ForCausalLM")) == "internlm2"
    assert check_format("a/b", _original("InternLM2ForCausalLM")) == "original"
    assert check_format("a/b", {"model_type": "internvl"}) == "native"
    with pytest.raises(UnsupportedCheckpointError, match="v1"):
        check_convertible("a/b", {**_original("Qwen2ForCausalLM"), "ps_version": "v1"})
    with pytest.raises(UnsupportedCheckpointError, match="phi3-chat"):
        check_convertible("a/b", {**_original("Qwen2ForCausalLM"), "template": "phi3-chat"})


def test_source_key_follows_commit_or_content(tmp_path: Path) -> None:
    snapshot = tmp_path / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    other = tmp_path / "snapshots" / ("b" * 40)
    other.mkdir()
    assert source_key(snapshot) != source_key(other)
    folder = tmp_path / "local"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    first = source_key(folder)
    assert source_key(folder) == first
    (folder / "config.json").write_text('{"x": 1}')
    assert source_key(folder) != first
    changed = source_key(folder)
    (folder / "modeling_internvl_chat.py").write_text("raise SystemExit")
    assert source_key(folder) == changed  # code files are never read, not even for the key

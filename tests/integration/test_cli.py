"""The `internvl-agent` command line, end to end on the tiny random-weight checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from internvl_agent.cli import EXIT_CODES, app
from internvl_agent.records import load_run
from tests.support.browser import skip_without_browser

runner = CliRunner()


def test_tiny_checkpoint_command(tmp_path: Path) -> None:
    result = runner.invoke(app, ["tiny-checkpoint", str(tmp_path / "ckpt")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ckpt" / "config.json").exists()
    assert "RANDOM" in result.output and "noise" in result.output


def test_tiny_checkpoint_rejects_unknown_size(tmp_path: Path) -> None:
    result = runner.invoke(app, ["tiny-checkpoint", str(tmp_path / "x"), "--size", "huge"])
    assert result.exit_code == 2 and "unknown size" in result.output


@pytest.mark.parametrize("llm", ["qwen2", "internlm2"])
def test_original_tiny_checkpoint_and_convert_commands(tmp_path: Path, llm: str) -> None:
    source, target = tmp_path / "orig", tmp_path / "native"
    args = ["tiny-checkpoint", str(source), "--format", "original", "--llm", llm]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    config = json.loads((source / "config.json").read_text())
    assert config["architectures"] == ["InternVLChatModel"] and "llm_config" in config
    released = {"internlm2": "tokenizer.model", "qwen2": "vocab.json"}[llm]
    assert (source / released).exists() and (source / "tokenizer_config.json").exists()
    assert sum(f.stat().st_size for f in source.iterdir()) < 1_000_000
    from safetensors import safe_open

    with safe_open(str(source / "model.safetensors"), framework="pt") as f:
        names = set(f.keys())
    assert "mlp1.1.weight" in names and "vision_model.embeddings.class_embedding" in names
    if llm == "internlm2":
        assert "language_model.model.layers.0.attention.wqkv.weight" in names
        assert "language_model.output.weight" in names
    result = runner.invoke(app, ["convert", str(source), str(target)])
    assert result.exit_code == 0, result.output
    native = json.loads((target / "config.json").read_text())
    assert native["architectures"] == ["InternVLForConditionalGeneration"]
    result = runner.invoke(app, ["convert", str(source), str(target)])  # not empty any more
    assert result.exit_code == 2 and "not empty" in result.output


def test_tiny_checkpoint_rejects_unknown_format_and_llm(tmp_path: Path) -> None:
    result = runner.invoke(app, ["tiny-checkpoint", str(tmp_path / "x"), "--format", "gguf"])
    assert result.exit_code == 2 and "--format 'gguf'" in result.output
    args = ["tiny-checkpoint", str(tmp_path / "y"), "--format", "original", "--llm", "phi3"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "unknown language model 'phi3'" in result.output


def test_convert_refuses_an_unconvertible_checkpoint(tmp_path: Path) -> None:
    config = {
        "architectures": ["InternVLChatModel"],
        "llm_config": {"architectures": ["Phi3ForCausalLM"]},
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    result = runner.invoke(app, ["convert", str(tmp_path), str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "Phi3ForCausalLM" in result.output and "InternLM2" in result.output
    assert not (tmp_path / "out").exists()


def test_chat_command_streams_an_answer(tiny_checkpoint: Path, tmp_path: Path) -> None:
    image = tmp_path / "shot.png"
    Image.new("RGB", (300, 200), "blue").save(image)
    args = ["chat", "Describe", "-i", str(image), "--model", str(tiny_checkpoint)]
    result = runner.invoke(app, [*args, "--max-tokens", "8", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "input tokens" in result.output and "noise" in result.output


def test_chat_command_reports_a_bad_image_cleanly(tiny_checkpoint: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    result = runner.invoke(app, ["chat", "x", "-i", str(bad), "--model", str(tiny_checkpoint)])
    assert result.exit_code == 2
    assert "cannot be decoded as an image" in result.output
    assert "Traceback" not in result.output


def test_ground_command_prints_json(tiny_checkpoint: Path, tmp_path: Path) -> None:
    image = tmp_path / "shot.png"
    Image.new("RGB", (320, 240), "white").save(image)
    args = ["ground", str(image), "the OK button", "--model", str(tiny_checkpoint)]
    result = runner.invoke(app, [*args, "--device", "cpu", "--out", str(tmp_path / "m.png")])
    assert result.exit_code in (0, 1), result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["image_size"] == [320, 240] and payload["description"] == "the OK button"
    assert (payload["box"] is None) == (result.exit_code == 1)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--viewport", "big"], "WIDTHxHEIGHT"),
        (["--secret", "password"], "NAME=ENV_VAR"),
        (["--secret", "password=NO_SUCH_VARIABLE_XYZ"], "is not set"),
    ],
)
def test_run_command_rejects_bad_options(extra: list[str], message: str) -> None:
    result = runner.invoke(app, ["run", "--task", "x", *extra])
    assert result.exit_code == 2 and message in result.output


def test_run_command_end_to_end_with_the_tiny_checkpoint(
    tiny_checkpoint: Path, tmp_path: Path, site: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    skip_without_browser()
    monkeypatch.setenv("DEMO_PASSWORD", "wonderland")
    args = [
        "run",
        "--task",
        "Log in as alice with <secret>password</secret>",
        "--url",
        site,
        "--model",
        str(tiny_checkpoint),
        "--device",
        "cpu",
        "--max-steps",
        "3",
        "--max-tiles",
        "1",
        "--record",
        str(tmp_path / "runs"),
        "--allowed-domain",
        "127.0.0.1",
        "--secret",
        "password=DEMO_PASSWORD",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code in EXIT_CODES.values(), result.output
    assert "noise" in result.output and "record:" in result.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    run = load_run(run_dir)
    assert run.finished and run.info.status in EXIT_CODES
    assert EXIT_CODES[run.info.status] == result.exit_code
    assert 1 <= len(run.steps) <= 3 and (run_dir / "report.html").exists()
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert b"wonderland" not in path.read_bytes(), path


def test_demo_main_job_runs_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    skip_without_browser()
    from internvl_agent import demo

    monkeypatch.delenv("INTERNVL_AGENT_MODEL", raising=False)
    monkeypatch.setattr(demo, "TINY", tmp_path / "tiny")
    result = runner.invoke(app, ["demo", "--max-steps", "2", "--record", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert load_run(run_dir).finished


def test_run_desktop_without_a_display_names_the_fix(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    args = ["run", "--desktop", "--task", "x", "--model", str(tiny_checkpoint), "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "DISPLAY" in result.output or "Xvfb" in result.output


def test_run_desktop_refuses_a_url() -> None:
    result = runner.invoke(app, ["run", "--desktop", "--url", "http://x", "--task", "x"])
    assert result.exit_code == 2 and "--desktop" in result.output


def test_serve_help_warns_about_binding() -> None:
    result = runner.invoke(app, ["serve", "--help"])
    assert result.exit_code == 0 and "0.0.0.0" in result.output

"""Nothing a model returns loses a record or ends a run with an internal error; redaction covers
the encodings a browser uses; nothing derived from a secret is echoed."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

import pytest
from langchain_core.messages import AIMessage
from PIL import Image

from internvl_agent.actions import TypeText, execute, read_reply
from internvl_agent.agent import GUIAgent
from internvl_agent.agent.safety import make_redactor
from internvl_agent.grounding import draw_box, result_from_text
from internvl_agent.records import RunRecorder, StepRecord, ToolCallRecord, json_safe, load_run
from tests.support.fakes import ToolCallingFake, tool_calling_fake
from tests.support.fuzz import FuzzScreen

SECRETS = ["Tk*9~x y/ü!", "a b~c/d!e*f", "pässwörd 😀", "x'y\"z<&>#%+=?"]


def _js_encode_uri_component(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="!~*'()")  # what encodeURIComponent leaves alone, by the spec


@pytest.mark.parametrize("secret", SECRETS)
def test_redaction_covers_browser_encodings(secret: str) -> None:
    redact = make_redactor({"pw": secret})
    forms = {
        "form": urlencode({"q": secret})[2:],  # application/x-www-form-urlencoded
        "form-lower-hex": urlencode({"q": secret})[2:].lower(),
        "component": _js_encode_uri_component(secret),
        "json": json.dumps(secret)[1:-1],
        "json-utf8": json.dumps(secret, ensure_ascii=False)[1:-1],
        "html": secret.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"),
    }
    for kind, form in forms.items():
        text = f"GET /search?q={form}&x=1"
        assert redact(text) == "GET /search?q=<secret:pw>&x=1", (kind, form)
    assert redact(redact(secret)) == "<secret:pw>"  # idempotent


def test_the_issues_exact_forms_are_redacted() -> None:
    redact = make_redactor({"pw": "Tk*9~x y/ü!"})
    assert redact("Tk*9%7Ex+y%2F%C3%BC%21") == "<secret:pw>"
    assert redact("Tk*9~x%20y%2F%C3%BC!") == "<secret:pw>"
    assert redact("Tk*9%7Ex+y%2F%FC%21") == "<secret:pw>"  # a form in windows-1252
    assert make_redactor({"pw": "€ и"})("%80+%26%231080%3B") == "<secret:pw>"  # char refs


def test_typed_secret_is_never_echoed_even_cut_off() -> None:
    screen = FuzzScreen()
    secret = "S3cr3t-" + "x" * 80  # longer than the 57-character echo
    action = TypeText(text="<secret>pw</secret>", x=10, y=10)
    for text in (secret, secret + "!"):  # typing fails for one length, works for the other
        outcome = execute(screen, action, point=(1, 1), text=text, secret=True)
        assert "S3cr3t" not in outcome.message, outcome.message
    assert screen.typed == [secret, secret + "!"]


def test_lone_surrogates_huge_ints_and_odd_keys_are_written(tmp_path: Path) -> None:
    recorder = RunRecorder(tmp_path, task="t \ud800", meta={1: 10**4400, "nan": float("nan")})
    step = StepRecord(
        index=1,
        raw_model_output="done(answer='ok \ud800') \udfff\ud83d\ude00",
        tool_call=ToolCallRecord(name="x", args=json_safe({1: {2, 3}, "n": -(10**5000)})),
        error="\ud800",
    )
    recorder.record_step(step)
    recorder.finish("done", answer="ok \ud800")
    data = load_run(recorder.path)
    assert data.info.status == "done" and not data.problems
    assert data.steps[0].raw_model_output.endswith("\ufffd😀")  # the pair is joined
    assert data.steps[0].tool_call.args["n"] == "<an integer of about 5001 digits>"
    assert data.info.answer == "ok \ufffd" and not data.info.record_incomplete


@pytest.mark.parametrize(
    "answer",
    [
        "<ref>x</ref><box>[[500, 500]]</box>",  # a point answer, which the README accepts
        "<box>[[100, 100, 100, 100]]</box>",  # zero width and height
        "<box>[[900, 100, 100, 900]]</box>",  # reversed
        "<box>[[500, 0, 500, 1000]]</box>",  # zero width
    ],
)
def test_point_and_zero_width_boxes_are_drawn_and_recorded(answer: str, tmp_path: Path) -> None:
    image = Image.new("RGB", (64, 48), "white")
    result = result_from_text("x", answer, image.size)
    assert result.box is not None
    draw_box(image, result)
    recorder = RunRecorder(tmp_path, task="t")
    raw, marked = recorder.save_screenshot(1, image, result.point, result.box)
    assert (recorder.path / raw).is_file() and (recorder.path / marked).is_file()


def test_python_built_replies_never_fail_reading() -> None:
    huge = AIMessage.model_construct(
        content="\ud800",
        tool_calls=[{"name": "click", "args": {"x": 10**4400, 3: "k"}, "id": "1"}],
        invalid_tool_calls=[],
        type="ai",
    )
    reply = read_reply(huge, ["click", "done"])
    assert reply.action is None and reply.error
    json.dumps(json_safe(reply.tool_args))


def test_surrogate_answer_and_huge_int_keep_the_record(tmp_path: Path) -> None:
    calls = [
        ("click", {"x": 10**4400, "y": 5}),
        ("type_text", {"text": "hi \ud800", 7: "x"}),
        ("done", {"answer": "ok \ud800"}),
    ]
    replies = [  # built in Python, unvalidated: what a custom model could return
        AIMessage.model_construct(
            content="",
            tool_calls=[{"name": n, "args": a, "id": f"c{i}", "type": "tool_call"}],
            invalid_tool_calls=[],
            type="ai",
        )
        for i, (n, a) in enumerate(calls)
    ]
    model = ToolCallingFake(messages=iter(replies))
    agent = GUIAgent(model, FuzzScreen(), record_dir=tmp_path)
    result = agent.run("t")
    assert result.status == "done", result.error
    data = load_run(result.record_path)
    assert data.info.status == "done" and len(data.steps) == 3 and not data.problems
    assert data.info.answer == "ok \ufffd"


def test_a_failed_write_makes_the_run_an_error_not_done(tmp_path: Path, monkeypatch) -> None:
    def broken(self, step):
        raise OSError("No space left on device")

    monkeypatch.setattr(RunRecorder, "record_step", broken)
    model = tool_calling_fake(("wait", {"seconds": 0}), ("done", {"answer": "ok"}))
    result = GUIAgent(model, FuzzScreen(), record_dir=tmp_path).run("t")
    assert result.status == "error"
    assert result.error.startswith("the run record is incomplete (2 write(s) failed")
    assert "the run ended done" in result.error
    info = json.loads((result.record_path / "run.json").read_text())
    assert info["status"] == "error" and info["record_incomplete"] is True
    assert "No space left on device" in info["record_problems"][0]

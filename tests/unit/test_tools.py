"""Qwen2.5 tool format: tolerant and streaming parsing of tool calls, formatting helpers.

Rendering against the Qwen2.5 template is tests/integration/test_tools_template.py's.
"""

from __future__ import annotations

import itertools
import json
import random

import pytest
from langchain_core.messages import (
    AIMessageChunk,
)

from internvl_agent.chat.tools import (
    InvalidToolCallEvent,
    ParsedOutput,
    TextDelta,
    ToolCallEvent,
    ToolCallStreamParser,
    format_tool_call,
    parse_tool_calls,
    render_tools_system_prompt,
    to_tool_call_chunk,
)
from internvl_agent.errors import ConfigurationError

NAMES = ["click", "type_text"]


def test_format_helpers() -> None:
    assert format_tool_call("f", {"a": [1, "é"]}) == (
        '<tool_call>\n{"name": "f", "arguments": {"a": [1, "é"]}}\n</tool_call>'
    )
    with pytest.raises(ConfigurationError, match="not JSON-serializable"):
        render_tools_system_prompt([{"f": object()}])


# --------------------------------------------------------------------------- parsing


def call(name: str, args: dict) -> str:
    return format_tool_call(name, args)


def summary(out: ParsedOutput) -> tuple:
    """A comparable view of a parse result, without the random ids."""
    return (
        out.content,
        [(tc["name"], tc["args"]) for tc in out.tool_calls],
        [(tc["name"], tc["args"], tc["error"]) for tc in out.invalid_tool_calls],
    )


CASES: dict[str, str] = {
    "plain": "Hello there, nothing to call.",
    "empty": "",
    "blank": " \n\t ",
    "one_call": call("click", {"x": 1, "y": 2}),
    "text_around": "Let me click.\n" + call("click", {"x": 1, "y": 2}) + "\nDone.",
    "two_calls": call("click", {"x": 1, "y": 2}) + "\n" + call("type_text", {"text": "a<b>"}),
    "args_string": '<tool_call>\n{"name": "click", "arguments": "{\\"x\\": 3, \\"y\\": 4}"}'
    "\n</tool_call>",
    "parameters_key": '<tool_call>{"name": "click", "parameters": {"x": 5, "y": 6}}</tool_call>',
    "no_arguments": '<tool_call>\n{"name": "type_text"}\n</tool_call>',
    "function_wrapper": '<tool_call>{"function": {"name": "click", "arguments": {"x": 0, "y": 0}}}'
    "</tool_call>",
    "fenced_in_block": '<tool_call>\n```json\n{"name": "click", "arguments": {"x": 7, "y": 8}}'
    "\n```\n"
    "</tool_call>",
    "two_objects_one_block": '<tool_call>\n{"name": "click", "arguments": {"x": 1, "y": 1}}\n'
    '{"name": "click", "arguments": {"x": 2, "y": 2}}\n</tool_call>',
    "extra_brace": '<tool_call>\n{"name": "click", "arguments": {"x": 1, "y": 1}}}\n</tool_call>',
    "truncated_complete": 'Ok <tool_call>\n{"name": "click", "arguments": {"x": 9, "y": 9}}\n',
    "truncated_incomplete": 'Ok <tool_call>\n{"name": "type_text", "arguments": '
    '{"text": "rm -rf /ho',
    "truncated_tag_only": "Thinking...<tool_call>",
    "reopen_before_close": '<tool_call>{"name": "click", "arguments": {"x": 1, "y": 1}}\n'
    '<tool_call>{"name": "type_text", "arguments": {"text": "x"}}</tool_call>',
    "bad_json": "<tool_call>\n{name: click, x=1}\n</tool_call> after",
    "no_name": '<tool_call>{"arguments": {"x": 1}}</tool_call>',
    "name_not_string": '<tool_call>{"name": 3, "arguments": {}}</tool_call>',
    "args_not_object": '<tool_call>{"name": "click", "arguments": [1, 2]}</tool_call>',
    "args_bad_string": '<tool_call>{"name": "click", "arguments": "{x: 1"}</tool_call>',
    "not_an_object": "<tool_call>[1, 2, 3]</tool_call>",
    "unknown_tool": call("scroll", {"dy": 3}),
    "stray_close": "Answer is 4.</tool_call> Bye",
    "partial_tag_text": "a <tool_ call and </tool_c and <tool",
    "bare_call": '  {"name": "click", "arguments": {"x": 1, "y": 2}}  ',
    "bare_fenced": '```json\n{"name": "type_text", "arguments": {"text": "hi"}}\n```',
    "bare_unknown": '{"name": "scroll", "arguments": {"dy": 1}}',
    "bare_with_text_after": '{"name": "click", "arguments": {"x": 1, "y": 2}} and more',
    "bare_without_arguments": '{"name": "click"}',
    "bare_then_tag": '{"name": "click", "arguments": {"x": 1, "y": 2}}\n'
    + call("click", {"x": 3, "y": 3}),
    "tag_inside_json_string": '{"name": "type_text", "arguments": {"text": "<tool_call>"}}',
    "json_answer": '{"answer": 42}',
    "unicode": "日本語 " + call("type_text", {"text": "ünï ✓"}) + " ✓",
    "many_blocks_and_noise": "x"
    + "".join(call("click", {"x": i, "y": i}) + " y " for i in range(4)),
}


def test_plain_text_is_content() -> None:
    out = parse_tool_calls(CASES["plain"], tool_names=NAMES)
    assert summary(out) == ("Hello there, nothing to call.", [], [])


def test_single_call_has_id_and_type() -> None:
    out = parse_tool_calls(CASES["one_call"], tool_names=NAMES)
    assert summary(out) == ("", [("click", {"x": 1, "y": 2})], [])
    tc = out.tool_calls[0]
    assert tc["type"] == "tool_call"
    assert tc["id"].startswith("call_") and len(tc["id"]) == 29


def test_ids_are_unique() -> None:
    out = parse_tool_calls(CASES["many_blocks_and_noise"], tool_names=NAMES)
    ids = [tc["id"] for tc in out.tool_calls]
    assert len(ids) == 4 and len(set(ids)) == 4


def test_text_around_and_several_blocks() -> None:
    out = parse_tool_calls(CASES["text_around"], tool_names=NAMES)
    assert summary(out) == ("Let me click.\n\nDone.", [("click", {"x": 1, "y": 2})], [])
    out = parse_tool_calls(CASES["two_calls"])
    assert [tc["name"] for tc in out.tool_calls] == ["click", "type_text"]
    assert out.tool_calls[1]["args"] == {"text": "a<b>"}
    out = parse_tool_calls(CASES["many_blocks_and_noise"])
    assert out.content == "x y  y  y  y"


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("args_string", [("click", {"x": 3, "y": 4})]),
        ("parameters_key", [("click", {"x": 5, "y": 6})]),
        ("no_arguments", [("type_text", {})]),
        ("function_wrapper", [("click", {"x": 0, "y": 0})]),
        ("fenced_in_block", [("click", {"x": 7, "y": 8})]),
        ("two_objects_one_block", [("click", {"x": 1, "y": 1}), ("click", {"x": 2, "y": 2})]),
        ("extra_brace", [("click", {"x": 1, "y": 1})]),
        ("truncated_complete", [("click", {"x": 9, "y": 9})]),
        ("reopen_before_close", [("click", {"x": 1, "y": 1}), ("type_text", {"text": "x"})]),
    ],
)
def test_tolerated_variants(case: str, expected: list) -> None:
    out = parse_tool_calls(CASES[case], tool_names=NAMES)
    assert [(tc["name"], tc["args"]) for tc in out.tool_calls] == expected
    assert out.invalid_tool_calls == []


@pytest.mark.parametrize(
    ("case", "name", "error"),
    [
        ("truncated_incomplete", None, "cut off"),
        ("truncated_tag_only", None, "cut off"),
        ("bad_json", None, "not valid JSON"),
        ("no_name", None, '"name"'),
        ("name_not_string", None, '"name"'),
        ("args_not_object", "click", "must be a JSON object"),
        ("args_bad_string", "click", "not valid JSON"),
        ("not_an_object", None, "not a JSON object"),
        ("unknown_tool", "scroll", "known tools are: click, type_text"),
    ],
)
def test_invalid_calls_carry_raw_text_and_error(case: str, name: str | None, error: str) -> None:
    out = parse_tool_calls(CASES[case], tool_names=NAMES)
    assert out.tool_calls == []
    [itc] = out.invalid_tool_calls
    assert itc["name"] == name
    assert error in itc["error"]
    assert itc["args"].startswith("<tool_call>")
    assert itc["args"] in CASES[case]
    assert itc["id"].startswith("call_")


def test_truncated_call_is_never_executed_with_partial_args() -> None:
    out = parse_tool_calls(CASES["truncated_incomplete"], tool_names=NAMES)
    assert out.content == "Ok" and out.tool_calls == []


def test_unknown_tool_allowed_without_tool_names() -> None:
    out = parse_tool_calls(CASES["unknown_tool"])
    assert [tc["name"] for tc in out.tool_calls] == ["scroll"]


def test_stray_close_and_partial_tags_stay_text() -> None:
    assert parse_tool_calls(CASES["stray_close"]).content == "Answer is 4. Bye"
    out = parse_tool_calls(CASES["partial_tag_text"])
    assert summary(out) == ("a <tool_ call and </tool_c and <tool", [], [])


def test_bare_json_call_only_when_whole_output_and_tools_bound() -> None:
    out = parse_tool_calls(CASES["bare_call"], tool_names=NAMES)
    assert summary(out) == ("", [("click", {"x": 1, "y": 2})], [])
    out = parse_tool_calls(CASES["bare_fenced"], tool_names=NAMES)
    assert summary(out) == ("", [("type_text", {"text": "hi"})], [])
    for case in ("bare_unknown", "bare_with_text_after", "bare_without_arguments", "json_answer"):
        out = parse_tool_calls(CASES[case], tool_names=NAMES)
        assert summary(out) == (CASES[case].strip(), [], []), case
    out = parse_tool_calls(CASES["bare_call"])  # no tools bound: it is just text
    assert out.tool_calls == [] and out.content == CASES["bare_call"].strip()
    out = parse_tool_calls(CASES["bare_then_tag"], tool_names=NAMES)
    assert [tc["args"] for tc in out.tool_calls] == [{"x": 3, "y": 3}]
    assert out.content.startswith('{"name": "click"')


def test_tag_inside_bare_json_string_is_a_tag() -> None:
    out = parse_tool_calls(CASES["tag_inside_json_string"], tool_names=NAMES)
    assert out.tool_calls == []
    assert len(out.invalid_tool_calls) == 1


def test_round_trip_with_format_tool_call() -> None:
    args = {"text": 'quote " and </tool_call> inside', "n": [1, {"a": None}]}
    out = parse_tool_calls("pre " + format_tool_call("type_text", args), tool_names=NAMES)
    # A literal </tool_call> inside a string argument ends the block early: that call is
    # reported invalid rather than silently mangled.
    assert out.tool_calls == [] and len(out.invalid_tool_calls) == 1
    args = {"text": 'quote " and <b> é', "n": [1, {"a": None}]}
    out = parse_tool_calls("pre " + format_tool_call("type_text", args), tool_names=NAMES)
    assert summary(out) == ("pre", [("type_text", args)], [])


def test_never_raises_on_garbage() -> None:
    rng = random.Random(0)
    pieces = [
        "<tool_call>",
        "</tool_call>",
        "<tool_",
        "{",
        "}",
        '"name"',
        ":",
        '"click"',
        '"arguments"',
        "[",
        "]",
        ",",
        "null",
        "\\",
        '"',
        "```",
        " ",
        "\n",
        "é",
        "1e999",
        "NaN",
    ]
    for _ in range(500):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        for names in (None, NAMES):
            out = parse_tool_calls(text, tool_names=names)
            assert isinstance(out.content, str)
            assert streamed(text, [len(text) // 2], names) == summary(out)


# --------------------------------------------------------------------------- streaming


def streamed(text: str, cuts: list[int], tool_names=NAMES) -> tuple:
    """Feed `text` split at `cuts`; return (content, calls, invalid calls) like `summary`."""
    parser = ToolCallStreamParser(tool_names=tool_names)
    events = []
    bounds = [0, *cuts, len(text)]
    for a, b in itertools.pairwise(bounds):
        events += parser.feed(text[a:b])
    events += parser.finish()
    assert parser.finish() == [] and parser.feed("more") == []
    content = "".join(e.text for e in events if isinstance(e, TextDelta))
    calls = [e for e in events if isinstance(e, ToolCallEvent | InvalidToolCallEvent)]
    assert [e.index for e in calls] == list(range(len(calls)))
    return (
        content,
        [(e.tool_call["name"], e.tool_call["args"]) for e in calls if isinstance(e, ToolCallEvent)],
        [
            (e.invalid_tool_call["name"], e.invalid_tool_call["args"], e.invalid_tool_call["error"])
            for e in calls
            if isinstance(e, InvalidToolCallEvent)
        ],
    )


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("tool_names", [None, NAMES], ids=["unbound", "bound"])
def test_streaming_matches_non_streaming_at_every_split(case: str, tool_names) -> None:
    text = CASES[case]
    expected = summary(parse_tool_calls(text, tool_names=tool_names))
    assert expected[0] == expected[0].strip()
    for cut in range(len(text) + 1):
        assert streamed(text, [cut], tool_names) == expected, cut
    assert streamed(text, list(range(1, len(text))), tool_names) == expected
    rng = random.Random(case)
    for _ in range(20):
        cuts = sorted(rng.sample(range(len(text) + 1), k=min(len(text) + 1, 4)))
        assert streamed(text, cuts, tool_names) == expected


def test_streaming_emits_text_early_and_holds_possible_tags() -> None:
    parser = ToolCallStreamParser(tool_names=NAMES)
    assert parser.feed("Hello wor") == [TextDelta("Hello wor")]
    assert parser.feed("ld <tool") == [TextDelta("ld")]  # " " and "<tool" are held
    assert parser.feed('_call>\n{"name": "click", "arguments": {"x": 1, "y": 2}}') == []
    [event] = parser.feed("\n</tool_call>")
    assert isinstance(event, ToolCallEvent) and event.index == 0
    assert event.tool_call["args"] == {"x": 1, "y": 2}
    assert parser.feed(" bye") == [TextDelta("  bye")]
    assert parser.finish() == []


def test_streaming_holds_possible_bare_call_until_finish() -> None:
    parser = ToolCallStreamParser(tool_names=NAMES)
    assert parser.feed('{"name": "click", "arguments": {"x": 1, "y": 2}}') == []
    [event] = parser.finish()
    assert isinstance(event, ToolCallEvent)
    parser = ToolCallStreamParser(tool_names=NAMES)
    assert parser.feed('{"a": 1} then text') == []
    assert parser.finish() == [TextDelta('{"a": 1} then text')]
    parser = ToolCallStreamParser()  # nothing bound: JSON text streams at once
    assert parser.feed('{"a": 1}') == [TextDelta('{"a": 1}')]


def test_tool_call_chunks_add_up_to_the_parsed_message() -> None:
    text = CASES["text_around"] + CASES["unknown_tool"] + CASES["truncated_incomplete"]
    parser = ToolCallStreamParser(tool_names=NAMES)
    chunks = []
    for ch in text:
        for event in parser.feed(ch):
            chunks.append(event_chunk(event))
    chunks += [event_chunk(e) for e in parser.finish()]
    message = chunks[0]
    for chunk in chunks[1:]:
        message = message + chunk
    expected = parse_tool_calls(text, tool_names=NAMES)
    assert message.content == expected.content
    assert [(tc["name"], tc["args"]) for tc in message.tool_calls] == [("click", {"x": 1, "y": 2})]
    assert [tc["name"] for tc in message.invalid_tool_calls] == ["scroll", None]
    assert [tc["args"] for tc in message.invalid_tool_calls] == [
        tc["args"] for tc in expected.invalid_tool_calls
    ]
    json.dumps(message.tool_call_chunks)


def event_chunk(event) -> AIMessageChunk:
    if isinstance(event, TextDelta):
        return AIMessageChunk(content=event.text)
    return AIMessageChunk(content="", tool_call_chunks=[to_tool_call_chunk(event)])

"""Qwen2.5 tool format: ChatInternVL's rendering matches the Qwen2.5 chat template, applied by
the tiny checkpoint's tokenizer.
"""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.utils.function_calling import convert_to_openai_tool

from internvl_agent.chat.messages import messages_to_turns
from internvl_agent.chat.tools import render_tools_system_prompt
from internvl_agent.engine.prompt import render_segments

# The parts of the Qwen2.5 chat template that involve tools, as a test oracle.
QWEN25_TOOLS_TEMPLATE = (
    "{%- if tools %}{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] }}"
    "{%- else %}{{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}"
    "{%- endif %}"
    '{{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.'
    '\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}'
    '{%- for tool in tools %}{{- "\\n" }}{{- tool | tojson }}{%- endfor %}'
    '{{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and '
    "arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n"
    '{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call>'
    '<|im_end|>\\n" }}'
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'user' or (message.role == 'assistant' and not message.tool_calls) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- elif message.role == 'assistant' %}{{- '<|im_start|>' + message.role }}"
    "{%- if message.content %}{{- '\\n' + message.content }}{%- endif %}"
    "{%- for tool_call in message.tool_calls %}"
    "{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}"
    '{{- \'\\n<tool_call>\\n{"name": "\' }}{{- tool_call.name }}'
    "{{- '\", \"arguments\": ' }}{{- tool_call.arguments | tojson }}{{- '}\\n</tool_call>' }}"
    "{%- endfor %}{{- '<|im_end|>\\n' }}"
    "{%- elif message.role == 'tool' %}"
    "{%- if loop.index0 == 0 or messages[loop.index0 - 1].role != 'tool' %}"
    "{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\\n<tool_response>\\n' }}{{- message.content }}{{- '\\n</tool_response>' }}"
    "{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\\n' }}"
    "{%- endif %}{%- endif %}{%- endfor %}"
)


def click(x: int, y: int, element: str = "") -> str:
    """Click at a screen position.

    Args:
        x: horizontal pixel
        y: vertical pixel
        element: what is clicked (e.g. "Search" — ünïcode)
    """
    return ""


def type_text(text: str) -> str:
    """Type text."""
    return ""


TOOLS = [convert_to_openai_tool(click), convert_to_openai_tool(type_text)]


@pytest.fixture(scope="module")
def qwen_tokenizer(tiny_checkpoint):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    tok.chat_template = QWEN25_TOOLS_TEMPLATE
    return tok


def _our_prompt(messages: list[BaseMessage], tools: list[dict] | None = None) -> list[str]:
    """The prompt ChatInternVL renders for `messages`, one string per turn (system first)."""
    tools_prompt = render_tools_system_prompt(tools) if tools else None
    turns = messages_to_turns(messages, tools_prompt=tools_prompt)
    return [
        "".join(
            t
            for t, _ in render_segments(
                [turn], [], default_system=None, add_generation_prompt=False
            )
        )
        for turn in turns
    ]


def test_tools_block_matches_qwen25_template(qwen_tokenizer) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    rendered = qwen_tokenizer.apply_chat_template(messages, tools=TOOLS, tokenize=False)
    ours = _our_prompt([SystemMessage("Be brief."), HumanMessage("hi")], TOOLS)
    assert rendered == "".join(ours)
    assert "ünïcode" in ours[0]  # ensure_ascii=False, like the template's tojson
    block = render_tools_system_prompt(TOOLS)
    assert block.startswith("# Tools\n\nYou may call one or more functions")
    assert block.endswith(
        '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
    )
    assert block.count("\n{") == len(TOOLS) + 1  # one JSON per line + the example


def test_assistant_calls_and_tool_responses_match_qwen25_template(qwen_tokenizer) -> None:
    calls = [
        {"name": "click", "args": {"x": 1, "y": 2}, "id": "a", "type": "tool_call"},
        {"name": "type_text", "args": {"text": 'héllo "q"'}, "id": "b", "type": "tool_call"},
    ]
    messages = [
        {"role": "user", "content": "go"},
        {
            "role": "assistant",
            "content": "Sure.",
            "tool_calls": [
                {"type": "function", "function": {"name": c["name"], "arguments": c["args"]}}
                for c in calls
            ],
        },
        {"role": "tool", "content": "clicked"},
        {"role": "tool", "content": "typed"},
    ]
    conversation: list[BaseMessage] = [
        HumanMessage("go"),
        AIMessage("Sure.", tool_calls=calls),  # type: ignore[arg-type]
        ToolMessage("clicked", tool_call_id="a"),
        ToolMessage("typed", tool_call_id="b"),
    ]
    rendered = qwen_tokenizer.apply_chat_template(messages, tokenize=False)
    assert rendered == "".join(_our_prompt(conversation)[1:])  # this template has no system
    no_content = messages[:2]
    no_content[1] = {**no_content[1], "content": ""}
    rendered = qwen_tokenizer.apply_chat_template(no_content, tokenize=False)
    ours = _our_prompt([HumanMessage("go"), AIMessage("", tool_calls=calls)])  # type: ignore[arg-type]
    assert rendered == "".join(ours[1:])

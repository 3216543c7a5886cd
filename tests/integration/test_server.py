"""The OpenAI-compatible server, over real HTTP on 127.0.0.1, with a tiny random checkpoint.

Raw HTTP checks the wire format (JSON shapes, SSE framing, usage, errors); ChatOpenAI checks
that an ordinary OpenAI client (and through it `ground` and `GUIAgent`) works end to end.
Random weights produce noise, but constrained decoding keeps forced tool calls and JSON valid.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from PIL import Image
from pydantic import BaseModel, Field

from internvl_agent.chat.chat_model import ChatInternVL
from internvl_agent.server import BackgroundServer, create_app, is_loopback
from tests.support.browser import skip_without_browser

MODEL_NAME = "tiny-internvl"

CLICK_TOOL = {
    "type": "function",
    "function": {
        "name": "click",
        "description": "Click a point on the screen.",
        "parameters": {
            "type": "object",
            "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
            "required": ["x", "y"],
        },
    },
}
TYPE_TOOL = {
    "type": "function",
    "function": {
        "name": "type_text",
        "description": "Type text.",
        "parameters": {
            "type": "object",
            "properties": {"text": {"type": "string", "maxLength": 20}},
            "required": ["text"],
        },
    },
}
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string", "maxLength": 30}, "score": {"type": "integer"}},
    "required": ["answer", "score"],
    "additionalProperties": False,
}


def _png_data_url(size: tuple[int, int] = (320, 200), color: str = "red") -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _user(text: str = "Hello") -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def llm(tiny_checkpoint: Path) -> ChatInternVL:
    return ChatInternVL(model=str(tiny_checkpoint), device="cpu", max_tokens=32, max_tiles=2)


@pytest.fixture(scope="module")
def base_url(llm: ChatInternVL) -> Iterator[str]:
    app = create_app(llm, served_model_name=[MODEL_NAME, "tiny-alias"])
    with BackgroundServer(app, host="127.0.0.1") as server:
        assert server.base_url.startswith("http://127.0.0.1:")
        yield server.base_url


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=120) as http:
        yield http


def chat(client: httpx.Client, **body: Any) -> httpx.Response:
    body.setdefault("model", MODEL_NAME)
    body.setdefault("messages", _user())
    return client.post("/v1/chat/completions", json=body)


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return response.json()


def stream_events(client: httpx.Client, **body: Any) -> list[Any]:
    """POST with stream=true; the SSE data payloads (JSON decoded, '[DONE]' kept as a str)."""
    body.setdefault("model", MODEL_NAME)
    body.setdefault("messages", _user())
    body["stream"] = True
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode("utf-8")
    assert raw.endswith("\n\n")
    events: list[Any] = []
    for block in raw.split("\n\n")[:-1]:
        assert block.startswith("data: "), block
        data = block[len("data: ") :]
        events.append(data if data == "[DONE]" else json.loads(data))
    return events


def assert_error(response: httpx.Response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in response.text
    if param is not None:
        assert error["param"] == param
    return error


# --------------------------------------------------------------------------- raw HTTP


def test_health_and_models(client: httpx.Client) -> None:
    assert ok(client.get("/health"))["status"] == "ok"
    models = ok(client.get("/v1/models"))
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == [MODEL_NAME, "tiny-alias"]
    assert all(m["object"] == "model" for m in models["data"])
    assert ok(client.get(f"/v1/models/{MODEL_NAME}"))["id"] == MODEL_NAME
    assert_error(client.get("/v1/models/gpt-4o"), 404)
    assert_error(client.get("/no/such/route"), 404)


def test_plain_completion(client: httpx.Client) -> None:
    body = ok(chat(client, messages=[{"role": "system", "content": "Be brief."}, *_user()]))
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == MODEL_NAME
    (choice,) = body["choices"]
    assert choice["index"] == 0
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str)
    assert "tool_calls" not in choice["message"]
    assert choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0
    assert 0 < usage["completion_tokens"] <= 32
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_model_name_echo_alias_and_default(client: httpx.Client) -> None:
    assert ok(chat(client, model="tiny-alias", max_tokens=2))["model"] == "tiny-alias"
    response = client.post("/v1/chat/completions", json={"messages": _user(), "max_tokens": 2})
    assert ok(response)["model"] == MODEL_NAME  # no model: the served one
    error = assert_error(chat(client, model="gpt-4o"), 404, param="model")
    assert error["code"] == "model_not_found" and MODEL_NAME in error["message"]


def test_max_tokens_and_max_completion_tokens(client: httpx.Client) -> None:
    body = ok(chat(client, max_tokens=3))
    assert body["usage"]["completion_tokens"] <= 3
    body = ok(chat(client, max_tokens=20, max_completion_tokens=2))
    assert body["usage"]["completion_tokens"] <= 2
    assert body["choices"][0]["finish_reason"] in ("stop", "length")


def test_sampling_options_and_seed(client: httpx.Client) -> None:
    opts = {"temperature": 0.9, "top_p": 0.9, "top_k": 20, "seed": 7, "max_tokens": 8}
    first = ok(chat(client, **opts))["choices"][0]["message"]["content"]
    again = ok(chat(client, **opts))["choices"][0]["message"]["content"]
    assert first == again  # same seed, same sample
    ok(chat(client, stop=["\n"], repetition_penalty=1.1, top_p=0, max_tokens=4))
    ok(chat(client, stop="x", max_tokens=4, user="u", parallel_tool_calls=True))


def test_image_input_and_max_tiles(client: httpx.Client) -> None:
    text_only = ok(chat(client, max_tokens=2))["usage"]["prompt_tokens"]
    image = {"type": "image_url", "image_url": {"url": _png_data_url((900, 300))}}
    content = [image, {"type": "text", "text": "Hello"}]
    one = ok(chat(client, messages=[{"role": "user", "content": content}], max_tokens=2))
    assert one["usage"]["prompt_tokens"] >= text_only + 256
    # max_tiles=1: a single tile (256 tokens); the server default (2) adds a thumbnail too.
    small = ok(
        chat(client, messages=[{"role": "user", "content": content}], max_tokens=2, max_tiles=1)
    )
    assert small["usage"]["prompt_tokens"] < one["usage"]["prompt_tokens"]
    # lmdeploy's per-image max_dynamic_patch works the same way.
    patch = {"type": "image_url", "image_url": {"url": image["image_url"]["url"]}}
    patch["image_url"]["max_dynamic_patch"] = 1
    lmdeploy = ok(chat(client, messages=[{"role": "user", "content": [patch]}], max_tokens=2))
    assert lmdeploy["usage"]["prompt_tokens"] < one["usage"]["prompt_tokens"]


def test_concurrent_requests(client: httpx.Client) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> dict[str, Any]:
        return ok(chat(client, messages=_user(f"Question {i}"), max_tokens=4))

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, range(4)))
    assert all(r["usage"]["completion_tokens"] <= 4 for r in results)
    assert len({r["id"] for r in results}) == 4


def test_stream_format(client: httpx.Client) -> None:
    events = stream_events(client, max_tokens=12)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["model"] == MODEL_NAME for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert chunks[-1]["choices"][0]["delta"] == {}
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert all("usage" not in c for c in chunks)  # not asked for
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    plain = ok(chat(client, max_tokens=12))["choices"][0]["message"]["content"]
    assert text == plain  # greedy: the stream says what the plain call says


def test_stream_usage_chunk(client: httpx.Client) -> None:
    events = stream_events(client, max_tokens=5, stream_options={"include_usage": True})
    assert events[-1] == "[DONE]"
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == []
    usage = usage_chunk["usage"]
    assert 0 < usage["completion_tokens"] <= 5
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert events[-3]["choices"][0]["finish_reason"] in ("stop", "length")


def _check_tool_call(call: dict[str, Any], tools: list[dict[str, Any]]) -> dict[str, Any]:
    assert call["type"] == "function" and call["id"]
    by_name = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    assert call["function"]["name"] in by_name
    args = json.loads(call["function"]["arguments"])
    jsonschema.validate(args, by_name[call["function"]["name"]])
    return args


def test_forced_tool_call_is_valid(client: httpx.Client) -> None:
    tools = [CLICK_TOOL, TYPE_TOOL]
    body = ok(chat(client, messages=_user("Click OK"), tools=tools, tool_choice="required"))
    choice = body["choices"][0]
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    _check_tool_call(call, tools)
    # the grammar closes the call within max_tokens: complete, so "tool_calls", not "length"
    assert choice["finish_reason"] == "tool_calls"

    named = {"type": "function", "function": {"name": "type_text"}}
    body = ok(chat(client, tools=tools, tool_choice=named, max_tokens=40))
    (call,) = body["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "type_text"
    _check_tool_call(call, tools)


def test_forced_tool_call_streamed(client: httpx.Client) -> None:
    events = stream_events(client, tools=[CLICK_TOOL], tool_choice="required")
    chunks = events[:-1]
    deltas = [d for c in chunks for d in c["choices"][0]["delta"].get("tool_calls", [])]
    assert deltas and deltas[0]["index"] == 0 and deltas[0]["id"]
    call = {
        "id": deltas[0]["id"],
        "type": deltas[0]["type"],
        "function": {
            "name": deltas[0]["function"]["name"],
            "arguments": "".join(d["function"].get("arguments", "") for d in deltas),
        },
    }
    _check_tool_call(call, [CLICK_TOOL])
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_tool_choice_none_and_tool_history(client: httpx.Client) -> None:
    body = ok(chat(client, tools=[CLICK_TOOL], tool_choice="none", max_tokens=8))
    assert "tool_calls" not in body["choices"][0]["message"]
    history = [
        *_user("Click OK"),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "click", "arguments": '{"x": 1, "y": 2}'},
                }
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "call_1",
            "content": [
                {"type": "text", "text": "clicked; the screen now:"},
                {"type": "image_url", "image_url": {"url": _png_data_url((64, 64))}},
            ],
        },
    ]
    body = ok(chat(client, messages=history, tools=[CLICK_TOOL], max_tokens=8))
    assert body["usage"]["prompt_tokens"] > 256  # the image in the tool result was read


def test_response_format_json_schema_and_object(client: httpx.Client) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER_SCHEMA}}
    body = ok(chat(client, response_format=fmt, max_tokens=48))
    content = body["choices"][0]["message"]["content"]
    jsonschema.validate(json.loads(content), ANSWER_SCHEMA)
    assert body["choices"][0]["finish_reason"] == "stop"  # complete JSON, even at the budget
    body = ok(chat(client, response_format={"type": "json_object"}, max_tokens=24))
    assert isinstance(json.loads(body["choices"][0]["message"]["content"]), dict)
    ok(chat(client, response_format={"type": "text"}, max_tokens=2))


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"n": 2}, "n"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": 3}, "temperature"),
        ({"messages": []}, "messages"),
        ({"tool_choice": "required"}, "tool_choice"),
        (
            {"tools": [CLICK_TOOL], "tool_choice": {"type": "function", "function": {"name": "x"}}},
            "tool_choice",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
            "response_format.json_schema.schema",
        ),
        ({"max_tiles": 0}, "max_tiles"),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            "messages.0.content.0",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "/etc/passwd"}}],
                    }
                ]
            },
            "messages.0.content.0.image_url.url",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "file:///etc/hosts"}}
                        ],
                    }
                ]
            },
            "messages.0.content.0.image_url.url",
        ),
        (
            {
                "messages": [
                    {
                        "role": "system",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}
                        ],
                    }
                ]
            },
            "messages.0.content.0",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "c",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{oops"},
                            }
                        ],
                    }
                ]
            },
            "messages.0.tool_calls.0.function.arguments",
        ),
        ({"messages": [{"role": "tool", "content": "no id"}]}, "messages.0.tool.tool_call_id"),
    ],
)
def test_bad_requests_are_400(client: httpx.Client, body: dict, param: str) -> None:
    error = assert_error(chat(client, **body), 400, param=param)
    assert error["type"] == "invalid_request_error"


def test_bad_image_is_400(client: httpx.Client) -> None:
    content = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]
    error = assert_error(chat(client, messages=[{"role": "user", "content": content}]), 400)
    assert error["code"] == "invalid_image"
    assert "decoded" in error["message"]
    # the same error as an HTTP error when streaming (it happens before the first byte)
    response = client.post(
        "/v1/chat/completions",
        json={
            "model": MODEL_NAME,
            "stream": True,
            "messages": [{"role": "user", "content": content}],
        },
    )
    assert_error(response, 400)


def test_invalid_json_body_is_400(client: httpx.Client) -> None:
    response = client.post(
        "/v1/chat/completions", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert assert_error(response, 400)["code"] == "invalid_json"


def test_context_too_long_is_400(client: httpx.Client) -> None:
    error = assert_error(chat(client, messages=_user("word " * 40_000), max_tokens=2), 400)
    assert error["code"] == "context_length_exceeded"


def test_internal_errors_are_500_without_details(
    client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret /home/user/path")

    monkeypatch.setattr(ChatInternVL, "_agenerate", boom)
    error = assert_error(chat(client), 500)
    assert error["type"] == "server_error"
    assert "secret" not in error["message"]


def test_api_key_and_body_limit(llm: ChatInternVL) -> None:
    app = create_app(llm, served_model_name=MODEL_NAME, api_key="s3cret", max_request_bytes=2000)
    with BackgroundServer(app) as server, httpx.Client(base_url=server.base_url) as http:
        assert http.get("/health").status_code == 200  # no key needed
        assert assert_error(http.get("/v1/models"), 401)["code"] == "invalid_api_key"
        wrong = {"Authorization": "Bearer nope"}
        assert_error(http.get("/v1/models", headers=wrong), 401)
        right = {"Authorization": "Bearer s3cret"}
        assert http.get("/v1/models", headers=right).status_code == 200
        big = {"model": MODEL_NAME, "messages": _user("x" * 5000)}
        response = http.post("/v1/chat/completions", json=big, headers=right)
        assert assert_error(response, 413)["code"] == "request_too_large"

        def chunks():  # a chunked body has no Content-Length to check up front
            payload = json.dumps(big).encode()
            for i in range(0, len(payload), 500):
                yield payload[i : i + 500]

        headers = {**right, "Content-Type": "application/json"}
        response = http.post("/v1/chat/completions", content=chunks(), headers=headers)
        assert "content-length" not in response.request.headers
        assert assert_error(response, 413)["code"] == "request_too_large"


def test_remote_images_can_be_refused(llm: ChatInternVL) -> None:
    app = create_app(llm, served_model_name=MODEL_NAME, allow_remote_images=False)
    content = [{"type": "image_url", "image_url": {"url": "http://127.0.0.1:9/x.png"}}]
    with BackgroundServer(app) as server, httpx.Client(base_url=server.base_url) as http:
        body = {"model": MODEL_NAME, "messages": [{"role": "user", "content": content}]}
        error = assert_error(http.post("/v1/chat/completions", json=body), 400)
        assert "data: URL" in error["message"]


def test_loopback_helpers() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10")


def test_serve_command_defaults_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from internvl_agent import server
    from internvl_agent.cli import app

    seen: dict[str, Any] = {}
    monkeypatch.setattr(server, "serve", lambda model, **kw: seen.update(kw, model=model))
    result = CliRunner().invoke(app, ["serve", "--dtype", "bfloat16", "--no-remote-images"])
    assert result.exit_code == 0, result.output
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8000
    assert seen["dtype"] == "bfloat16" and seen["allow_remote_images"] is False


# --------------------------------------------------------------------------- ChatOpenAI


@pytest.fixture(scope="module")
def openai_llm(base_url: str) -> Any:
    langchain_openai = pytest.importorskip("langchain_openai")
    return langchain_openai.ChatOpenAI(
        base_url=base_url + "/v1", api_key="unused", model=MODEL_NAME, max_retries=0, timeout=120
    )


class Answer(BaseModel):
    """An answer with a score."""

    answer: str = Field(max_length=30)
    score: int


def test_chatopenai_invoke_and_stream(openai_llm: Any) -> None:
    message = openai_llm.invoke("Hello", max_tokens=6)
    assert isinstance(message.content, str)
    assert message.usage_metadata["output_tokens"] <= 6
    assert message.response_metadata["model_name"] == MODEL_NAME
    assert message.response_metadata["finish_reason"] in ("stop", "length")

    chunks = list(openai_llm.stream("Hello", max_tokens=6, stream_usage=True))
    full = chunks[0]
    for chunk in chunks[1:]:
        full += chunk
    assert full.content == message.content
    assert full.usage_metadata["output_tokens"] == message.usage_metadata["output_tokens"]


async def test_chatopenai_async(openai_llm: Any) -> None:
    message = await openai_llm.ainvoke("Hello", max_tokens=4)
    assert message.usage_metadata["output_tokens"] <= 4
    parts = [c.content async for c in openai_llm.astream("Hello", max_tokens=4)]
    assert "".join(parts) == message.content


def test_chatopenai_tools(openai_llm: Any) -> None:
    from langchain_core.messages import ToolMessage

    def click(x: int, y: int) -> str:
        """Click a point on the screen."""
        return "ok"

    bound = openai_llm.bind_tools([click], tool_choice="any")
    message = bound.invoke("Click the OK button")
    (call,) = message.tool_calls
    assert call["name"] == "click" and set(call["args"]) == {"x", "y"}
    assert all(isinstance(v, int) for v in call["args"].values())

    streamed = None
    for chunk in bound.stream("Click the OK button"):
        streamed = chunk if streamed is None else streamed + chunk
    assert streamed is not None and streamed.tool_calls[0]["name"] == "click"

    # the history round-trips: AIMessage with tool calls, then the ToolMessage
    history = [("human", "Click OK"), message, ToolMessage("done", tool_call_id=call["id"])]
    reply = openai_llm.bind_tools([click]).invoke(history, max_tokens=8)
    assert reply.response_metadata["finish_reason"] in ("stop", "length", "tool_calls")


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_chatopenai_structured_output(openai_llm: Any, method: str) -> None:
    structured = openai_llm.with_structured_output(Answer, method=method)
    result = structured.invoke("Answer with a score", max_tokens=48)
    assert isinstance(result, Answer)


def test_chatopenai_images(openai_llm: Any) -> None:
    png = _png_data_url((900, 300), "blue").split(",", 1)[1]  # wide: 2 tiles + thumbnail
    content = [
        {"type": "image", "base64": png, "mime_type": "image/png"},
        {"type": "text", "text": "What colour is this?"},
    ]
    message = openai_llm.invoke([("human", content)], max_tokens=4)
    assert message.usage_metadata["input_tokens"] > 256
    # the max_tiles extension through extra_body (docs/serving.md)
    one_tile = openai_llm.model_copy(update={"extra_body": {"max_tiles": 1}})
    fewer = one_tile.invoke([("human", content)], max_tokens=4)
    assert fewer.usage_metadata["input_tokens"] < message.usage_metadata["input_tokens"]


def test_ground_through_chatopenai(openai_llm: Any) -> None:
    from internvl_agent.grounding import GroundingResult, ground

    image = Image.new("RGB", (640, 400), "white")
    result = ground(openai_llm, image, "the button", max_tokens=16)
    assert isinstance(result, GroundingResult)
    assert isinstance(result.raw_text, str)
    assert result.image_size == (640, 400)
    assert result.ok or result.error  # random weights: probably no box, but it ran


# --------------------------------------------------------------------------- GUIAgent


def test_gui_agent_through_chatopenai(openai_llm: Any, site: str, tmp_path: Path) -> None:
    skip_without_browser()
    from internvl_agent.agent.agent import GUIAgent
    from internvl_agent.computers.browser import BrowserComputer

    with BrowserComputer(viewport=(800, 600)) as computer:
        agent = GUIAgent(
            openai_llm,
            computer,
            max_steps=2,
            max_retries=1,
            allowed_domains=["127.0.0.1"],
            record_dir=tmp_path,
        )
        result = agent.run("Open the shop page", start_url=site)
    assert result.status in ("done", "failed", "max_steps", "error")
    assert result.record_path is not None and result.record_path.exists()
    assert result.steps >= 1


# --------------------------------------------------------------------------- logprobs


def test_logprobs_in_openai_format(client: httpx.Client) -> None:
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    body = ok(chat(client, logprobs=True, top_logprobs=3, max_tokens=8))
    parsed = ChatCompletion.model_validate(body)  # the OpenAI SDK's own types
    content = parsed.choices[0].logprobs.content
    assert len(content) == body["usage"]["completion_tokens"]  # no end token: 8 tokens
    for entry in content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].logprob >= entry.logprob - 1e-6
        assert bytes(entry.bytes or []).decode("utf-8", errors="replace") != "" or entry.token
    assert "".join(e.token for e in content) == parsed.choices[0].message.content
    plain = ok(chat(client, max_tokens=8))
    assert plain["choices"][0]["logprobs"] is None

    events = stream_events(client, logprobs=True, top_logprobs=3, max_tokens=8)
    chunks = [ChatCompletionChunk.model_validate(e) for e in events[:-1]]
    streamed = [
        t
        for c in chunks
        if c.choices and c.choices[0].logprobs
        for t in c.choices[0].logprobs.content
    ]
    assert [t.token for t in streamed] == [t.token for t in content]
    for a, b in zip(streamed, content, strict=True):
        assert abs(a.logprob - b.logprob) < 1e-4


def test_logprobs_of_a_forced_tool_call(client: httpx.Client) -> None:
    body = ok(
        chat(client, tools=[CLICK_TOOL], tool_choice="required", logprobs=True, max_tokens=40)
    )
    content = body["choices"][0]["logprobs"]["content"]
    arguments = body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    text = "".join(e["token"] for e in content)
    assert text.startswith('{"name": "click", "arguments": ')
    assert json.loads(text)["arguments"] == json.loads(arguments)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"$ref": "#"}}, "required": ["a"]},
        {
            "$defs": {
                "n": {
                    "type": "object",
                    "properties": {"m": {"$ref": "#/$defs/m"}},
                    "required": ["m"],
                },
                "m": {"type": "array", "items": {"$ref": "#/$defs/n"}, "minItems": 1},
            },
            "$ref": "#/$defs/n",
        },
    ],
)
def test_unsatisfiable_recursive_schema_is_400(client: httpx.Client, schema: dict) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "loop", "schema": schema}}
    error = assert_error(chat(client, response_format=fmt), 400)
    assert "no finite JSON value" in error["message"]
    tool = {"type": "function", "function": {"name": "loop", "parameters": schema}}
    error = assert_error(chat(client, tools=[tool], tool_choice="required"), 400)
    assert "no finite JSON value" in error["message"]
    ok(chat(client, max_tokens=2))  # the server is still fine

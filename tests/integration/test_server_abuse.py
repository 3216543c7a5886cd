"""A hostile client of the server: lone surrogates, oversized max_tokens, the OpenAPI schema
without the key, image URLs aimed at local services (SSRF), redirects to them."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from internvl_agent.chat.chat_model import ChatInternVL
from internvl_agent.errors import ImageInputError, MessageFormatError
from internvl_agent.server import BackgroundServer, create_app
from internvl_agent.server import images as server_images
from tests.support.hostile import RecordingServer, Server

MODEL = "tiny-internvl"
KEY = "k3y"


@pytest.fixture(scope="module")
def llm(tiny_checkpoint: Path) -> ChatInternVL:
    return ChatInternVL(model=str(tiny_checkpoint), device="cpu", max_tokens=8, max_tiles=1)


@pytest.fixture(scope="module")
def http(llm: ChatInternVL) -> Iterator[httpx.Client]:
    app = create_app(llm, served_model_name=MODEL, api_key=KEY, max_tokens_cap=64)
    with (
        BackgroundServer(app) as server,
        httpx.Client(
            base_url=server.base_url, timeout=120, headers={"Authorization": f"Bearer {KEY}"}
        ) as client,
    ):
        yield client


def _post(client: httpx.Client, raw: str) -> httpx.Response:
    """A raw JSON body: lone surrogates can only be written as escapes."""
    return client.post(
        "/v1/chat/completions", content=raw, headers={"Content-Type": "application/json"}
    )


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text
    return response.json()["error"]


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ('[{"role": "user", "content": "hello \\ud800 world"}]', "messages.0.content"),
        (
            '[{"role": "user", "content": [{"type": "text", "text": "a"},'
            ' {"type": "text", "text": "\\udfff"}]}]',
            "messages.0.content.1.text",
        ),
        (
            '[{"role": "system", "content": "be \\ud83d"}, {"role": "user", "content": "hi"}]',
            "messages.0.content",
        ),
    ],
)
def test_lone_surrogates_get_a_400_naming_the_field(
    http: httpx.Client, messages: str, param: str
) -> None:
    raw = f'{{"model": "{MODEL}", "max_tokens": 2, "messages": {messages}}}'
    error = _error(_post(http, raw), 400)
    assert error["param"] == param and error["code"] == "invalid_text"
    assert "lone UTF-16 surrogate" in error["message"]
    # a proper pair is text, not an error
    pair = '[{"role": "user", "content": "\\ud83d\\ude00"}]'
    fine = f'{{"model": "{MODEL}", "max_tokens": 2, "messages": {pair}}}'
    assert _post(http, fine).status_code == 200


def test_openapi_and_docs_need_the_key(http: httpx.Client, llm: ChatInternVL) -> None:
    bare = httpx.Client(base_url=str(http.base_url), timeout=30)
    assert _error(bare.get("/openapi.json"), 401)["code"] == "invalid_api_key"
    for path in ("/docs", "/redoc", "/v1/models", "/nope"):
        assert bare.get(path).status_code == 401, path
    assert bare.get("/health").status_code == 200
    assert http.get("/openapi.json").status_code == 200
    wrong = {"Authorization": "Bearer wrong"}
    assert bare.get("/openapi.json", headers=wrong).status_code == 401
    bare.close()


def test_max_tokens_is_capped_and_the_error_says_the_cap(http: httpx.Client) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    error = _error(http.post("/v1/chat/completions", json={**body, "max_tokens": 10**9}), 400)
    assert error["param"] == "max_tokens" and "at most 64" in error["message"]
    error = _error(
        http.post("/v1/chat/completions", json={**body, "max_completion_tokens": 65}), 400
    )
    assert error["param"] == "max_completion_tokens"
    assert http.post("/v1/chat/completions", json={**body, "max_tokens": 64}).status_code == 200


def test_the_default_cap_is_the_models_context(llm: ChatInternVL) -> None:
    app = create_app(llm, served_model_name=MODEL)
    with BackgroundServer(app) as server, httpx.Client(base_url=server.base_url) as client:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
        error = _error(client.post("/v1/chat/completions", json={**body, "max_tokens": 10**9}), 400)
        assert "at most 32768 (the model's context length)" in error["message"]


def _image_request(url: str) -> dict[str, Any]:
    content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "?"}]
    return {"model": MODEL, "max_tokens": 2, "messages": [{"role": "user", "content": content}]}


def test_remote_images_are_off_by_default(http: httpx.Client) -> None:
    other = RecordingServer()
    try:
        error = _error(http.post("/v1/chat/completions", json=_image_request(other.origin)), 400)
        assert "data: URL" in error["message"] and other.hits == []
    finally:
        other.close()


def test_local_image_hosts_are_refused_when_remote_images_are_on(llm: ChatInternVL) -> None:
    other = RecordingServer()
    app = create_app(llm, served_model_name=MODEL, allow_remote_images=True)
    try:
        with BackgroundServer(app) as server, httpx.Client(base_url=server.base_url) as client:
            for url in (
                f"{other.origin}/x.png",
                f"http://localhost:{other.port}/x.png",
                f"http://0x7f.1:{other.port}/x.png",
                f"http://[::ffff:127.0.0.1]:{other.port}/x.png",
            ):
                error = _error(client.post("/v1/chat/completions", json=_image_request(url)), 400)
                assert "private, loopback or link-local" in error["message"], url
        assert other.hits == []
    finally:
        other.close()


def test_every_resolved_address_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    def resolve(host, port, *args, **kwargs):
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with pytest.raises(ImageInputError, match=r"10\.0\.0\.5"):
        server_images.public_address("two-faced.test", 80, allow_private=False)
    assert server_images.public_address("x.test", 80, allow_private=True) == "93.184.216.34"


def test_redirects_are_checked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    inner = RecordingServer()
    # "public.test" stands for a public host (pinned to a loopback server here) that
    # redirects to a local service: the hop is checked like the first URL
    outer = Server(lambda hit: (302, {"Location": f"{inner.origin}/secret.png"}, b""))
    real = server_images.public_address
    seen: list[tuple[str, int]] = []

    def check(host: str, port: int, *, allow_private: bool) -> str:
        seen.append((host, port))
        return "127.0.0.1" if host == "public.test" else real(host, port, allow_private=False)

    monkeypatch.setattr(server_images, "public_address", check)
    try:
        with pytest.raises(ImageInputError, match="private, loopback"):
            server_images.fetch_data_url(f"http://public.test:{outer.port}/img.png")
        assert seen == [("public.test", outer.port), ("127.0.0.1", inner.port)]
        assert [h.headers.get("Host") for h in outer.hits] == [f"public.test:{outer.port}"]
        assert inner.hits == []
    finally:
        inner.close()
        outer.close()


def test_chat_model_names_a_lone_surrogate(llm: ChatInternVL) -> None:
    with pytest.raises(MessageFormatError, match=r"message 0 \(human\).*character 6"):
        llm.invoke("hello \ud800 world")

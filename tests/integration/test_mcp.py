"""The MCP server with the SDK's own client: over stdio (the `internvl-agent mcp` command, the
tiny checkpoint for ground and run_task), over streamable HTTP and in process (a real
Chromium on the example web app, checked on the page)."""

from __future__ import annotations

import base64
import io
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import pytest
from PIL import Image

pytest.importorskip(
    "mcp", reason="the mcp extra is not installed (pip install 'internvl-agent[mcp]')"
)

import mcp_types as types
import uvicorn
from mcp import Client, StdioServerParameters

from internvl_agent.actions import ACTION_MODELS
from internvl_agent.computers.browser import BrowserComputer
from internvl_agent.mcp_server import create_server
from tests.support.browser import skip_without_browser

VIEWPORT = (1000, 720)
ROOT = Path(__file__).resolve().parents[2]
ACTIONS = [
    *("click", "type_text", "press_key", "scroll", "drag", "navigate", "go_back", "wait"),
    *("hover", "select_option", "upload_file"),
]
SECRET = "hunter2-s3cr3t"


def _norm(computer: BrowserComputer, selector: str) -> dict[str, int]:
    """The element's centre as 0..1000 of the viewport (dsf 1)."""
    box = computer.page.locator(selector).first.bounding_box()
    assert box is not None
    return {
        "x": round((box["x"] + box["width"] / 2) / VIEWPORT[0] * 1000),
        "y": round((box["y"] + box["height"] / 2) / VIEWPORT[1] * 1000),
    }


def _in_thread(session: Any) -> Any:
    """anyio.run on a fresh thread: sync Playwright in this process marks the main thread's
    event loop as running while a browser fixture is open."""
    with ThreadPoolExecutor(max_workers=1) as loop_thread:
        return loop_thread.submit(anyio.run, session).result()


def _text(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


def _image_size(result: types.CallToolResult) -> tuple[int, int]:
    image = next(c for c in result.content if isinstance(c, types.ImageContent))
    assert image.mime_type == "image/png"
    with Image.open(io.BytesIO(base64.b64decode(image.data))) as picture:
        return picture.size


@pytest.fixture(scope="module")
def probe() -> Iterator[BrowserComputer]:
    """A browser of the test's own, to read where elements are."""
    skip_without_browser()
    with BrowserComputer(viewport=VIEWPORT) as computer:
        yield computer


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[Any]:
    """An in-process server on a real Chromium, no allow list, one secret."""
    skip_without_browser()
    server = create_server(
        BrowserComputer(viewport=VIEWPORT),
        sensitive_data={"pw": SECRET},
        record_dir=tmp_path / "runs",
    )
    yield server
    server.computer_tools.close()


def _on_page(server: Any, fn: Any) -> Any:
    """Run fn(page) on the server's computer thread."""
    tools = server.computer_tools
    return tools.executor.submit(lambda: fn(tools.computer.page)).result()


# --------------------------------------------------------------------------- stdio


def test_stdio_tools_screenshot_click_ground_refusal_and_run_task(
    probe: BrowserComputer, site: str, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=[
            *("-m", "internvl_agent", "mcp", "--browser", "--transport", "stdio"),
            *("--model", str(tiny_checkpoint), "--device", "cpu", "--max-tiles", "1"),
            *("--allowed-domain", "127.0.0.1", "--viewport", "1000x720"),
            *("--url", site, "--record", str(tmp_path / "runs")),
        ],
        cwd=str(ROOT),
    )
    probe.navigate(site)
    search_link = _norm(probe, 'nav a[href="search.html"]')
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async def session() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with Client(params, read_timeout_seconds=120) as client:
            listed = await client.list_tools()
            out["tools"] = {t.name: t for t in listed.tools}
            out["shot"] = await client.call_tool("screenshot", {})
            out["away"] = await client.call_tool("navigate", {"url": "http://localhost:9/"})
            out["click"] = await client.call_tool("click", search_link)
            out["after"] = await client.call_tool("screenshot", {})
            out["ground"] = await client.call_tool("ground", {"description": "the Search box"})
            out["bad"] = await client.call_tool("click", {"x": 5})
            out["task"] = await client.call_tool(
                "run_task",
                {"task": "Search for lamps", "max_steps": 2},
                progress_callback=on_progress,
            )
        return out

    out = _in_thread(session)

    tools = out["tools"]
    assert sorted(tools) == sorted(["screenshot", *ACTIONS, "ground", "run_task"])
    for name in ACTIONS:  # the agent's action schemas, not a copy
        schema = ACTION_MODELS[name].model_json_schema()
        props = tools[name].input_schema["properties"]
        assert sorted(props) == sorted(schema["properties"]), name
        for field, spec in schema["properties"].items():
            assert props[field].get("description") == spec.get("description"), (name, field)
    assert tools["click"].input_schema["properties"]["x"]["anyOf"][0]["maximum"] == 1000

    assert _image_size(out["shot"]) == VIEWPORT and site in _text(out["shot"])
    assert out["away"].is_error and "outside the allowed domains" in _text(out["away"])
    assert not out["click"].is_error, _text(out["click"])
    assert "search.html" in _text(out["click"])  # the click followed the link on the page
    assert "search.html" in _text(out["after"])
    grounded = json.loads(_text(out["ground"]))
    assert grounded["image_size"] == list(VIEWPORT) and grounded["description"] == "the Search box"
    assert (grounded["box"] is None) == (not grounded["found"])
    assert out["bad"].is_error and "x and y go together" in _text(out["bad"])

    task = json.loads(_text(out["task"]))
    assert task["status"] in ("done", "failed", "max_steps", "error")
    assert Path(task["record"], "run.json").is_file()
    assert len(progress) == task["steps"] >= 1  # one notification per recorded step
    assert [p[0] for p in progress] == list(range(1, task["steps"] + 1))


# --------------------------------------------------------------------------- streamable HTTP


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_streamable_http_click_and_type_checked_on_the_page(
    probe: BrowserComputer, site: str, tmp_path: Path
) -> None:
    skip_without_browser()
    server = create_server(
        BrowserComputer(viewport=VIEWPORT),
        allowed_domains=["127.0.0.1"],
        record_dir=tmp_path / "runs",
    )
    port = _free_port()
    app = server.streamable_http_app(host="127.0.0.1")
    web = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=web.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not web.started and time.monotonic() < deadline:
        time.sleep(0.05)
    probe.navigate(site)
    username, button = _norm(probe, "#username"), _norm(probe, "#login-button")

    async def session() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            out["tools"] = [t.name for t in (await client.list_tools()).tools]
            out["open"] = await client.call_tool("navigate", {"url": site})
            out["shot"] = await client.call_tool("screenshot", {})
            out["type"] = await client.call_tool("type_text", {"text": "bob", **username})
            out["click"] = await client.call_tool("click", button)
            out["away"] = await client.call_tool("navigate", {"url": "https://example.com/"})
        return out

    try:
        out = _in_thread(session)
        assert "screenshot" in out["tools"] and "run_task" in out["tools"]
        assert not out["open"].is_error and _image_size(out["shot"]) == VIEWPORT
        assert not out["type"].is_error and not out["click"].is_error, _text(out["click"])
        assert _on_page(server, lambda p: p.input_value("#username")) == "bob"
        status = _on_page(server, lambda p: p.locator("#status").inner_text())
        assert status == "Password must be at least 4 characters."  # the click submitted
        assert out["away"].is_error and "outside the allowed domains" in _text(out["away"])
        assert _on_page(server, lambda p: p.url).startswith(site)  # never left
    finally:
        web.should_exit = True
        thread.join(10)
        server.computer_tools.close()


# --------------------------------------------------------------------------- confirmation


def _elicit(answer: bool, asked: list[str]) -> Any:
    async def callback(context: Any, params: Any) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"approve": answer})

    return callback


@pytest.mark.parametrize("approve", [True, False], ids=["approved", "declined"])
def test_a_new_site_is_confirmed_through_elicitation(served: Any, site: str, approve: bool) -> None:
    other = site.replace("127.0.0.1", "localhost")  # the same server, a site not seen yet
    asked: list[str] = []

    async def session() -> tuple[types.CallToolResult, types.CallToolResult]:
        async with Client(served, mode="legacy", elicitation_callback=_elicit(approve, asked)) as c:
            first = await c.call_tool("navigate", {"url": site})
            return first, await c.call_tool("navigate", {"url": other})

    first, second = _in_thread(session)
    assert len(asked) == 2 and other in asked[1] and "a site not visited yet" in asked[1]
    url = _on_page(served, lambda p: p.url)
    if approve:
        assert not first.is_error and not second.is_error and url.startswith(other)
    else:
        assert first.is_error and second.is_error and "the user declined" in _text(second)
        assert url == "about:blank"  # neither site was opened


def test_without_elicitation_a_risky_action_is_refused(served: Any, site: str) -> None:
    async def session() -> types.CallToolResult:
        async with Client(served) as client:  # the 2026 protocol: no mid-call requests
            return await client.call_tool("navigate", {"url": site})

    result = _in_thread(session)
    assert result.is_error and "nobody can confirm it" in _text(result)
    assert not _on_page(served, lambda p: p.url).startswith(site)


def test_secrets_are_typed_and_never_echoed(served: Any, probe: BrowserComputer, site: str) -> None:
    probe.navigate(site)
    password = _norm(probe, "#password")
    _on_page(served, lambda p: p.goto(site))

    args = {"text": "<secret>pw</secret>", **password}
    asked: list[str] = []

    async def session() -> tuple[types.CallToolResult, types.CallToolResult]:
        async with Client(served) as client:
            refused = await client.call_tool("type_text", args)
        async with Client(served, mode="legacy", elicitation_callback=_elicit(True, asked)) as c:
            return refused, await c.call_tool("type_text", args)

    refused, typed = _in_thread(session)
    # the page is not on an allow list, so typing the secret needs a confirmation
    assert refused.is_error and "type the secret(s) pw" in _text(refused)
    assert not typed.is_error and "secrets filled in" in _text(typed)
    assert len(asked) == 1 and SECRET not in asked[0]
    assert SECRET not in _text(refused) + _text(typed)
    assert _on_page(served, lambda p: p.input_value("#password")) == SECRET


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--transport", "streamable-http", "--host", "0.0.0.0"], "--allow-remote"),
        (["--browser", "--desktop"], "exclude each other"),
        (["--transport", "sse"], "use stdio or streamable-http"),
    ],
)
def test_mcp_command_rejects_bad_options(extra: list[str], message: str) -> None:
    from typer.testing import CliRunner

    from internvl_agent.cli import app

    result = CliRunner().invoke(app, ["mcp", *extra])
    assert result.exit_code == 2 and message in result.output, result.output

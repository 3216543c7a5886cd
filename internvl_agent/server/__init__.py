"""An OpenAI-compatible server for InternVL (``internvl-agent serve``).

Also ``python -m internvl_agent.server``.

    from internvl_agent.server import serve
    serve("OpenGVLab/InternVL3-2B-hf", host="127.0.0.1", port=8000)

Any OpenAI client then works against ``http://127.0.0.1:8000/v1`` (``ChatOpenAI(base_url=...)``,
and through it ``GUIAgent`` and ``ground``). See docs/serving.md for scaling out with lmdeploy or
vLLM, which speak the same API.

Needs the ``serve`` extra (fastapi, uvicorn).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

from internvl_agent.errors import ConfigurationError

logger = logging.getLogger("internvl_agent.server")

try:
    import fastapi  # noqa: F401
    import uvicorn
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ConfigurationError(
        "the server needs fastapi and uvicorn: pip install 'internvl-agent[serve]'"
    ) from exc

from internvl_agent.server.app import APIError, create_app  # noqa: E402


def is_loopback(host: str) -> bool:
    """True when `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(
    model: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    served_model_name: str | Sequence[str] | None = None,
    api_key: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    max_tiles: int | None = None,
    max_tokens: int | None = None,
    allow_remote_images: bool = False,
    allow_private_image_hosts: bool = False,
    max_tokens_cap: int | None = None,
    preload: bool = True,
    log_level: str = "info",
    llm: Any = None,
    **llm_options: Any,
) -> None:
    """Serve a model over the OpenAI chat-completions API until interrupted (blocking).

    model: hub id or local folder of a native InternVL checkpoint (default: $INTERNVL_AGENT_MODEL
        or ChatInternVL's default). Ignored when `llm` (a ready ChatInternVL) is given.
    host: 127.0.0.1 (default) only accepts local clients. Any other address (0.0.0.0, a LAN IP)
        exposes the model to the network: anyone who can reach the port can use it (set
        `api_key`, and keep `allow_remote_images` off unless the server may fetch URLs for
        clients).
    max_tiles / max_tokens: server defaults; a request can set its own (`max_tiles` and
        `max_tokens` / `max_completion_tokens` fields).
    allow_remote_images: fetch http(s) image URLs named in requests (off by default: data URLs
        only); hosts at private, loopback or link-local addresses are refused unless
        `allow_private_image_hosts`.
    max_tokens_cap: the most tokens a request may ask for (default: the model's context).
    preload: load the weights (and run one tiny generation) before accepting requests, so
        that a bad checkpoint fails now and the first request is not slow.
    llm_options: more ChatInternVL fields (temperature, top_p, quantization, device_map, ...).
    """
    from internvl_agent.chat.chat_model import ChatInternVL

    if llm is None:
        options: dict[str, Any] = dict(llm_options, device=device, dtype=dtype)
        if model:
            options["model"] = model
        if max_tiles is not None:
            options["max_tiles"] = max_tiles
        if max_tokens is not None:
            options["max_tokens"] = max_tokens
        llm = ChatInternVL(**options)
    elif llm_options or model:
        raise ConfigurationError("pass either llm or model options, not both")
    if not is_loopback(host):
        logger.warning(
            "binding to %s exposes the model to the network: anyone who can reach port %s can "
            "use it%s.",
            host,
            port,
            "" if api_key else " (no --api-key set)",
        )
    app = create_app(
        llm,
        served_model_name=served_model_name,
        api_key=api_key,
        allow_remote_images=allow_remote_images,
        allow_private_image_hosts=allow_private_image_hosts,
        max_tokens_cap=max_tokens_cap,
    )
    if preload:
        logger.info("loading %s ...", llm.model)
        llm.invoke("hi", max_tokens=1)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


class BackgroundServer:
    """Run an app with uvicorn in a daemon thread (tests, notebooks, examples).

        with BackgroundServer(create_app(llm)) as server:
            ChatOpenAI(base_url=server.base_url + "/v1", api_key="unused", model=...)

    port 0 picks a free port; `base_url` is ``http://host:port`` (without ``/v1``).
    """

    def __init__(
        self, app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.log_level = log_level
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level=self.log_level, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name="internvl-agent-server",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started and self._thread.is_alive():
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        if not self._server.started:
            self.stop()
            raise RuntimeError(f"the server did not start on {self.base_url}")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self._server = None
        self._thread = None

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["APIError", "BackgroundServer", "create_app", "is_loopback", "serve"]

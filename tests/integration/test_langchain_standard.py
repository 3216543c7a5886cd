"""LangChain's standard chat-model suites run against ChatInternVL.

The unit suite needs no weights. The integration suite runs on the tiny random-weight
checkpoint; tests whose outcome depends on the model understanding the prompt are xfailed
with "needs real InternVL weights" and run for real when INTERNVL_AGENT_REAL_MODEL points at a
real checkpoint (a hub id or a local folder).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests
from PIL import Image

from internvl_agent.chat.chat_model import ChatInternVL

REAL_MODEL = os.environ.get("INTERNVL_AGENT_REAL_MODEL")
NEEDS_REAL_WEIGHTS = "needs real InternVL weights (set INTERNVL_AGENT_REAL_MODEL to run it)"

# Standard tests whose assertions need a model that understands the prompt.
# (Forced tool calls without arguments, few-shot structured output and runnables bound as
# tools pass on random weights thanks to constrained decoding, so they are not listed.)
SMART_TESTS = {
    "test_tool_calling",  # expects args {"input": 3} read from the prompt
    "test_tool_calling_async",
    "test_agent_loop",  # expects an answer that uses the tool result
    "test_unicode_tool_call_integration",  # expects the Unicode text from the prompt
}


def _png_bytes() -> bytes:
    image = Image.new("RGB", (320, 200), "white")
    image.paste((30, 90, 200), (40, 40, 280, 160))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite downloads a sample image from the internet; serve a local one instead."""
    import httpx

    data = _png_bytes()

    class _Response:
        content = data
        status_code = 200

        def raise_for_status(self) -> None:
            return None

    monkeypatch.setattr(httpx, "get", lambda *a, **k: _Response())
    monkeypatch.setattr(
        "internvl_agent.chat.content._http_get",
        lambda url, options, kind="image": (data, "image/png"),
    )


class _Features:
    """What ChatInternVL supports, declared once for both suites."""

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def supports_image_inputs(self) -> bool:
        return True

    @property
    def supports_image_tool_message(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def supports_video_inputs(self) -> bool:
        return True


class TestChatInternVLUnit(_Features, ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ChatInternVL]:
        return ChatInternVL

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": "OpenGVLab/InternVL3-1B-hf", "max_tiles": 6}

    @property
    def init_from_env_params(self) -> tuple[dict, dict, dict]:
        return (
            {"INTERNVL_AGENT_MODEL": "OpenGVLab/InternVL3-8B-hf"},
            {"max_tiles": 4},
            {"model": "OpenGVLab/InternVL3-8B-hf", "max_tiles": 4},
        )

    @property
    def model_override_value(self) -> str:
        return "OpenGVLab/InternVL3-2B-hf"


@pytest.fixture(scope="module")
def second_tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from internvl_agent.engine.tiny import write_random_checkpoint

    return write_random_checkpoint(tmp_path_factory.mktemp("tiny-internvl-2"), seed=1)


class TestChatInternVLIntegration(_Features, ChatModelIntegrationTests):
    @pytest.fixture(autouse=True)
    def _checkpoints(
        self, request: pytest.FixtureRequest, tiny_checkpoint: Path, second_tiny_checkpoint: Path
    ) -> None:
        self._model_path = REAL_MODEL or str(tiny_checkpoint)
        self._override_path = str(second_tiny_checkpoint)
        name = request.node.originalname
        if REAL_MODEL is None and name in SMART_TESTS:
            request.applymarker(pytest.mark.xfail(reason=NEEDS_REAL_WEIGHTS, strict=False))

    @pytest.fixture
    def model(self, request: Any) -> ChatInternVL:  # type: ignore[override]
        extra = getattr(request, "param", None) or {}
        return ChatInternVL(
            **{**self.standard_chat_model_params, **self.chat_model_params, **extra}
        )

    @property
    def chat_model_class(self) -> type[ChatInternVL]:
        return ChatInternVL

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": self._model_path, "device": "cpu", "max_tiles": 2}

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        return {"temperature": 0, "max_tokens": 48, "timeout": None, "stop": [], "max_retries": 2}

    @property
    def supports_image_urls(self) -> bool:
        return True

    @property
    def model_override_value(self) -> str:
        return self._override_path

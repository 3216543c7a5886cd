"""Pydantic models of the OpenAI chat-completions API subset that the server speaks.

Requests are validated leniently where OpenAI clients differ (unknown top-level fields are
ignored, ``stop`` may be a string or a list, ``image_url`` may be an object or a string) and
strictly where a wrong value would silently change the answer (``n``, ``logit_bias`` and other
unsupported options are refused by the app with a 400 that names them).

Content parts are kept as plain dicts here and checked one by one when the messages are
converted (see ``app.py``), so that an error can name the exact part
(``messages[1].content[0].image_url``).

Extensions beyond OpenAI's API: ``max_tiles`` / ``min_tiles`` (InternVL's dynamic tiling, like
lmdeploy's ``max_dynamic_patch``, which is accepted too, inside ``image_url``), ``top_k`` and
``repetition_penalty`` (as vLLM accepts them).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer

# --------------------------------------------------------------------------- requests


class _In(BaseModel):
    """Request models: unknown fields are accepted and ignored (OpenAI adds fields often)."""

    model_config = ConfigDict(extra="allow")


Content = str | list[dict[str, Any]]


class SystemMessage(_In):
    role: Literal["system", "developer"]
    content: Content
    name: str | None = None


class UserMessage(_In):
    role: Literal["user"]
    content: Content
    name: str | None = None


class FunctionCall(_In):
    name: str
    arguments: str | dict[str, Any] = "{}"
    """A JSON string (OpenAI); an object is accepted too."""


class ToolCall(_In):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class AssistantMessage(_In):
    role: Literal["assistant"]
    content: Content | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    refusal: str | None = None


class ToolMessage(_In):
    role: Literal["tool"]
    content: Content
    tool_call_id: str


class FunctionMessage(_In):
    role: Literal["function"]
    content: str | None = None
    name: str


ChatMessage = Annotated[
    SystemMessage | UserMessage | AssistantMessage | ToolMessage | FunctionMessage,
    Field(discriminator="role"),
]


class FunctionDefinition(_In):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_In):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class NamedFunction(_In):
    name: str


class NamedToolChoice(_In):
    type: Literal["function"] = "function"
    function: NamedFunction


ToolChoice = Literal["auto", "none", "required"] | NamedToolChoice


class JsonSchemaSpec(_In):
    name: str | None = None
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class TextFormat(_In):
    type: Literal["text"]


class JsonObjectFormat(_In):
    type: Literal["json_object"]


class JsonSchemaFormat(_In):
    type: Literal["json_schema"]
    json_schema: JsonSchemaSpec


ResponseFormat = Annotated[
    TextFormat | JsonObjectFormat | JsonSchemaFormat, Field(discriminator="type")
]


class StreamOptions(_In):
    include_usage: bool = False


class ChatCompletionRequest(_In):
    """``POST /v1/chat/completions`` body."""

    model: str | None = None
    """Must name the served model (see ``GET /v1/models``); omitted: the served model."""
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    """Takes precedence over the deprecated ``max_tokens``."""
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    n: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    # Accepted at their neutral values only (the app refuses others with a 400).
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    logit_bias: dict[str, float] | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: Any = None
    user: str | None = None
    # Extensions.
    max_tiles: int | None = Field(default=None, ge=1, le=40)
    """Most 448x448 tiles per image (each costs 256 tokens); like lmdeploy's max_dynamic_patch."""
    min_tiles: int | None = Field(default=None, ge=1, le=40)
    top_k: int | None = Field(default=None, ge=0)
    repetition_penalty: float | None = Field(default=None, gt=0.0)


# --------------------------------------------------------------------------- responses


class _Out(BaseModel):
    """Response models: fields named in `_omit_if_none` are left out when None."""

    _omit_if_none: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _drop_nones(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        return {k: v for k, v in data.items() if not (v is None and k in self._omit_if_none)}


class ResponseFunction(_Out):
    name: str
    arguments: str


class ResponseToolCall(_Out):
    id: str
    type: Literal["function"] = "function"
    function: ResponseFunction


class ResponseMessage(_Out):
    _omit_if_none: ClassVar[frozenset[str]] = frozenset({"tool_calls"})

    role: Literal["assistant"] = "assistant"
    content: str | None = None
    """None when the answer is only tool calls."""
    refusal: str | None = None
    tool_calls: list[ResponseToolCall] | None = None


FinishReason = Literal["stop", "length", "tool_calls"]


class TopLogprob(_Out):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(_Out):
    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(_Out):
    """Per generated token: its logprob under the model and the most likely alternatives."""

    content: list[TokenLogprob] | None = None
    refusal: list[TokenLogprob] | None = None


class Choice(_Out):
    index: int = 0
    message: ResponseMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: FinishReason


class Usage(_Out):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(_Out):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[Choice]
    usage: Usage


class DeltaFunction(_Out):
    _omit_if_none: ClassVar[frozenset[str]] = frozenset({"name", "arguments"})

    name: str | None = None
    arguments: str | None = None


class DeltaToolCall(_Out):
    _omit_if_none: ClassVar[frozenset[str]] = frozenset({"id", "type"})

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: DeltaFunction


class Delta(_Out):
    _omit_if_none: ClassVar[frozenset[str]] = frozenset({"role", "content", "tool_calls"})

    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[DeltaToolCall] | None = None


class ChunkChoice(_Out):
    index: int = 0
    delta: Delta
    logprobs: ChoiceLogprobs | None = None
    finish_reason: FinishReason | None = None


class ChatCompletionChunk(_Out):
    _omit_if_none: ClassVar[frozenset[str]] = frozenset({"usage"})

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[ChunkChoice]
    usage: Usage | None = None


class ModelCard(_Out):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "internvl-agent"


class ModelList(_Out):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(_Out):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(_Out):
    error: ErrorDetail


__all__ = [
    "AssistantMessage",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatMessage",
    "Choice",
    "ChunkChoice",
    "Delta",
    "DeltaFunction",
    "DeltaToolCall",
    "ErrorDetail",
    "ErrorResponse",
    "FunctionMessage",
    "JsonSchemaFormat",
    "ModelCard",
    "ModelList",
    "NamedToolChoice",
    "ResponseFormat",
    "ResponseFunction",
    "ResponseMessage",
    "ResponseToolCall",
    "StreamOptions",
    "SystemMessage",
    "Tool",
    "ToolCall",
    "ToolMessage",
    "Usage",
    "UserMessage",
]

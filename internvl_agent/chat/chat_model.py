"""ChatInternVL: a LangChain chat model that runs InternVL locally through transformers."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.model_profile import ModelProfile
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.output_parsers.openai_tools import (
    JsonOutputKeyToolsParser,
    PydanticToolsParser,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import ConfigDict, Field

from internvl_agent.chat.content import ImageLoadOptions
from internvl_agent.chat.generation import PreparedCall, finish_message, prepare_call
from internvl_agent.chat.tools import (
    StreamEvent,
    TextDelta,
    ToolCallStreamParser,
    to_tool_call_chunk,
)
from internvl_agent.engine.loading import DEFAULT_MODEL

if TYPE_CHECKING:
    from internvl_agent.grounding import GroundingResult

MODEL_ENV_VAR = "INTERNVL_AGENT_MODEL"
PROVIDER = "internvl"


class ChatInternVL(BaseChatModel):
    """InternVL (InternVL3 / InternVL2.5, native ``*-hf`` checkpoints) as a LangChain chat model.

    Constructing it loads nothing; the weights load on the first call and are shared by every
    ChatInternVL naming the same checkpoint, device and dtype in the process.

    Example:
        ```python
        from internvl_agent import ChatInternVL

        llm = ChatInternVL(model="OpenGVLab/InternVL3-2B-hf", max_tiles=6)
        llm.invoke([("human", [{"type": "image", "url": "shot.png"},
                               {"type": "text", "text": "What is on screen?"}])])
        ```
    """

    model: str = Field(default_factory=lambda: os.environ.get(MODEL_ENV_VAR, DEFAULT_MODEL))
    """Hub id or local folder of a native InternVL checkpoint (env INTERNVL_AGENT_MODEL)."""
    device: str = "auto"
    """"auto", "cpu", "cuda" or "cuda:N"."""
    dtype: str = "auto"
    """"auto" (bfloat16 on CUDA, float32 on CPU), "bfloat16", "float16" or "float32"."""
    device_map: Literal["auto", "split"] | None = None
    """Spread one model over several GPUs: "split" (the model cards' split) or "auto"."""
    quantization: Literal["8bit", "4bit"] | None = None
    """Load the language model in 8 or 4 bits (needs bitsandbytes and CUDA)."""
    attn_implementation: str | None = None
    """None: flash_attention_2 when installed and on CUDA, else sdpa."""
    revision: str | None = None

    max_tiles: int = Field(default=12, ge=1, le=40)
    """Most 448x448 tiles an image is cut into (each costs 256 tokens)."""
    min_tiles: int = Field(default=1, ge=1)
    temperature: float = Field(default=0.0, ge=0.0)
    """0 decodes greedily."""
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=0)
    repetition_penalty: float = Field(default=1.0, gt=0.0)
    seed: int | None = None
    max_tokens: int = Field(default=1024, ge=1)
    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    system_message: str | None = None
    """System prompt used when the conversation has none (None: InternVL's own default)."""
    streaming: bool = False
    timeout: float | None = Field(default=None, gt=0)
    """Most seconds one generation may take; it then ends with finish_reason "timeout"."""
    max_retries: int = 0
    """Accepted for LangChain compatibility; local generation is never retried."""
    image_max_pixels: int = 50_000_000
    image_fetch_timeout: float = 10.0
    allow_remote_images: bool = True
    allow_local_images: bool = True

    model_config = ConfigDict(populate_by_name=True)

    # --- identity ---
    @property
    def _llm_type(self) -> str:
        return "internvl"

    @classmethod
    def get_lc_namespace(cls) -> list[str]:
        return ["internvl_agent", "chat_models"]

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "device": self.device,
            "dtype": self.dtype,
            "quantization": self.quantization,
            "max_tiles": self.max_tiles,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "max_tokens": self.max_tokens,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params.update(
            ls_provider=PROVIDER,
            ls_model_name=kwargs.get("model", self.model),
            ls_model_type="chat",
            ls_temperature=kwargs.get("temperature", self.temperature),
            ls_max_tokens=kwargs.get("max_tokens", self.max_tokens),
        )
        stops = stop or kwargs.get("stop") or self.stop
        if stops:
            params["ls_stop"] = list(stops)
        return params

    def _resolve_model_profile(self) -> ModelProfile | None:
        return ModelProfile(
            name=self.model,
            open_weights=True,
            max_input_tokens=32768,
            max_output_tokens=8192,
            text_inputs=True,
            image_inputs=True,
            image_url_inputs=True,
            image_tool_message=True,
            pdf_inputs=False,
            audio_inputs=False,
            video_inputs=False,
            text_outputs=True,
            tool_calling=True,
            tool_choice=True,
            tool_call_streaming=True,
            structured_output=True,
            temperature=True,
        )

    @property
    def image_options(self) -> ImageLoadOptions:
        return ImageLoadOptions(
            max_pixels=self.image_max_pixels,
            fetch_timeout=self.image_fetch_timeout,
            allow_remote=self.allow_remote_images,
            allow_local_files=self.allow_local_images,
        )

    # --- generation ---
    def _prepare(
        self, messages: list[BaseMessage], stop: list[str] | None, **kw: Any
    ) -> PreparedCall:
        return prepare_call(self, messages, stop, kw)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = self._prepare(messages, stop, **kwargs)
        result = call.engine.submit(call.request).result()
        return _chat_result(finish_message(call, result))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = await asyncio.to_thread(self._prepare, messages, stop, **kwargs)
        handle = await asyncio.to_thread(call.engine.submit, call.request)
        result = await handle.aresult()
        return _chat_result(finish_message(call, result))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        call = self._prepare(messages, stop, **kwargs)
        handle = call.engine.submit(call.request)
        chunks = _ChunkMaker(call)
        try:
            for delta in handle:
                for chunk in chunks.feed(delta):
                    if run_manager:
                        run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                    yield chunk
        finally:
            handle.cancel() if not handle.finished else None
        for chunk in chunks.finish(handle.result()):
            if run_manager:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        call = await asyncio.to_thread(self._prepare, messages, stop, **kwargs)
        handle = await asyncio.to_thread(call.engine.submit, call.request)
        chunks = _ChunkMaker(call)
        async for delta in handle.aiter():
            for chunk in chunks.feed(delta):
                if run_manager:
                    await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
        for chunk in chunks.finish(await handle.aresult()):
            if run_manager:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    # --- grounding ---
    def ground(self, image: Any, description: str, **kwargs: Any) -> GroundingResult:
        """Find `description` in `image` (PIL image, path, URL or bytes) with InternVL's
        `<ref>`/`<box>` grounding; the box and click point come back in image pixels."""
        from internvl_agent.grounding import ground

        return ground(self, self._as_image(image), description, **kwargs)

    async def aground(self, image: Any, description: str, **kwargs: Any) -> GroundingResult:
        """Async `ground`."""
        from internvl_agent.grounding import aground

        picture = await asyncio.to_thread(self._as_image, image)
        return await aground(self, picture, description, **kwargs)

    def _as_image(self, image: Any) -> Any:
        from internvl_agent.chat.content import load_image

        return load_image(image, self.image_options).image

    # --- tools and structured output ---
    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: dict[str, Any] | str | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Describe tools to the model in Qwen2.5's format.

        tool_choice: "auto" (default), "none", "any"/"required"/True (a call is forced and
        decoding is constrained to the tools' schemas), or a tool name (that tool is forced).
        """
        formatted = [convert_to_openai_tool(t) for t in tools]
        names = [t["function"]["name"] for t in formatted]
        choice = _normalize_tool_choice(tool_choice, names)
        return super().bind(tools=formatted, tool_choice=choice, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type | None = None,
        *,
        method: Literal["json_schema", "function_calling", "json_mode"] = "json_schema",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | Any]:
        """Answers parsed into `schema`; decoding is constrained so the JSON is always valid.

        `strict` is accepted for compatibility: output is always schema-constrained.
        """
        if kwargs:
            raise ValueError(f"unexpected arguments: {sorted(kwargs)}")
        is_pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
        if method == "function_calling":
            if schema is None:
                raise ValueError("method='function_calling' needs a schema")
            tool = convert_to_openai_tool(schema)
            name = tool["function"]["name"]
            llm = self.bind_tools(
                [schema],
                tool_choice=name,
                ls_structured_output_format={"kwargs": {"method": method}, "schema": tool},
            )
            parser: Runnable = (
                PydanticToolsParser(tools=[schema], first_tool_only=True)  # type: ignore[list-item]
                if is_pydantic
                else JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
            )
        elif method in ("json_schema", "json_mode"):
            if method == "json_schema" and schema is None:
                raise ValueError("method='json_schema' needs a schema")
            # json_mode with a schema is constrained to it too: a small model then still
            # returns an object the parser accepts.
            json_schema = _json_schema(schema) if schema is not None else None
            response_format = (
                {"type": "json_schema", "json_schema": {"schema": json_schema}}
                if json_schema is not None
                else {"type": "json_object"}
            )
            llm = self.bind(
                response_format=response_format,
                ls_structured_output_format={
                    "kwargs": {"method": method},
                    "schema": convert_to_openai_tool(schema) if schema is not None else None,
                },
            )
            parser = (
                PydanticOutputParser(pydantic_object=schema)  # type: ignore[arg-type]
                if is_pydantic
                else JsonOutputParser()
            )
        else:
            raise ValueError(
                f"method={method!r}; use 'json_schema', 'function_calling' or 'json_mode'."
            )
        if not include_raw:
            return llm | parser
        parsed = RunnablePassthrough.assign(
            parsed=itemgetter("raw") | parser, parsing_error=lambda _: None
        )
        fallback = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=llm) | parsed.with_fallbacks(
            [fallback], exception_key="parsing_error"
        )


def _json_schema(schema: dict[str, Any] | type) -> dict[str, Any]:
    if isinstance(schema, type) and hasattr(schema, "model_json_schema"):
        return schema.model_json_schema()  # pydantic v2
    if isinstance(schema, type) and is_basemodel_subclass(schema):
        return schema.schema()  # pydantic v1
    if isinstance(schema, dict) and "function" in schema:
        return schema["function"].get("parameters", {})
    if isinstance(schema, dict) and ("properties" in schema or "type" in schema):
        return schema
    return convert_to_openai_tool(schema)["function"]["parameters"]


def _normalize_tool_choice(choice: Any, names: list[str]) -> str:
    if choice in (None, "auto", False):
        return "auto"
    if choice in ("any", "required", True):
        return "any"
    if choice == "none":
        return "none"
    if isinstance(choice, dict):
        choice = (choice.get("function") or {}).get("name") or choice.get("name")
    if isinstance(choice, str) and choice in names:
        return choice
    raise ValueError(
        f"tool_choice={choice!r} names no bound tool; use 'auto', 'none', 'any' or one of {names}."
    )


def _chat_result(message: AIMessage) -> ChatResult:
    return ChatResult(generations=[ChatGeneration(message=message)])


class _ChunkMaker:
    """Turns a stream of text deltas into AIMessageChunks (text and tool-call chunks)."""

    def __init__(self, call: PreparedCall):
        self.call = call
        self.parser = (
            ToolCallStreamParser(tool_names=call.tool_names)
            if call.parse_tools and not call.forced_tool
            else None
        )

    def feed(self, delta: str) -> list[ChatGenerationChunk]:
        if self.call.forced_tool:
            return []  # the call arrives whole, as a tool-call chunk, in finish()
        if self.parser is None:
            return [_chunk(AIMessageChunk(content=delta))]
        return [_event_chunk(e) for e in self.parser.feed(delta)]

    def finish(self, result: Any) -> list[ChatGenerationChunk]:
        out: list[ChatGenerationChunk] = []
        message = finish_message(self.call, result)
        if self.call.forced_tool:
            chunks = [
                tool_call_chunk(name=c["name"], args=json.dumps(c["args"]), id=c["id"], index=i)
                for i, c in enumerate(message.tool_calls)
            ] + [
                tool_call_chunk(name=c["name"], args=c["args"], id=c["id"], index=i)
                for i, c in enumerate(message.invalid_tool_calls, len(message.tool_calls))
            ]
            out.extend(_chunk(AIMessageChunk(content="", tool_call_chunks=[c])) for c in chunks)
        elif self.parser is not None:
            out.extend(_event_chunk(e) for e in self.parser.finish())
        last = AIMessageChunk(
            content="",
            usage_metadata=message.usage_metadata,
            response_metadata=message.response_metadata,
            chunk_position="last",
        )
        out.append(_chunk(last))
        return out


def _chunk(message: AIMessageChunk) -> ChatGenerationChunk:
    return ChatGenerationChunk(message=message)


def _event_chunk(event: StreamEvent) -> ChatGenerationChunk:
    if isinstance(event, TextDelta):
        return _chunk(AIMessageChunk(content=event.text))
    return _chunk(AIMessageChunk(content="", tool_call_chunks=[to_tool_call_chunk(event)]))


__all__ = ["ChatInternVL", "UsageMetadata"]

"""ChatInternVL: a LangChain chat model that runs InternVL locally through transformers.

The whole model lives here: its fields, how one call's messages and options become an engine
request (`_prepare`), how the engine's answer becomes an AIMessage or a stream of chunks, and
tool binding and structured output. Message content is read by chat/content.py and
chat/messages.py, the Qwen2.5 tool format by chat/tools.py, generation runs in engine/.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.language_models.model_profile import ModelProfile
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, convert_to_messages
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
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

from internvl_agent.chat.content import ImageLoadOptions, load_image
from internvl_agent.chat.messages import messages_to_turns
from internvl_agent.chat.tools import (
    TOOL_CALL_CLOSE,
    TOOL_CALL_OPEN,
    StreamEvent,
    TextDelta,
    ToolCallStreamParser,
    parse_tool_calls,
    render_tools_system_prompt,
    to_tool_call_chunk,
)
from internvl_agent.chat.video import DEFAULT_NUM_SEGMENTS, MAX_NUM_SEGMENTS, VideoOptions
from internvl_agent.engine.engine import InternVLEngine, get_engine
from internvl_agent.engine.images import TilingConfig
from internvl_agent.engine.loading import DEFAULT_MODEL, LoadSpec
from internvl_agent.engine.requests import GenerationRequest, GenerationResult, SamplingParams
from internvl_agent.errors import ConfigurationError

if TYPE_CHECKING:
    from internvl_agent.grounding import GroundingResult

MODEL_ENV_VAR = "INTERNVL_AGENT_MODEL"
PROVIDER = "internvl"

# A forced tool call is decoded as the JSON between these (the prefill is part of the prompt).
_FORCED_CALL_PREFILL, _FORCED_CALL_END = TOOL_CALL_OPEN + "\n", "\n" + TOOL_CALL_CLOSE

# Options a call may override (invoke(..., temperature=0.7)), besides tools and formats.
_CALL_OPTIONS = {
    "model",
    "temperature",
    "top_p",
    "top_k",
    "repetition_penalty",
    "seed",
    "max_tokens",
    "max_tiles",
    "min_tiles",
    "num_segments",
    "max_tiles_per_frame",
    "stop",
    "tools",
    "tool_choice",
    "response_format",
    "timeout",
    "logprobs",
    "top_logprobs",
}


# What every InternVL checkpoint can do here (the model profile, besides its name).
_CAPABILITIES: dict[str, Any] = {
    "open_weights": True,
    "max_input_tokens": 32768,
    "max_output_tokens": 8192,
    "text_inputs": True,
    "image_inputs": True,
    "image_url_inputs": True,
    "image_tool_message": True,
    "pdf_inputs": False,
    "audio_inputs": False,
    "video_inputs": True,
    "text_outputs": True,
    "tool_calling": True,
    "tool_choice": True,
    "tool_call_streaming": True,
    "structured_output": True,
    "temperature": True,
}


@dataclass
class _PreparedCall:
    """One call ready to run, and what is needed to read its answer."""

    engine: InternVLEngine
    request: GenerationRequest
    model_name: str
    tool_names: list[str]
    parse_tools: bool  # tools were offered: look for <tool_call> blocks in the answer
    forced_tool: bool  # a tool call was forced: the answer is the call's JSON

    def message(self, result: GenerationResult) -> AIMessage:
        """The AIMessage for the finished generation: text, tool calls, usage and metadata."""
        text = result.text
        tool_calls: list[Any] = []
        invalid: list[Any] = []
        if self.forced_tool:
            text = _FORCED_CALL_PREFILL + text + _FORCED_CALL_END
        if self.parse_tools:
            parsed = parse_tool_calls(text, tool_names=self.tool_names)
            text, tool_calls, invalid = parsed.content, parsed.tool_calls, parsed.invalid_tool_calls
        finish_reason = result.finish_reason
        if tool_calls and finish_reason == "stop":
            finish_reason = "tool_calls"
        return AIMessage(
            content=text,
            tool_calls=tool_calls,
            invalid_tool_calls=invalid,
            usage_metadata={
                "input_tokens": result.input_tokens,
                "output_tokens": result.output_tokens,
                "total_tokens": result.total_tokens,
            },
            response_metadata={
                "model_name": self.model_name,
                "model_provider": PROVIDER,
                "finish_reason": finish_reason,
                "image_tokens": result.image_tokens,
                "num_images": result.num_images,
                "timings": result.timings,
                **_logprobs_metadata(result.logprobs),
            },
        )


class ChatInternVL(BaseChatModel):
    """InternVL (InternVL3 / InternVL2.5 checkpoints) as a LangChain chat model.

    The model runs in this process through transformers: no server, no API key. Constructing
    it loads nothing; the weights load on the first call and are shared by every ChatInternVL
    naming the same checkpoint, device, dtype and quantization in the process.

    The outputs below have the real types, keys and shapes (taken from running each example on
    the tiny random-weight checkpoint of ``internvl-agent tiny-checkpoint``); the texts and
    numbers are what a real checkpoint such as InternVL3-2B answers, for illustration: random
    weights write noise.

    Setup:
        Install the package (CUDA is optional: CPU works, slowly) and, optionally, download a
        checkpoint ahead of the first call.

        ```bash
        pip install internvl-agent
        hf download OpenGVLab/InternVL3-2B-hf   # else the first call downloads it
        export INTERNVL_AGENT_MODEL=OpenGVLab/InternVL3-2B-hf   # optional default model
        ```

    Key init args — generation params:
        temperature: float
            Sampling temperature; 0 (the default) decodes greedily.
        max_tokens: int
            Most tokens to generate (1024).
        top_p, top_k, repetition_penalty, seed, stop:
            The usual sampling controls; every one can also be passed per call.
        max_tiles: int
            Most 448x448 tiles an image is cut into (12); each tile costs 256 tokens.

    Key init args — client params:
        model: str
            Hub id or local folder of an InternVL checkpoint (env INTERNVL_AGENT_MODEL):
            native (``*-hf``) or original as the model cards ship it (``OpenGVLab/InternVL3-2B``,
            ``OpenGVLab/InternVL2_5-8B-MPO``), converted once into a cache folder
            ($INTERNVL_AGENT_CACHE, default under the HF cache) without running its code.
        device, dtype, device_map, quantization:
            Where and how the weights load ("auto" picks CUDA and bfloat16 when available).
        timeout: float | None
            Most seconds one generation may take; it then ends with finish_reason "timeout".

        See the full list of fields below.

    Instantiate:
        ```python
        from internvl_agent import ChatInternVL

        llm = ChatInternVL(
            model="OpenGVLab/InternVL3-2B-hf",
            temperature=0,
            max_tokens=256,
            max_tiles=6,
            # device="cuda", dtype="bfloat16", quantization="4bit", ...
        )
        ```

    Invoke:
        ```python
        messages = [
            ("system", "You are a helpful translator. Translate the user sentence to French."),
            ("human", "I love programming."),
        ]
        llm.invoke(messages)
        ```

        ```python
        AIMessage(
            content="J'adore programmer.",
            response_metadata={
                "model_name": "OpenGVLab/InternVL3-2B-hf",
                "model_provider": "internvl",
                "finish_reason": "stop",
                "image_tokens": 0,
                "num_images": 0,
                "timings": {"preprocess_s": 1.3e-05, "tokenize_s": 0.0008,
                            "queue_and_prefill_s": 0.0048, "generate_s": 0.059,
                            "batch_size": 1.0},
            },
            id="lc_run--01a2312d-b13e-72e6-9f2b-b04d272e188d-0",
            usage_metadata={"input_tokens": 66, "output_tokens": 7, "total_tokens": 73},
        )
        ```

    Stream:
        ```python
        for chunk in llm.stream(messages):
            print(chunk.text, end="|")
        ```

        ```python
        J|'|ad|ore| program|mer|.||
        ```

        The chunks add up to one message; the last (empty) chunk carries the usage and the
        response metadata:

        ```python
        stream = llm.stream(messages)
        full = next(stream)
        for chunk in stream:
            full += chunk
        full
        ```

        ```python
        AIMessageChunk(
            content="J'adore programmer.",
            response_metadata={"model_name": "OpenGVLab/InternVL3-2B-hf",
                               "model_provider": "internvl", "finish_reason": "stop",
                               "image_tokens": 0, "num_images": 0, "timings": {...}},
            id="lc_run--01a2312d-c1c8-765b-bf25-7738651da142",
            usage_metadata={"input_tokens": 66, "output_tokens": 7, "total_tokens": 73},
            chunk_position="last",
        )
        ```

        With ``streaming=True``, ``invoke`` streams too (each token reaches the callbacks'
        ``on_llm_new_token``) and returns the added-up message.

    Async:
        ```python
        await llm.ainvoke(messages)

        # stream:
        # async for chunk in llm.astream(messages): ...

        # batch (concurrent calls are decoded together, in one batch, on the GPU):
        # await llm.abatch([messages, messages])
        ```

        ```python
        AIMessage(content="J'adore programmer.", response_metadata={...}, usage_metadata={...})
        ```

    Tool calling:
        ```python
        from pydantic import BaseModel, Field


        class GetWeather(BaseModel):
            '''Get the current weather in a given location.'''

            location: str = Field(description="The city and country, e.g. Paris, France")


        llm_with_tools = llm.bind_tools([GetWeather])
        ai_msg = llm_with_tools.invoke("What is the weather like in Paris today?")
        ai_msg.tool_calls
        ```

        ```python
        [{"name": "GetWeather", "args": {"location": "Paris, France"},
          "id": "call_2dfaa73dc5104d73a2ed088d", "type": "tool_call"}]
        ```

        Tools are described in Qwen2.5's format. ``tool_choice="any"`` (or a tool's name)
        forces a call and constrains decoding to the tools' schemas, so the arguments are
        always valid JSON of the right shape; ``response_metadata["finish_reason"]`` is then
        ``"tool_calls"``. The prompt shows each schema as a shorter summary (alternatives
        reduced to their required fields, optionals without their null branch:
        chat/schema_view.py); a forced call is decoded under the exact schema.

    Structured output:
        ```python
        class Joke(BaseModel):
            '''A joke to tell the user.'''

            setup: str = Field(description="The setup of the joke")
            punchline: str = Field(description="The punchline of the joke")


        structured_llm = llm.with_structured_output(Joke)
        structured_llm.invoke("Tell me a joke about cats")
        ```

        ```python
        Joke(setup="Why did the cat sit on the computer?", punchline="To keep an eye on the mouse!")
        ```

        Decoding is constrained to the schema (method "json_schema", the default, or
        "function_calling"), so the answer always parses. ``include_raw=True`` returns
        ``{"raw": AIMessage, "parsed": Joke | None, "parsing_error": Exception | None}``.

    Image input:
        ```python
        from langchain_core.messages import HumanMessage
        from PIL import Image

        screenshot = Image.open("screen.png")  # or any PIL image
        message = HumanMessage(
            content=[
                {"type": "image", "image": screenshot},
                # also {"type": "image", "url": "https://.../a.png"}, a data: URL, a path,
                # {"type": "image", "base64": ..., "mime_type": "image/png"} or OpenAI's
                # {"type": "image_url", "image_url": {"url": ...}}
                {"type": "text", "text": "What is on this screen?"},
            ]
        )
        ai_msg = llm.invoke([message])
        ai_msg.content, ai_msg.response_metadata["image_tokens"]
        ```

        ```python
        ("A web browser showing a search page with an empty search box.", 1792)
        ```

        A 1280x800 image with ``max_tiles=6`` is cut into 3x2 tiles and a thumbnail: 7 tiles
        of 256 tokens. Pass an image to `freeze_image` (internvl_agent.engine.images) when its
        pixels will not change, and its cache key is computed once however often it is resent.
        `ground` finds an element described in words:

        ```python
        llm.ground(screenshot, "the search box")
        ```

        ```python
        GroundingResult(description="the search box",
                        raw_text="<ref>the search box</ref><box>[[300, 40, 700, 80]]</box>",
                        boxes_norm=[(300, 40, 700, 80)], image_size=(1280, 800), error=None)
        # .box (pixels): (384, 32, 896, 64); .point (its centre, pixels): (640, 48)
        ```

    Video input:
        ```python
        message = HumanMessage(
            content=[
                {"type": "video", "url": "red-panda.mp4"},
                # also http(s) URLs, {"type": "video", "base64": ..., "mime_type": "video/mp4"},
                # "start"/"end" (seconds) and "num_segments" keys, or frames you already have:
                # {"type": "video", "frames": [img1, img2, ...]}
                {"type": "text", "text": "What is the red panda doing?"},
            ]
        )
        ai_msg = llm.invoke([message])
        ai_msg.response_metadata["num_images"], ai_msg.response_metadata["image_tokens"]
        ```

        ```python
        (8, 2048)
        ```

        Needs ``pip install 'internvl-agent[video]'`` (PyAV). As on the model cards, the centre
        frames of ``num_segments`` (8) equal segments are taken, each one 448x448 tile
        (``max_tiles_per_frame``), and the prompt reads ``Frame1: <img>...</img>`` ... Both
        options are fields and per-call options (``llm.invoke(msgs, num_segments=16)``). A
        second question about the same video decodes and encodes nothing (the frames and their
        vision features are cached).

    Token counting:
        ```python
        llm.get_num_tokens_from_messages(messages)
        ```

        ```python
        66
        ```

        The count is the ``input_tokens`` that ``invoke(messages)`` reports: the checkpoint's
        own tokenizer on the engine's own prompt (default system message, images and video
        frames at 256 tokens a tile), never LangChain's GPT-2 fallback. ``tools=[...]`` adds the
        tools prompt (a model from ``bind_tools`` does not pass its tools on). ``get_token_ids``
        and ``get_num_tokens`` count text; ``trim_messages(msgs, token_counter=llm, ...)``
        works. Counting loads the model, as a first call does.

    Logprobs (as ChatOpenAI; the model's own distribution, per chunk when streaming):
        ```python
        ai_msg = llm.invoke(messages, logprobs=True, top_logprobs=2)
        ai_msg.response_metadata["logprobs"]["content"][0]
        ```

        ```python
        {"token": "J", "logprob": -0.03, "bytes": [74],
         "top_logprobs": [{"token": "J", "logprob": -0.03, "bytes": [74]},
                          {"token": "Je", "logprob": -3.6, "bytes": [74, 101]}]}
        ```

    Token usage:
        ```python
        ai_msg = llm.invoke(messages)
        ai_msg.usage_metadata
        ```

        ```python
        {"input_tokens": 66, "output_tokens": 7, "total_tokens": 73}
        ```

        ``input_tokens`` includes the image tokens (``response_metadata["image_tokens"]``).
    """

    accepts_pil_images: ClassVar[bool] = True
    """Content blocks may carry PIL images: ``{"type": "image", "image": <PIL.Image>}``."""

    model: str = Field(
        default_factory=lambda: os.environ.get(MODEL_ENV_VAR, DEFAULT_MODEL),
        description="Hub id or local folder of an InternVL checkpoint, native (*-hf) or "
        "original (converted on first use into $INTERNVL_AGENT_CACHE); "
        "default: env INTERNVL_AGENT_MODEL, else OpenGVLab/InternVL3-2B-hf.",
    )
    device: str = Field(default="auto", description='"auto", "cpu", "cuda" or "cuda:N".')
    dtype: str = Field(
        default="auto",
        description='"auto" (bfloat16 on CUDA, float32 on CPU), "bfloat16", "float16" or '
        '"float32".',
    )
    device_map: Literal["auto", "split"] | None = Field(
        default=None,
        description='Spread one model over several GPUs: "split" (the split of the model '
        'cards) or "auto" (accelerate); None keeps it on `device`.',
    )
    quantization: Literal["8bit", "4bit"] | None = Field(
        default=None,
        description="Load the language model in 8 or 4 bits (needs bitsandbytes and CUDA).",
    )
    attn_implementation: str | None = Field(
        default=None,
        description="transformers attention implementation; None: flash_attention_2 when "
        "installed and on CUDA, else sdpa.",
    )
    revision: str | None = Field(
        default=None, description="Hub revision (branch, tag or commit) of the checkpoint."
    )

    max_tiles: int = Field(
        default=12,
        ge=1,
        le=40,
        description="Most 448x448 tiles an image is cut into (each costs 256 tokens); a "
        "thumbnail tile is added when there is more than one.",
    )
    min_tiles: int = Field(default=1, ge=1, description="Fewest tiles an image is cut into.")
    num_segments: int = Field(
        default=DEFAULT_NUM_SEGMENTS,
        ge=1,
        le=MAX_NUM_SEGMENTS,
        description="Frames sampled from each video: the centre frames of this many equal "
        "segments, as the model cards do (8). A video block's own 'num_segments' wins.",
    )
    max_tiles_per_frame: int = Field(
        default=1,
        ge=1,
        le=40,
        description="Most 448x448 tiles one video frame is cut into (1, as on the model "
        "cards: 256 tokens a frame).",
    )
    temperature: float = Field(
        default=0.0, ge=0.0, description="Sampling temperature; 0 decodes greedily."
    )
    top_p: float = Field(
        default=1.0,
        gt=0.0,
        le=1.0,
        description="Nucleus sampling: keep the tokens of this "
        "much probability mass (1: all); used when temperature > 0.",
    )
    top_k: int = Field(
        default=0,
        ge=0,
        description="Keep only the k most likely tokens (0: no limit); used when temperature > 0.",
    )
    repetition_penalty: float = Field(
        default=1.0, gt=0.0, description="Penalty on tokens already in the text (1: none)."
    )
    seed: int | None = Field(
        default=None, description="Seed of the sampler, for repeatable sampled answers."
    )
    max_tokens: int = Field(default=1024, ge=1, description="Most tokens to generate.")
    logprobs: bool | None = Field(
        default=None,
        description="Return each generated token's logprob (the model's own distribution: "
        "log-softmax of the raw logits, before temperature, penalties and constraints) in "
        'response_metadata["logprobs"]["content"], as ChatOpenAI does; also per chunk when '
        "streaming.",
    )
    top_logprobs: int | None = Field(
        default=None,
        ge=0,
        le=20,
        description="With logprobs=True: also the N most likely tokens at each position.",
    )
    stop: list[str] | None = Field(
        default=None,
        alias="stop_sequences",
        description="Strings that end the answer (not included in it); ignored when decoding "
        "is constrained (forced tool calls, structured output).",
    )
    system_message: str | None = Field(
        default=None,
        description="System prompt used when the conversation has none (None: the "
        "checkpoint's default, InternVL's internvl2_5 one; an empty string: no system prompt).",
    )
    streaming: bool = Field(
        default=False,
        description="When True, invoke()/ainvoke() run the streaming path: callbacks get "
        "every token (on_llm_new_token) and the chunks are added up into the returned "
        "message. Read by langchain-core's BaseChatModel.",
    )
    timeout: float | None = Field(
        default=None,
        gt=0,
        description="Most seconds one generation may take; it then ends with finish_reason "
        '"timeout" (and the text so far).',
    )
    max_retries: int = Field(
        default=0,
        description="Accepted, like other LangChain chat models' constructor argument, and "
        "ignored: a local generation has no transient failure (network, rate limit) that a "
        "retry would cure, and errors are raised at once. Wrap the model in "
        ".with_retry() to retry anyway.",
    )
    image_max_pixels: int = Field(
        default=50_000_000,
        description="Largest accepted image (width*height), checked before decoding.",
    )
    image_fetch_timeout: float = Field(
        default=10.0, description="Seconds allowed to download one http(s) image."
    )
    allow_remote_images: bool = Field(
        default=True, description="Whether http(s) image URLs may be downloaded."
    )
    allow_local_images: bool = Field(
        default=True, description="Whether image paths and file:// URLs may be read."
    )

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

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = PROVIDER
        params["ls_model_name"] = kwargs.get("model", self.model)
        params["ls_model_type"] = "chat"
        params["ls_temperature"] = kwargs.get("temperature", self.temperature)
        params["ls_max_tokens"] = kwargs.get("max_tokens", self.max_tokens)
        stops = stop or kwargs.get("stop") or self.stop
        if stops:
            params["ls_stop"] = list(stops)
        return params

    def _resolve_model_profile(self) -> ModelProfile | None:
        return ModelProfile(name=self.model, **_CAPABILITIES)  # type: ignore[typeddict-item]

    @property
    def image_options(self) -> ImageLoadOptions:
        """How images in messages are loaded (the image_* and allow_*_images fields)."""
        return ImageLoadOptions(
            max_pixels=self.image_max_pixels,
            fetch_timeout=self.image_fetch_timeout,
            allow_remote=self.allow_remote_images,
            allow_local_files=self.allow_local_images,
        )

    # --- generation ---
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = self._prepare(messages, stop, **kwargs)
        result = call.engine.submit(call.request).result()
        return _chat_result(call.message(result))

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
        return _chat_result(call.message(result))

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

    # --- one call: messages and options -> engine request ---
    def _prepare(
        self, messages: list[BaseMessage], stop: list[str] | None, **options: Any
    ) -> _PreparedCall:
        """The engine request for one call; `options` override fields for this call only."""
        unknown = {k for k in options if k not in _CALL_OPTIONS and not k.startswith("ls_")}
        if unknown:
            raise ConfigurationError(
                f"ChatInternVL got unknown call options {sorted(unknown)}; "
                f"supported: {sorted(_CALL_OPTIONS)}."
            )

        def get(name: str) -> Any:
            return _checked(name, options[name]) if name in options else getattr(self, name)

        model = options.get("model") or self.model
        engine = self._engine(model)
        tools: list[dict[str, Any]] = options.get("tools") or []
        choice = options.get("tool_choice") or "auto"
        offered = tools if choice != "none" else []
        turns = messages_to_turns(
            messages,
            system_message=engine.loaded.system_message
            if self.system_message is None
            else self.system_message,
            tools_prompt=render_tools_system_prompt(offered) if offered else None,
            image_options=self.image_options,
            video_options=VideoOptions(
                num_segments=int(get("num_segments")),
                max_tiles_per_frame=int(get("max_tiles_per_frame")),
            ),
        )
        constraint, prefill = None, ""
        response_format = options.get("response_format")
        forced = bool(offered) and choice != "auto"
        if response_format is not None:
            constraint = _json_constraint(engine, _response_schema(response_format))
            forced = False
        elif forced:
            from internvl_agent.engine.constrained import tool_call_schema

            name = None if choice == "any" else choice
            constraint = _json_constraint(engine, tool_call_schema(offered, name=name))
            prefill = _FORCED_CALL_PREFILL
        stops = tuple(stop or options.get("stop") or self.stop or ())
        request = GenerationRequest(
            turns=turns,
            max_new_tokens=int(get("max_tokens")),
            sampling=SamplingParams(
                temperature=float(get("temperature")),
                top_p=float(get("top_p")),
                top_k=int(get("top_k")),
                repetition_penalty=float(get("repetition_penalty")),
                seed=get("seed"),
            ),
            stop=() if constraint is not None else stops,
            tiling=TilingConfig(max_tiles=int(get("max_tiles")), min_tiles=int(get("min_tiles"))),
            prefill=prefill,
            constraint=constraint,
            default_system=None,  # messages_to_turns always writes the system turn
            timeout_s=get("timeout"),
            logprobs=_logprobs_option(get("logprobs"), get("top_logprobs")),
        )
        return _PreparedCall(
            engine=engine,
            request=request,
            model_name=model,
            tool_names=[t["function"]["name"] for t in offered],
            parse_tools=bool(offered),
            forced_tool=forced,
        )

    # --- token counting (the checkpoint's tokenizer, never LangChain's GPT-2 fallback) ---
    def get_token_ids(self, text: str) -> list[int]:
        """Ids of `text` in the checkpoint's own tokenizer, as text of a message is tokenized
        (tags such as ``<|im_end|>`` in it count as plain characters). Loads the model like a
        first call does, so the count comes from the very tokenizer generation uses."""
        if self.custom_get_token_ids is not None:
            return self.custom_get_token_ids(text)
        tokenizer = self._engine(self.model).tokenizer
        encoded = tokenizer(text, add_special_tokens=False, split_special_tokens=True)
        return list(encoded["input_ids"])

    def get_num_tokens(self, text: str) -> int:
        """How many tokens `text` is in the checkpoint's tokenizer."""
        return len(self.get_token_ids(text))

    def get_num_tokens_from_messages(
        self, messages: list[BaseMessage], tools: Sequence[Any] | None = None
    ) -> int:
        """The prompt tokens of ``invoke(messages)``: its ``usage_metadata["input_tokens"]``.

        The engine's own prompt is built: the system turn (InternVL's default when there is
        none), chat markup, 256 tokens per tile of each image (``max_tiles``) and video frame
        (``num_segments`` frames of ``max_tiles_per_frame`` tiles) and the assistant header.
        ``tools`` (any form ``bind_tools`` takes) adds their system prompt; a model from
        ``bind_tools`` does not pass its tools here, so give them to count them.
        """
        formatted = [convert_to_openai_tool(t) for t in tools or ()]
        turns = messages_to_turns(
            convert_to_messages(messages),
            system_message=self.system_message,
            tools_prompt=render_tools_system_prompt(formatted) if formatted else None,
            image_options=self.image_options,
            video_options=VideoOptions(
                num_segments=self.num_segments, max_tiles_per_frame=self.max_tiles_per_frame
            ),
        )
        request = GenerationRequest(
            turns=turns,
            tiling=TilingConfig(max_tiles=self.max_tiles, min_tiles=self.min_tiles),
            default_system=None,
        )
        return len(self._engine(self.model).prompt_token_ids(request))

    def _engine(self, model: str) -> InternVLEngine:
        """The shared engine of `model` with this instance's loading options."""
        return get_engine(
            LoadSpec(
                checkpoint=model,
                device=self.device,
                dtype=self.dtype,
                device_map=self.device_map,
                quantization=self.quantization,
                attn_implementation=self.attn_implementation,
                revision=self.revision,
            )
        )

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
                PydanticToolsParser(tools=[schema], first_tool_only=True)
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
                PydanticOutputParser(pydantic_object=schema) if is_pydantic else JsonOutputParser()
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
        return cast(Any, schema).schema()  # pydantic v1
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


@functools.lru_cache(maxsize=64)
def _field_adapter(name: str) -> TypeAdapter:
    field = ChatInternVL.model_fields[name]
    return TypeAdapter(field.rebuild_annotation())


def _checked(name: str, value: Any) -> Any:
    """A per-call option checked by the same rules as the model's field of that name."""
    try:
        return _field_adapter(name).validate_python(value)
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"]
        raise ConfigurationError(f"invalid call option {name}={value!r}: {problem}") from None


def _logprobs_option(logprobs: bool | None, top: int | None) -> int | None:
    """The engine's logprobs setting: None (off) or how many top alternatives to add."""
    if not logprobs:
        if top:
            raise ConfigurationError(
                f"top_logprobs={top} needs logprobs=True (as in the OpenAI API); set both"
            )
        return None
    return int(top or 0)


def _logprobs_metadata(entries: list[dict[str, Any]] | None) -> dict[str, Any]:
    """response_metadata's "logprobs" item in OpenAI's shape, or nothing."""
    return {} if entries is None else {"logprobs": {"content": entries, "refusal": None}}


def _response_schema(response_format: Any) -> dict[str, Any]:
    if not isinstance(response_format, dict):
        raise ConfigurationError(
            "response_format must be {'type': 'json_object'} or "
            "{'type': 'json_schema', 'json_schema': {'schema': {...}}}."
        )
    kind = response_format.get("type")
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema")
        if isinstance(schema, dict):
            return schema
    raise ConfigurationError(f"unsupported response_format {response_format!r}")


def _json_constraint(engine: InternVLEngine, schema: dict[str, Any]) -> Any:
    from internvl_agent.engine.constrained import JsonConstraint

    vocab_size = int(engine.model.config.text_config.vocab_size)
    return JsonConstraint(engine.tokenizer, schema, vocab_size=vocab_size)


def _chat_result(message: AIMessage) -> ChatResult:
    return ChatResult(generations=[ChatGeneration(message=message)])


class _ChunkMaker:
    """Turns a stream of text deltas into AIMessageChunks (text and tool-call chunks)."""

    def __init__(self, call: _PreparedCall):
        self.call = call
        self.parser = (
            ToolCallStreamParser(tool_names=call.tool_names)
            if call.parse_tools and not call.forced_tool
            else None
        )

    def feed(self, delta: str) -> list[ChatGenerationChunk]:
        """The chunks of one text delta; the first carries the delta's logprobs, if any."""
        if self.call.forced_tool:
            out = []  # the call arrives whole, as a tool-call chunk, in finish()
        elif self.parser is None:
            out = [_chunk(AIMessageChunk(content=str(delta)))] if delta else []
        else:
            out = [_event_chunk(e) for e in self.parser.feed(str(delta))]
        logprobs = getattr(delta, "logprobs", None)
        if logprobs is not None:
            if not out:
                out = [_chunk(AIMessageChunk(content=""))]
            out[0].message.response_metadata.update(_logprobs_metadata(logprobs))
        return out

    def finish(self, result: Any) -> list[ChatGenerationChunk]:
        out: list[ChatGenerationChunk] = []
        message = self.call.message(result)
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
        # The deltas carried every token's logprobs already: the last chunk repeats none.
        metadata = {k: v for k, v in message.response_metadata.items() if k != "logprobs"}
        last = AIMessageChunk(
            content="",
            usage_metadata=message.usage_metadata,
            response_metadata=metadata,
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

"""An OpenAI-compatible chat-completions server backed by ChatInternVL.

    llm = ChatInternVL(model="OpenGVLab/InternVL3-2B-hf")
    app = create_app(llm, served_model_name="internvl3-2b")
    uvicorn.run(app, host="127.0.0.1", port=8000)      # or serve(...) in __init__.py

Endpoints: ``POST /v1/chat/completions`` (stream or not), ``GET /v1/models``,
``GET /v1/models/{id}``, ``GET /health``. A request's OpenAI messages become LangChain
messages, tools and ``response_format`` are bound to the ChatInternVL exactly as a LangChain
user would bind them, and the answer (an AIMessage, or AIMessageChunks when streaming) is
written back in OpenAI's shapes. Concurrent requests are batched by the engine.

Errors are OpenAI-style ``{"error": {"message", "type", "param", "code"}}``: 400 for bad input
(validation, images, message forms, context length, options, text with lone surrogates,
``max_tokens`` above the server's cap), 401 for a wrong API key (every route but ``/health``,
``/openapi.json`` included, needs it when one is set), 404 for
an unknown model or route, 413 for an oversize body, 500 (with a generic message; the traceback
goes to the server log only) for anything else.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.runnables import Runnable
from starlette.exceptions import HTTPException as StarletteHTTPException

from internvl_agent.chat.chat_model import ChatInternVL
from internvl_agent.errors import (
    ConfigurationError,
    ContextLengthError,
    ImageInputError,
    MessageFormatError,
)
from internvl_agent.server import schemas as s
from internvl_agent.server.images import fetch_data_url

logger = logging.getLogger("internvl_agent.server")

DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024
"""Largest accepted request body (images arrive base64-encoded in it)."""

_INPUT_ERRORS: dict[type[Exception], str] = {
    ContextLengthError: "context_length_exceeded",
    ImageInputError: "invalid_image",
    MessageFormatError: "invalid_message",
    ConfigurationError: "invalid_value",
}


# --------------------------------------------------------------------------- errors


class APIError(Exception):
    """An error answered to the client as OpenAI does."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",  # OpenAI's field name
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        detail = s.ErrorDetail(
            message=self.message, type=self.type, param=self.param, code=self.code
        )
        return s.ErrorResponse(error=detail).model_dump()

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status)


def _bad(message: str, param: str | None = None, code: str | None = "invalid_value") -> APIError:
    return APIError(400, message, param=param, code=code)


def to_api_error(exc: BaseException) -> APIError:
    """The client-facing error for an exception raised while answering a request."""
    if isinstance(exc, APIError):
        return exc
    for kind, code in _INPUT_ERRORS.items():
        if isinstance(exc, kind):
            return APIError(400, str(exc), code=code)
    logger.error("request failed", exc_info=(type(exc), exc, exc.__traceback__))
    return APIError(
        500,
        "The server had an error while generating the answer; see the server log.",
        type="server_error",
        code="internal_error",
    )


def _validation_error(exc: RequestValidationError) -> APIError:
    errors = exc.errors()
    if not errors:
        return _bad("invalid request body")
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    if first.get("type") == "json_invalid":
        return _bad(f"the request body is not valid JSON: {first.get('msg')}", code="invalid_json")
    where = f"{param}: " if param else ""
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return _bad(f"{where}{first.get('msg', 'invalid value')}{more}", param=param)


# --------------------------------------------------------------------------- the server state


class _Server:
    def __init__(
        self,
        llm: ChatInternVL,
        names: list[str],
        api_key: str | None,
        allow_remote_images: bool,
        allow_private_image_hosts: bool = False,
        max_tokens_cap: int | None = None,
    ) -> None:
        self.llm = llm
        self.names = names
        self.api_key = api_key
        self.allow_remote_images = allow_remote_images
        self.allow_private_image_hosts = allow_private_image_hosts
        self._max_tokens_cap = max_tokens_cap
        self.created = int(time.time())

    def max_tokens_cap(self) -> tuple[int, str]:
        """The most tokens a request may ask for, and where that number comes from."""
        if self._max_tokens_cap is not None:
            return self._max_tokens_cap, "the server's max_tokens_cap"
        engine = self.llm._engine(self.llm.model)  # loads the model once, as a request would
        return engine.context_length, "the model's context length"

    # --- checks ---
    def resolve_model(self, requested: str | None) -> str:
        if requested is None or requested == "":
            return self.names[0]
        if requested in self.names:
            return requested
        raise APIError(
            404,
            f"The model {requested!r} does not exist on this server; it serves "
            f"{', '.join(repr(n) for n in self.names)} (see GET /v1/models).",
            param="model",
            code="model_not_found",
        )

    # --- one request ---
    def prepare(
        self, body: s.ChatCompletionRequest
    ) -> tuple[Runnable, list[BaseMessage], str | None]:
        """The bound model, the messages, and what decoding is constrained to ("tool", "json"
        or None)."""
        _refuse_surrogates(body)
        _refuse_unsupported(body)
        constrained: str | None = None
        converter = _MessageConverter(self.allow_remote_images, self.allow_private_image_hosts)
        messages = converter.convert(body.messages)
        options = _call_options(body, converter.max_dynamic_patch)
        if "max_tokens" in options:
            cap, source = self.max_tokens_cap()
            if options["max_tokens"] > cap:
                field = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
                raise _bad(
                    f"{field}={options['max_tokens']} is more than this server allows: at "
                    f"most {cap} ({source}); ask for {cap} or fewer.",
                    param=field,
                )
        runnable: Runnable = self.llm
        if body.tools:
            tools, choice = _tools_and_choice(body)
            runnable = self.llm.bind_tools(tools, tool_choice=choice)
            constrained = None if choice in ("auto", "none") else "tool"
        elif body.tool_choice not in (None, "auto", "none"):
            raise _bad(
                "tool_choice requires tools: send 'tools' or leave tool_choice out.",
                param="tool_choice",
            )
        if body.response_format is not None:
            fmt = _response_format(body.response_format)
            if fmt is not None:
                options["response_format"] = fmt
                constrained = "json"  # response_format wins over a forced tool call
        if options:
            runnable = runnable.bind(**options)
        return runnable, messages, constrained


# --------------------------------------------------------------------------- request → call


def _first_surrogate(value: Any, path: str) -> tuple[str, int] | None:
    """(where, position) of the first lone surrogate in the strings of `value`, keys too."""
    if isinstance(value, str):
        for i, ch in enumerate(value):
            if "\ud800" <= ch <= "\udfff":
                return path, i
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            found = _first_surrogate(key, here) or _first_surrogate(item, here)
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _first_surrogate(item, f"{path}.{i}")
            if found:
                return found
    return None


def _refuse_surrogates(body: s.ChatCompletionRequest) -> None:
    """400 naming the field when any text holds a lone surrogate (JSON's "\\ud800" without
    its pair): it is not a character, and no tokenizer can encode it."""
    found = _first_surrogate(body.model_dump(by_alias=True, exclude_none=True), "")
    if found is not None:
        where, position = found
        raise _bad(
            f"{where} contains a lone UTF-16 surrogate at character {position}, which is not "
            "valid text; send well-formed strings (a surrogate escape needs its pair, e.g. "
            "\\ud83d\\ude00).",
            param=where,
            code="invalid_text",
        )


def _refuse_unsupported(body: s.ChatCompletionRequest) -> None:
    if body.n not in (None, 1):
        raise _bad(
            f"n={body.n} is not supported: this server returns one choice per request. Send "
            "several requests instead (concurrent requests are batched together).",
            param="n",
            code="unsupported_value",
        )
    if body.top_logprobs and not body.logprobs:
        raise _bad("top_logprobs needs logprobs: true in the same request.", param="top_logprobs")
    if body.logit_bias:
        raise _bad("logit_bias is not supported.", param="logit_bias", code="unsupported")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(body, name):
            raise _bad(
                f"{name} is not supported (only 0); use the 'repetition_penalty' extension "
                "field (1.0 = off, e.g. 1.05) instead.",
                param=name,
                code="unsupported",
            )
    if body.functions is not None or body.function_call is not None:
        raise _bad(
            "the deprecated 'functions' / 'function_call' fields are not supported; send "
            "'tools' and 'tool_choice'.",
            param="functions" if body.functions is not None else "function_call",
            code="unsupported",
        )
    if (
        body.min_tiles is not None
        and body.max_tiles is not None
        and body.min_tiles > body.max_tiles
    ):
        raise _bad(
            f"min_tiles ({body.min_tiles}) is larger than max_tiles ({body.max_tiles}).",
            param="min_tiles",
        )


def _call_options(body: s.ChatCompletionRequest, max_dynamic_patch: int | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    max_tokens = body.max_completion_tokens or body.max_tokens
    if max_tokens is not None:
        options["max_tokens"] = max_tokens
    if body.temperature is not None:
        options["temperature"] = body.temperature
    if body.top_p is not None:
        if body.top_p == 0:
            options["temperature"] = 0.0  # only the most likely token survives: greedy
        else:
            options["top_p"] = body.top_p
    if body.top_k is not None:
        options["top_k"] = body.top_k
    if body.repetition_penalty is not None:
        options["repetition_penalty"] = body.repetition_penalty
    if body.seed is not None:
        options["seed"] = body.seed % (2**63)
    if body.logprobs:
        options["logprobs"] = True
        options["top_logprobs"] = body.top_logprobs or 0
    stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    stops = [x for x in stops if x]
    if stops:
        options["stop"] = stops
    max_tiles = body.max_tiles if body.max_tiles is not None else max_dynamic_patch
    if max_tiles is not None:
        options["max_tiles"] = max_tiles
    if body.min_tiles is not None:
        options["min_tiles"] = body.min_tiles
        if max_tiles is None:
            raise _bad("min_tiles needs max_tiles in the same request.", param="min_tiles")
    return options


def _tools_and_choice(body: s.ChatCompletionRequest) -> tuple[list[dict[str, Any]], Any]:
    assert body.tools
    tools: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, tool in enumerate(body.tools):
        fn = tool.function
        if fn.name in seen:
            raise _bad(f"two tools are named {fn.name!r}", param=f"tools.{i}.function.name")
        seen.add(fn.name)
        parameters = fn.parameters if fn.parameters is not None else {}
        if not parameters:
            parameters = {"type": "object", "properties": {}}
        function: dict[str, Any] = {"name": fn.name}
        if fn.description:
            function["description"] = fn.description
        function["parameters"] = parameters
        tools.append({"type": "function", "function": function})
    choice = body.tool_choice
    if choice is None:
        return tools, "auto"
    if isinstance(choice, s.NamedToolChoice):
        if choice.function.name not in seen:
            raise _bad(
                f"tool_choice names {choice.function.name!r}, which is not among the tools "
                f"({', '.join(sorted(seen))}).",
                param="tool_choice",
            )
        return tools, choice.function.name
    return tools, choice  # "auto", "none" or "required"


def _response_format(fmt: Any) -> dict[str, Any] | None:
    if isinstance(fmt, s.TextFormat):
        return None
    if isinstance(fmt, s.JsonObjectFormat):
        return {"type": "json_object"}
    schema = fmt.json_schema.schema_
    if not isinstance(schema, dict):
        raise _bad(
            "response_format json_schema needs 'json_schema': {'name': ..., 'schema': {...}}.",
            param="response_format.json_schema.schema",
        )
    return {"type": "json_schema", "json_schema": {"schema": schema}}


class _MessageConverter:
    """OpenAI chat messages → LangChain messages, with errors that name the bad part."""

    def __init__(self, allow_remote_images: bool, allow_private_hosts: bool = False) -> None:
        self.allow_remote_images = allow_remote_images
        self.allow_private_hosts = allow_private_hosts
        self.max_dynamic_patch: int | None = None

    def convert(self, messages: Sequence[Any]) -> list[BaseMessage]:
        return [self._one(m, f"messages.{i}") for i, m in enumerate(messages)]

    def _one(self, m: Any, where: str) -> BaseMessage:
        if isinstance(m, s.SystemMessage):
            return SystemMessage(content=self._text_only(m.content, f"{where}.content"))
        if isinstance(m, s.UserMessage):
            return HumanMessage(content=self._content(m.content, f"{where}.content"))
        if isinstance(m, s.AssistantMessage):
            content = (
                self._text_only(m.content, f"{where}.content") if m.content is not None else ""
            )
            calls = [
                self._tool_call(c, f"{where}.tool_calls.{j}")
                for j, c in enumerate(m.tool_calls or [])
            ]
            return AIMessage(content=content, tool_calls=calls)
        if isinstance(m, s.ToolMessage):
            return ToolMessage(
                content=self._content(m.content, f"{where}.content"), tool_call_id=m.tool_call_id
            )
        if isinstance(m, s.FunctionMessage):
            return FunctionMessage(content=m.content or "", name=m.name)
        raise _bad(f"{where}: unsupported message", param=where)  # pragma: no cover

    def _tool_call(self, call: s.ToolCall, where: str) -> dict[str, Any]:
        args: Any = call.function.arguments
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError as exc:
                raise _bad(
                    f"{where}.function.arguments is not valid JSON ({exc.msg})",
                    param=f"{where}.function.arguments",
                ) from None
        if not isinstance(args, dict):
            raise _bad(
                f"{where}.function.arguments must be a JSON object",
                param=f"{where}.function.arguments",
            )
        return {"name": call.function.name, "args": args, "id": call.id, "type": "tool_call"}

    def _text_only(self, content: Any, where: str) -> str:
        if isinstance(content, str):
            return content
        texts = []
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in ("text", "refusal") and isinstance(part.get(kind), str):
                texts.append(part[kind])
            else:
                raise _bad(
                    f"{where}.{j}: only text parts are allowed in this message "
                    f"(got type {kind!r}); put images in a user message.",
                    param=f"{where}.{j}",
                )
        return "".join(texts)

    def _content(self, content: Any, where: str) -> str | list[str | dict[str, Any]]:
        if isinstance(content, str):
            return content
        out: list[str | dict[str, Any]] = []
        for j, part in enumerate(content):
            here = f"{where}.{j}"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                if not isinstance(part.get("text"), str):
                    raise _bad(f"{here}.text must be a string", param=f"{here}.text")
                out.append({"type": "text", "text": part["text"]})
            elif kind == "image_url":
                out.append({"type": "image_url", "image_url": {"url": self._image_url(part, here)}})
            else:
                raise _bad(
                    f"{here}: content part type {kind!r} is not supported; use 'text' or "
                    "'image_url' (a data: URL, or an http(s) URL).",
                    param=here,
                    code="unsupported",
                )
        return out

    def _image_url(self, part: dict[str, Any], where: str) -> str:
        spec = part.get("image_url")
        if isinstance(spec, str):
            spec = {"url": spec}
        url = spec.get("url") if isinstance(spec, dict) else None
        if not isinstance(url, str) or not url:
            raise _bad(
                f"{where}.image_url.url must be a non-empty string", param=f"{where}.image_url"
            )
        scheme = url.split(":", 1)[0].lower() if ":" in url else ""
        if scheme in ("http", "https"):
            if not self.allow_remote_images:
                raise _bad(
                    f"{where}: this server does not fetch http(s) images; send the image as a "
                    "data: URL (data:image/png;base64,...).",
                    param=f"{where}.image_url.url",
                    code="invalid_image",
                )
            try:  # fetched here, address-checked (server/images.py); the model gets data
                url = fetch_data_url(url, allow_private=self.allow_private_hosts)
            except ImageInputError as exc:
                raise _bad(
                    f"{where}: {exc}", param=f"{where}.image_url.url", code="invalid_image"
                ) from None
        elif scheme != "data":
            raise _bad(
                f"{where}.image_url.url must be a data: URL (data:image/png;base64,...) or an "
                "http(s) URL; local paths and file: URLs are not read by the server.",
                param=f"{where}.image_url.url",
                code="invalid_image",
            )
        patch = spec.get("max_dynamic_patch") if isinstance(spec, dict) else None
        if patch is not None:
            if not isinstance(patch, int) or isinstance(patch, bool) or not 1 <= patch <= 40:
                raise _bad(
                    f"{where}.image_url.max_dynamic_patch must be an integer from 1 to 40",
                    param=f"{where}.image_url.max_dynamic_patch",
                )
            # Tiling is per request here: the smallest limit asked for applies to all images.
            self.max_dynamic_patch = min(patch, self.max_dynamic_patch or patch)
        return url


# --------------------------------------------------------------------------- answer → response


def _finish_reason(raw: Any, has_tool_calls: bool) -> str:
    reason = raw if raw in ("stop", "length", "tool_calls") else None
    if raw in ("timeout", "cancelled"):
        reason = "length"  # cut short by a limit
    reason = reason or "stop"
    if has_tool_calls and reason == "stop":
        reason = "tool_calls"
    return reason


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except (TypeError, ValueError):
        return False


def _closed_by_grammar(constrained: str | None, text: str, tool_args: list[str]) -> bool:
    """Whether a constrained answer that ran into max_tokens is nevertheless complete.

    The engine's constrained decoding closes the JSON before the token budget runs out, so such
    an answer is complete, valid JSON (values may be shorter than the model wanted). It is
    reported as finished ("stop" / "tool_calls") rather than "length", which OpenAI clients
    read as a truncated, unparseable answer (the openai SDK's parse() raises on it).
    """
    if constrained == "json":
        return _is_json_object(text)
    if constrained == "tool":
        return bool(tool_args) and all(_is_json_object(a) for a in tool_args)
    return False


def _usage(message: AIMessage) -> s.Usage:
    usage: dict[str, Any] = dict(message.usage_metadata or {})
    prompt = int(usage.get("input_tokens", 0))
    completion = int(usage.get("output_tokens", 0))
    return s.Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=int(usage.get("total_tokens", prompt + completion)),
    )


def _response_tool_calls(message: AIMessage, parallel: bool) -> list[s.ResponseToolCall]:
    """Valid calls, then invalid ones (their raw text as arguments, so that an OpenAI client
    such as ChatOpenAI reports them as invalid tool calls rather than losing them)."""
    calls = [
        s.ResponseToolCall(
            id=c.get("id") or _call_id(),
            function=s.ResponseFunction(
                name=c["name"], arguments=json.dumps(c.get("args") or {}, ensure_ascii=False)
            ),
        )
        for c in message.tool_calls
    ] + [
        s.ResponseToolCall(
            id=c.get("id") or _call_id(),
            function=s.ResponseFunction(name=c.get("name") or "", arguments=c.get("args") or ""),
        )
        for c in message.invalid_tool_calls
    ]
    return calls if parallel else calls[:1]


def _completion(
    message: AIMessage, model: str, parallel: bool, constrained: str | None
) -> dict[str, Any]:
    calls = _response_tool_calls(message, parallel)
    text = message.text
    reply = s.ResponseMessage(
        content=text if (text or not calls) else None, tool_calls=calls or None
    )
    finish = _finish_reason(message.response_metadata.get("finish_reason"), bool(calls))
    args = [c.function.arguments for c in calls]
    if finish == "length" and _closed_by_grammar(constrained, text, args):
        finish = "tool_calls" if calls else "stop"
    completion = s.ChatCompletion(
        id=_completion_id(),
        created=int(time.time()),
        model=model,
        choices=[s.Choice(message=reply, finish_reason=finish, logprobs=_logprobs(message))],
        usage=_usage(message),
    )
    return completion.model_dump()


def _logprobs(message: Any) -> s.ChoiceLogprobs | None:
    """The choice's logprobs from the message's response_metadata (None when not asked)."""
    found = message.response_metadata.get("logprobs")
    if not isinstance(found, dict):
        return None
    return s.ChoiceLogprobs.model_validate({"content": found.get("content") or []})


def _completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex


def _call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def _sse(payload: dict[str, Any] | str) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n"


class _StreamWriter:
    """AIMessageChunks → chat.completion.chunk payloads."""

    def __init__(
        self, model: str, parallel: bool, include_usage: bool, constrained: str | None
    ) -> None:
        self.id = _completion_id()
        self.constrained = constrained
        self.text: list[str] = []
        self.tool_args: list[str] = []
        self.created = int(time.time())
        self.model = model
        self.parallel = parallel
        self.include_usage = include_usage
        self.tool_index: dict[Any, int] = {}
        self.finish_raw: Any = None
        self.usage: s.Usage | None = None

    def _chunk(
        self,
        delta: s.Delta,
        finish: str | None = None,
        *,
        usage: s.Usage | None = None,
        logprobs: s.ChoiceLogprobs | None = None,
    ) -> str:
        choices = (
            []
            if usage is not None
            else [s.ChunkChoice(delta=delta, finish_reason=finish, logprobs=logprobs)]
        )
        chunk = s.ChatCompletionChunk(
            id=self.id, created=self.created, model=self.model, choices=choices, usage=usage
        )
        return _sse(chunk.model_dump())

    def start(self) -> str:
        return self._chunk(s.Delta(role="assistant", content=""))

    def feed(self, chunk: Any) -> list[str]:
        out: list[str] = []
        if not isinstance(chunk, AIMessageChunk):
            return out
        text = chunk.content if isinstance(chunk.content, str) else chunk.text
        logprobs = _logprobs(chunk)
        if text:
            self.text.append(text)
            out.append(self._chunk(s.Delta(content=text), logprobs=logprobs))
        elif logprobs is not None and logprobs.content:  # tokens whose text is not out yet
            out.append(self._chunk(s.Delta(), logprobs=logprobs))
        deltas = []
        for tc in chunk.tool_call_chunks:
            index = tc.get("index")
            key: Any = index if index is not None else ("noindex", len(self.tool_index))
            if key not in self.tool_index:
                if not self.parallel and self.tool_index:
                    continue
                self.tool_index[key] = len(self.tool_index)
                self.tool_args.append(tc.get("args") or "")
                deltas.append(
                    s.DeltaToolCall(
                        index=self.tool_index[key],
                        id=tc.get("id") or _call_id(),
                        type="function",
                        function=s.DeltaFunction(
                            name=tc.get("name") or "", arguments=tc.get("args") or ""
                        ),
                    )
                )
            elif tc.get("args"):
                self.tool_args[self.tool_index[key]] += tc.get("args") or ""
                deltas.append(
                    s.DeltaToolCall(
                        index=self.tool_index[key], function=s.DeltaFunction(arguments=tc["args"])
                    )
                )
        if deltas:
            out.append(self._chunk(s.Delta(tool_calls=deltas)))
        if chunk.usage_metadata:
            self.usage = _usage(chunk)
        if chunk.response_metadata.get("finish_reason"):
            self.finish_raw = chunk.response_metadata["finish_reason"]
        return out

    def end(self) -> list[str]:
        finish = _finish_reason(self.finish_raw, bool(self.tool_index))
        if finish == "length" and _closed_by_grammar(
            self.constrained, "".join(self.text), self.tool_args
        ):
            finish = "tool_calls" if self.tool_index else "stop"
        out = [self._chunk(s.Delta(), finish)]
        if self.include_usage:
            usage = self.usage or s.Usage(prompt_tokens=0, completion_tokens=0, total_tokens=0)
            out.append(self._chunk(s.Delta(), usage=usage))
        return out


async def _stream_response(
    runnable: Runnable, messages: list[BaseMessage], writer: _StreamWriter
) -> Response:
    stream: Any = runnable.astream(messages)  # an async generator: it has aclose()
    iterator = stream.__aiter__()
    try:  # the first chunk comes after the request is prepared: input errors are still HTTP errors
        first: Any = await iterator.__anext__()
    except StopAsyncIteration:
        first = None
    except Exception as exc:
        await stream.aclose()
        return to_api_error(exc).response()

    async def events() -> AsyncIterator[str]:
        try:
            yield writer.start()
            if first is not None:
                for event in writer.feed(first):
                    yield event
                async for chunk in iterator:
                    for event in writer.feed(chunk):
                        yield event
            for event in writer.end():
                yield event
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            yield _sse({"error": to_api_error(exc).body()["error"]})
        finally:
            await stream.aclose()
        yield _sse("[DONE]")

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _invoke_unless_disconnected(
    runnable: Runnable, messages: list[BaseMessage], request: Request
) -> AIMessage | None:
    """ainvoke, cancelled (generation stops) when the client goes away: then None."""
    task = asyncio.ensure_future(runnable.ainvoke(messages))
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=1.0)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                return None
    except asyncio.CancelledError:
        task.cancel()
        raise


# --------------------------------------------------------------------------- the app


class _Guard:
    """Pure ASGI middleware, before any parsing: the API key (every route but /health) and the
    body size (413 above the limit: by Content-Length, and by counting for chunked bodies)."""

    def __init__(self, app: Any, server: _Server, max_bytes: int) -> None:
        self.app = app
        self.server = server
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        error = self._check(scope)
        if error is not None:
            await error.response()(scope, receive, send)
            return
        # Read the body here (FastAPI would buffer it anyway) so that a chunked body, which has
        # no Content-Length, is refused as soon as it outgrows the limit.
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message.get("type") != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._too_large().response()(scope, receive, send)
                return
            if not message.get("more_body"):
                break

        async def replay() -> Any:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    def _check(self, scope: Any) -> APIError | None:
        headers = {k.lower(): v for k, v in scope.get("headers", ())}
        # every route but the health check (the OpenAPI schema included) needs the key
        if self.server.api_key is not None and scope.get("path", "") != "/health":
            token = headers.get(b"authorization", b"").decode("latin-1")
            scheme, _, value = token.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                value.strip().encode(), self.server.api_key.encode()
            ):
                return APIError(
                    401,
                    "Missing or wrong API key: send 'Authorization: Bearer <key>'.",
                    code="invalid_api_key",
                )
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            return self._too_large()
        return None

    def _too_large(self) -> APIError:
        return APIError(
            413,
            f"The request body is larger than {self.max_bytes} bytes; send smaller images.",
            code="request_too_large",
        )


def create_app(
    llm: ChatInternVL | None = None,
    *,
    served_model_name: str | Sequence[str] | None = None,
    api_key: str | None = None,
    allow_remote_images: bool = False,
    allow_private_image_hosts: bool = False,
    allow_local_images: bool = False,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    max_tokens_cap: int | None = None,
    **llm_options: Any,
) -> FastAPI:
    """The FastAPI app serving `llm` (or a ChatInternVL built from `llm_options`).

    served_model_name: the name(s) clients put in ``model``; the first is listed by
        ``GET /v1/models``. Default: the checkpoint (``llm.model``). Requests naming another
        model get a 404 ``model_not_found``; requests without ``model`` get the served one.
    api_key: when set, every request but ``GET /health`` (``/openapi.json`` included) needs
        ``Authorization: Bearer <api_key>``.
    allow_remote_images: whether ``image_url`` may be an http(s) URL that the server fetches
        (default off: data URLs only). When on, the server fetches the image itself and
        refuses hosts that resolve to loopback, private, link-local or reserved addresses
        (redirect hops included; see server/images.py).
    allow_private_image_hosts: with remote images on, fetch from such hosts too (only for a
        server that only trusted clients reach).
    max_tokens_cap: the most ``max_tokens`` a request may ask for (400 above it, naming the
        cap); default the model's context length.
    allow_local_images: let the server read local paths / file: URLs named by clients. Off
        by default, and it should stay off for any server others can reach.
    max_request_bytes: largest accepted request body (413 above it).
    llm_options: ChatInternVL fields (model, device, max_tiles, max_tokens, ...) when `llm`
        is None. Its sampling fields are the defaults a request can override.
    """
    if llm is None:
        llm = ChatInternVL(**llm_options)
    elif llm_options:
        raise ConfigurationError(
            f"pass either llm or ChatInternVL options, not both (got {sorted(llm_options)})"
        )
    if max_tokens_cap is not None and (not isinstance(max_tokens_cap, int) or max_tokens_cap < 1):
        raise ConfigurationError(
            f"max_tokens_cap must be a positive integer, got {max_tokens_cap!r}"
        )
    # The model never fetches a URL itself: the server fetches (checked) and sends data URLs.
    llm = llm.model_copy(
        update={"allow_local_images": allow_local_images, "allow_remote_images": False}
    )
    if served_model_name is None:
        names = [llm.model]
    elif isinstance(served_model_name, str):
        names = [served_model_name]
    else:
        names = list(served_model_name)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ConfigurationError("served_model_name must be one or more non-empty strings")
    server = _Server(
        llm,
        names,
        api_key,
        allow_remote_images,
        allow_private_image_hosts=allow_private_image_hosts,
        max_tokens_cap=max_tokens_cap,
    )

    app = FastAPI(
        title="internvl-agent OpenAI-compatible server",
        description="OpenAI chat-completions API backed by InternVL (ChatInternVL).",
        docs_url=None,
        redoc_url=None,
        # /openapi.json stays (clients generate code from it) but needs the API key (_Guard)
    )
    app.state.internvl = server
    app.add_middleware(_Guard, server=server, max_bytes=max_request_bytes)

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_error(exc).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "not_found" if exc.status_code == 404 else None
        return APIError(exc.status_code, str(exc.detail), code=code).response()

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": server.names[0]}

    @app.get("/v1/models")
    async def list_models() -> JSONResponse:
        cards = [s.ModelCard(id=n, created=server.created) for n in server.names]
        return JSONResponse(s.ModelList(data=cards).model_dump())

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str) -> JSONResponse:
        name = server.resolve_model(model_id)
        return JSONResponse(s.ModelCard(id=name, created=server.created).model_dump())

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: s.ChatCompletionRequest, request: Request) -> Response:
        try:
            model = server.resolve_model(body.model)
            # off the event loop: it may fetch images and load the model (max_tokens cap)
            runnable, messages, constrained = await asyncio.to_thread(server.prepare, body)
            parallel = body.parallel_tool_calls is not False
            if body.stream:
                include_usage = bool(body.stream_options and body.stream_options.include_usage)
                writer = _StreamWriter(model, parallel, include_usage, constrained)
                return await _stream_response(runnable, messages, writer)
            message = await _invoke_unless_disconnected(runnable, messages, request)
            if message is None:
                return Response(status_code=499)  # nobody is listening any more
            return JSONResponse(_completion(message, model, parallel, constrained))
        except Exception as exc:
            return to_api_error(exc).response()

    return app


__all__ = ["DEFAULT_MAX_REQUEST_BYTES", "APIError", "create_app", "to_api_error"]

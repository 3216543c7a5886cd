"""One ChatInternVL call: turn messages and call options into an engine request, and the
engine's result back into an AIMessage (text, tool calls, usage)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from langchain_core.messages import AIMessage, BaseMessage
from pydantic import TypeAdapter, ValidationError

from internvl_agent.chat.messages import messages_to_turns
from internvl_agent.chat.tools import parse_tool_calls, render_tools_system_prompt
from internvl_agent.engine.engine import InternVLEngine, get_engine
from internvl_agent.engine.images import TilingConfig
from internvl_agent.engine.loading import LoadSpec
from internvl_agent.engine.requests import GenerationRequest, GenerationResult, SamplingParams
from internvl_agent.errors import ConfigurationError

if TYPE_CHECKING:
    from internvl_agent.chat.chat_model import ChatInternVL

TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>\n", "\n</tool_call>"

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
    "stop",
    "tools",
    "tool_choice",
    "response_format",
    "timeout",
}


@dataclass
class PreparedCall:
    """Everything needed to run one call and to read its answer."""

    engine: InternVLEngine
    request: GenerationRequest
    model_name: str
    tool_names: list[str]
    parse_tools: bool  # tools were offered: look for <tool_call> blocks in the answer
    forced_tool: bool  # a tool call was forced: the answer is the call's JSON


def prepare_call(
    llm: ChatInternVL, messages: list[BaseMessage], stop: list[str] | None, options: dict[str, Any]
) -> PreparedCall:
    """Build the engine request for one call of `llm`."""
    unknown = {k for k in options if k not in _CALL_OPTIONS and not k.startswith("ls_")}
    if unknown:
        raise ConfigurationError(
            f"ChatInternVL got unknown call options {sorted(unknown)}; "
            f"supported: {sorted(_CALL_OPTIONS)}."
        )

    def get(name: str) -> Any:
        return _checked(type(llm), name, options[name]) if name in options else getattr(llm, name)

    model = options.get("model") or llm.model
    engine = get_engine(
        LoadSpec(
            checkpoint=model,
            device=llm.device,
            dtype=llm.dtype,
            device_map=llm.device_map,
            quantization=llm.quantization,
            attn_implementation=llm.attn_implementation,
            revision=llm.revision,
        )
    )
    tools: list[dict[str, Any]] = options.get("tools") or []
    choice = options.get("tool_choice") or "auto"
    offered = tools if choice != "none" else []
    turns = messages_to_turns(
        messages,
        system_message=llm.system_message,
        tools_prompt=render_tools_system_prompt(offered) if offered else None,
        image_options=llm.image_options,
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
        prefill = TOOL_CALL_OPEN
    stops = tuple(stop or options.get("stop") or llm.stop or ())
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
    )
    return PreparedCall(
        engine=engine,
        request=request,
        model_name=model,
        tool_names=[t["function"]["name"] for t in offered],
        parse_tools=bool(offered),
        forced_tool=forced,
    )


def finish_message(call: PreparedCall, result: GenerationResult) -> AIMessage:
    """The AIMessage for a finished generation: text, tool calls, usage and metadata."""
    text = result.text
    tool_calls: list[Any] = []
    invalid: list[Any] = []
    if call.forced_tool:
        text = TOOL_CALL_OPEN + text + TOOL_CALL_CLOSE
    if call.parse_tools:
        parsed = parse_tool_calls(text, tool_names=call.tool_names)
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
            "model_name": call.model_name,
            "model_provider": "internvl",
            "finish_reason": finish_reason,
            "image_tokens": result.image_tokens,
            "num_images": result.num_images,
            "timings": result.timings,
        },
    )


@functools.lru_cache(maxsize=64)
def _field_adapter(cls: type, name: str) -> TypeAdapter:
    field = cls.model_fields[name]
    if not field.metadata:
        return TypeAdapter(field.annotation)
    return TypeAdapter(Annotated[(field.annotation, *field.metadata)])


def _checked(cls: type, name: str, value: Any) -> Any:
    """A per-call option checked by the same rules as the model's field of that name."""
    try:
        return _field_adapter(cls, name).validate_python(value)
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"]
        raise ConfigurationError(f"invalid call option {name}={value!r}: {problem}") from None


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

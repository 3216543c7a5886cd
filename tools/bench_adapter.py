"""Adapter overhead: tokens/s through ChatInternVL.stream versus model.generate directly.

Both paths run the same random-weight model (built in memory with InternVL's real
architecture), the same prompt (one image + text) and greedy decoding, interleaved, and the
medians are compared. Target: ChatInternVL within 5% of the direct call.

    python tools/bench_adapter.py                 # tiny layer sizes (fast; worst case for overhead)
    python tools/bench_adapter.py --size 1b --tokens 32 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from PIL import Image
from transformers import GenerationConfig

from internvl_agent.chat.chat_model import ChatInternVL
from internvl_agent.engine.engine import get_engine, register_model
from internvl_agent.engine.loading import LoadSpec
from internvl_agent.engine.tiny import SIZES, random_model


def install_random_engine(size: str) -> str:
    """A random model with `size` layer sizes, served as checkpoint name `bench-<size>`."""
    name = f"bench-{size}"
    # Caches off: both paths then do the same work (vision tower and full prefill each call).
    register_model(name, *random_model(size), vision_cache_bytes=0, prefix_cache_entries=0)
    return name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="tiny", choices=sorted(SIZES))
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    name = install_random_engine(args.size)
    llm = ChatInternVL(model=name, device="cpu", dtype="float32", max_tiles=1, temperature=0)
    engine = get_engine(LoadSpec(name, device="cpu", dtype="float32"))
    image = Image.new("RGB", (448, 448), (40, 120, 200))
    messages = [("human", [{"type": "image", "image": image}, {"type": "text", "text": "Hi"}])]

    call = llm._prepare(
        [m for m in llm._convert_input(messages).to_messages()], None, max_tokens=args.tokens
    )
    prepared = engine.prepare(call.request)
    pixel_values = prepared.images[0].pixel_values
    input_ids = torch.tensor([prepared.input_ids])
    eos = sorted(engine.eos_token_ids)
    config = GenerationConfig(
        max_new_tokens=args.tokens, do_sample=False, eos_token_id=eos, pad_token_id=eos[0]
    )

    def direct() -> tuple[int, float]:
        start = time.perf_counter()
        with torch.inference_mode():
            out = engine.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                pixel_values=pixel_values,
                generation_config=config,
            )
        return out.shape[1] - input_ids.shape[1], time.perf_counter() - start

    def adapter() -> tuple[int, float]:
        start = time.perf_counter()
        usage = None
        for chunk in llm.stream(messages, max_tokens=args.tokens):
            usage = chunk.usage_metadata or usage
        return usage["output_tokens"], time.perf_counter() - start

    def invoke() -> tuple[int, float]:
        start = time.perf_counter()
        message = llm.invoke(messages, max_tokens=args.tokens)
        return message.usage_metadata["output_tokens"], time.perf_counter() - start

    paths = {"direct": direct, "stream": adapter, "invoke": invoke}
    for fn in paths.values():  # warm-up
        fn()
    rates: dict[str, list[float]] = {label: [] for label in paths}
    for _ in range(args.repeats):
        for label, fn in paths.items():
            tokens, seconds = fn()
            rates[label].append(tokens / seconds)
    d = statistics.median(rates["direct"])
    print(f"model: random InternVL, {args.size} layer sizes; prompt: 1 image (1 tile) + text")
    print(f"tokens per call: {args.tokens}, repeats: {args.repeats} (interleaved), CPU")
    print("(ChatInternVL times include message conversion, image tiling and tokenizing)")
    print(f"model.generate directly : {d:8.1f} tokens/s")
    for label in ("stream", "invoke"):
        a = statistics.median(rates[label])
        print(
            f"ChatInternVL.{label:<10}: {a:8.1f} tokens/s   ratio {a / d:.3f} "
            f"(overhead {100 * (1 - a / d):+.1f}%)"
        )


if __name__ == "__main__":
    main()

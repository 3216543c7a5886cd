"""The local InternVL engine: one loaded model per process, batching concurrent requests.

Callers (any thread, sync or async) prepare their request (image tiling, prompt, tokens) in
their own thread and submit it; one worker thread owns the model and runs compatible pending
requests together as one batch through `model.generate`, streaming each row's tokens back.
"""

from __future__ import annotations

import atexit
import itertools
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from internvl_agent.engine.caches import PrefixCache, VisionCache
from internvl_agent.engine.decoding import RowDecoder
from internvl_agent.engine.images import (
    TilingConfig,
    image_cache_key,
    preprocess_image,
    tile_count,
)
from internvl_agent.engine.loading import LoadedModel, LoadSpec, load_model
from internvl_agent.engine.prompt import render_segments, visual_inputs
from internvl_agent.engine.requests import (
    GenerationRequest,
    GenerationResult,
    RequestHandle,
    SamplingParams,
)
from internvl_agent.errors import ConfigurationError, ContextLengthError, MessageFormatError


@dataclass
class PreparedImage:
    """One image of a request: its cache key and, unless its features are cached, its tiles."""

    key: str
    image: Any  # PIL image, kept to tile it late if the cache dropped its features meanwhile
    tiling: TilingConfig
    num_tiles: int
    pixel_values: Any = None  # torch.Tensor (tiles, 3, 448, 448) or None


@dataclass
class PreparedRequest:
    """A request turned into token ids and image inputs, ready for the worker."""

    request: GenerationRequest
    input_ids: list[int]
    images: list[PreparedImage]
    image_tokens: int
    num_images: int
    max_new_tokens: int
    handle: RequestHandle
    timings: dict[str, float]

    def batch_key(self) -> tuple[Any, ...]:
        """Requests with equal keys can share one `generate` call."""
        sampling = self.request.sampling
        if sampling.seed is not None:
            return ("seeded", id(self))  # a seed only means something for a request alone
        return (sampling, self.request.constraint is not None)


class InternVLEngine:
    """Loads a checkpoint lazily and serves generation requests from any thread."""

    def __init__(
        self,
        spec: LoadSpec,
        *,
        max_batch_size: int = 8,
        batch_wait_s: float = 0.05,
        vision_cache_bytes: int = 256 * 1024 * 1024,
        prefix_cache_entries: int = 2,
    ):
        self.spec = spec
        self.vision_cache = VisionCache(vision_cache_bytes)
        self.prefix_cache = PrefixCache(prefix_cache_entries)
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_s
        self._loaded: LoadedModel | None = None
        self._load_lock = threading.Lock()
        self._pending: deque[PreparedRequest] = deque()
        self._cond = threading.Condition()
        self._worker: threading.Thread | None = None
        self._closing = False
        self._preparing = 0  # callers between prepare() and submit: worth waiting for

    # --- loading ---
    @property
    def loaded(self) -> LoadedModel:
        """The model and tokenizer, loading them on first use."""
        if self._loaded is None:
            with self._load_lock:
                if self._loaded is None:
                    self._loaded = load_model(self.spec)
        return self._loaded

    @property
    def is_loaded(self) -> bool:
        return self._loaded is not None

    @property
    def tokenizer(self) -> Any:
        return self.loaded.tokenizer

    @property
    def model(self) -> Any:
        return self.loaded.model

    @property
    def context_length(self) -> int:
        config = self.model.config
        return int(getattr(config.text_config, "max_position_embeddings", 32768))

    @property
    def tokens_per_tile(self) -> int:
        return int(getattr(self.model.config, "image_seq_length", 256))

    @property
    def eos_token_ids(self) -> set[int]:
        tok = self.tokenizer
        ids = {tok.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")}
        if tok.eos_token_id is not None:
            ids.add(tok.eos_token_id)
        return {i for i in ids if isinstance(i, int) and i >= 0 and i != tok.unk_token_id}

    # --- request preparation (caller's thread) ---
    def prepare(self, request: GenerationRequest) -> PreparedRequest:
        """Tile the images (unless cached), render the prompt and tokenize it; check it fits."""
        loaded = self.loaded
        started = time.perf_counter()
        images = [
            self._prepare_image(img, tiling or request.tiling)
            for img, tiling in visual_inputs(request.turns)
        ]
        tiles = [image.num_tiles for image in images]
        preprocess_s = time.perf_counter() - started
        input_ids = self._prompt_ids(request, tiles)
        image_tokens = sum(tiles) * self.tokens_per_tile
        if input_ids.count(loaded.model.config.image_token_id) != image_tokens:
            raise MessageFormatError(
                "the prompt's image tokens do not match its images; text that imitates "
                "InternVL's image tags in markup parts is not allowed"
            )
        room = self.context_length - len(input_ids)
        if room < 1:
            raise ContextLengthError(
                f"the prompt is {len(input_ids)} tokens ({image_tokens} of them for "
                f"{len(images)} image(s), {sum(tiles)} tiles) but the model's context is "
                f"{self.context_length} tokens. Lower max_tiles, send fewer images or trim the "
                "conversation history."
            )
        constraint = request.constraint
        max_new_tokens = max(1, min(request.max_new_tokens, room))
        if constraint is not None and constraint.min_tokens > max_new_tokens:
            limit = "max_tokens" if max_new_tokens == request.max_new_tokens else "context room"
            raise ConfigurationError(
                f"the requested JSON schema needs at least {constraint.min_tokens} new tokens but "
                f"only {max_new_tokens} are allowed ({limit}); raise max_tokens"
            )
        timings = {"preprocess_s": preprocess_s, "tokenize_s": time.perf_counter() - started}
        return PreparedRequest(
            request=request,
            input_ids=list(input_ids),
            images=images,
            image_tokens=image_tokens,
            num_images=len(images),
            max_new_tokens=max_new_tokens,
            handle=RequestHandle(),
            timings=timings,
        )

    def prompt_token_ids(self, request: GenerationRequest) -> list[int]:
        """The prompt ids `prepare` builds for `request`, from tile counts alone (no pixels, no
        context check): what token counting reports."""
        tiles = [
            tile_count(img.width, img.height, tiling or request.tiling)
            for img, tiling in visual_inputs(request.turns)
        ]
        return self._prompt_ids(request, tiles)

    def _prompt_ids(self, request: GenerationRequest, tiles: list[int]) -> list[int]:
        segments = render_segments(
            request.turns,
            tiles,
            tokens_per_tile=self.tokens_per_tile,
            default_system=request.default_system,
            prefill=request.prefill,
        )
        return self._tokenize(segments)

    def _tokenize(self, segments: list[tuple[str, bool]]) -> list[int]:
        """Token ids of the prompt: markup with special tokens, content with tags as text."""
        tokenizer = self.loaded.tokenizer
        ids: list[int] = []
        for markup, group in itertools.groupby(segments, key=lambda seg: seg[1]):
            text = "".join(t for t, _ in group)
            if text:
                encoded = tokenizer(
                    text, add_special_tokens=not ids, split_special_tokens=not markup
                )
                ids.extend(encoded["input_ids"])
        return ids

    def _prepare_image(self, image: Any, tiling: TilingConfig) -> PreparedImage:
        key = image_cache_key(image, tiling)
        width, height = image.size
        prepared = PreparedImage(key, image, tiling, tile_count(width, height, tiling))
        if key not in self.vision_cache:
            prepared.pixel_values = self._pixels(image, tiling)
        return prepared

    def _pixels(self, image: Any, tiling: TilingConfig) -> Any:
        import torch

        array = preprocess_image(image, tiling).pixel_values
        return torch.from_numpy(array).to(dtype=self.loaded.dtype)

    # --- submission ---
    def submit(self, request: GenerationRequest) -> RequestHandle:
        """Queue a request; iterate the returned handle for text, or call `.result()`."""
        with self._cond:
            self._preparing += 1
        try:
            prepared = self.prepare(request)
        finally:
            with self._cond:
                self._preparing -= 1
        self._ensure_worker()
        with self._cond:
            self._pending.append(prepared)
            self._cond.notify_all()
        return prepared.handle

    def generate(self, request: GenerationRequest) -> GenerationResult:
        return self.submit(request).result()

    def generate_batch(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Submit several requests at once so that they run as one batch where possible."""
        handles = [self.submit(r) for r in requests]
        return [h.result() for h in handles]

    # --- the worker ---
    def _ensure_worker(self) -> None:
        with self._cond:
            self._closing = False
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(
                    target=self._work, name="internvl-engine", daemon=True
                )
                self._worker.start()

    def close(self) -> None:
        """Stop the worker thread once the requests already queued have run."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout=30)

    def _next_batch(self) -> list[PreparedRequest]:
        with self._cond:
            while not self._pending:
                if self._closing:
                    self._worker = None  # decided under the lock: a later submit starts a new one
                    return []
                self._cond.wait()
        with self._cond:
            # Callers still preparing (tiling, tokenizing) may join this batch: wait a little.
            deadline = time.monotonic() + self.batch_wait_s
            while self._preparing and len(self._pending) < self.max_batch_size:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            first = self._pending.popleft()
            batch: list[Any] = [first]
            rest: deque[Any] = deque()
            while self._pending:
                item = self._pending.popleft()
                same = item.batch_key() == first.batch_key()
                if same and len(batch) < self.max_batch_size:
                    batch.append(item)
                else:
                    rest.append(item)
            self._pending.extendleft(reversed(rest))
        return batch

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if not batch:
                return
            live = [p for p in batch if not p.handle.cancelled]
            try:
                if live:
                    self._run_batch(live)
            except BaseException as exc:  # deliver every failure to the callers
                for item in live:
                    if not item.handle.finished:
                        item.handle.fail(exc)
            for item in batch:
                if not item.handle.finished:
                    item.handle.fail(RuntimeError("request cancelled before it ran"))

    def _run_batch(self, batch: list[PreparedRequest]) -> None:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        loaded = self.loaded
        pad_id = loaded.tokenizer.pad_token_id
        pad_id = pad_id if pad_id is not None else min(self.eos_token_ids)
        width = max(len(p.input_ids) for p in batch)
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, item in enumerate(batch):  # left padding
            input_ids[row, width - len(item.input_ids) :] = torch.tensor(item.input_ids)
            attention[row, width - len(item.input_ids) :] = 1
        input_ids = input_ids.to(loaded.device)
        eos = self.eos_token_ids
        decoders = [
            RowDecoder(loaded.tokenizer, eos, p.max_new_tokens, p.request.stop) for p in batch
        ]
        tracker = _BatchTracker(batch, decoders)
        sampling = batch[0].request.sampling
        config = _generation_config(sampling, max(p.max_new_tokens for p in batch), eos, pad_id)
        with torch.inference_mode():
            embeds = self._embed(input_ids, [img for p in batch for img in p.images])
            kwargs: dict[str, Any] = {
                # input_ids as well, so that repetition_penalty also covers the prompt
                "input_ids": input_ids,
                "inputs_embeds": embeds,
                "attention_mask": attention.to(loaded.device),
                "generation_config": config,
                "streamer": tracker,
                "stopping_criteria": StoppingCriteriaList([tracker]),
            }
            signature = self._signature(batch[0]) if len(batch) == 1 else None
            if signature is not None:  # rows of a padded batch cannot share prefixes
                kwargs["past_key_values"] = self._reusable_kv(signature)
            constraints = [p.request.constraint for p in batch]
            if any(c is not None for c in constraints):
                from internvl_agent.engine.constrained import make_logits_processor

                processor = make_logits_processor(
                    constraints,
                    max_new_tokens=[p.max_new_tokens for p in batch],
                    eos_token_ids=sorted(eos),
                )
                kwargs["logits_processor"] = LogitsProcessorList([processor])
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            tracker.started = time.perf_counter()
            loaded.model.generate(**kwargs)
        if signature is not None:
            self.prefix_cache.store(signature, kwargs["past_key_values"])
        tracker.finish_all()

    def _embed(self, input_ids: Any, images: list[PreparedImage]) -> Any:
        """Token embeddings with each image's features (cached or computed now) in place."""
        model = self.loaded.model
        embeds = model.get_input_embeddings()(input_ids)
        if not images:
            return embeds
        features = self._image_features(images)
        mask = (input_ids == model.config.image_token_id).unsqueeze(-1)
        return embeds.masked_scatter(mask.to(embeds.device), features.to(embeds.dtype))

    def _image_features(self, images: list[PreparedImage]) -> Any:
        """Features of every image in order; the vision tower runs once per uncached image."""
        import torch

        found: dict[str, Any] = {img.key: self.vision_cache.get(img.key) for img in images}
        missing = list({img.key: img for img in images if found[img.key] is None}.values())
        if missing:
            pixels = [
                img.pixel_values
                if img.pixel_values is not None
                else self._pixels(img.image, img.tiling)
                for img in missing
            ]
            model = self.loaded.model
            out = model.get_image_features(
                pixel_values=torch.cat(pixels).to(self.loaded.device),
                vision_feature_layer=model.config.vision_feature_layer,
                vision_feature_select_strategy=model.config.vision_feature_select_strategy,
            ).pooler_output
            parts = out.split([i.num_tiles for i in missing])
            for img, part in zip(missing, parts, strict=True):
                # A view would keep the whole batch's features alive behind the cache's back.
                part = part.clone() if len(missing) > 1 else part
                found[img.key] = part
                self.vision_cache.put(img.key, part)
        return torch.cat([found[img.key] for img in images])

    def _signature(self, item: PreparedRequest) -> list[int]:
        """Token ids with each image's tokens replaced by a marker of that image's content."""
        image_token = self.loaded.model.config.image_token_id
        markers = [-1 - int(img.key[:12], 16) for img in item.images for _ in range(img.num_tiles)]
        per_tile = self.tokens_per_tile
        out, seen = [], 0
        for token in item.input_ids:
            if token == image_token and markers:
                out.append(markers[min(seen // per_tile, len(markers) - 1)])
                seen += 1
            else:
                out.append(token)
        return out

    def _reusable_kv(self, signature: list[int]) -> Any:
        """A KV cache holding the longest already-computed prefix of this prompt (or empty)."""
        from transformers import DynamicCache

        kv, _ = (
            self.prefix_cache.take(signature) if self.prefix_cache.max_entries > 0 else (None, 0)
        )
        return kv if kv is not None else DynamicCache(config=self.loaded.model.config)


def _generation_config(
    sampling: SamplingParams, max_new_tokens: int, eos: set[int], pad_id: int
) -> Any:
    from transformers import GenerationConfig

    values: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "do_sample": sampling.do_sample,
        "eos_token_id": sorted(eos),
        "pad_token_id": pad_id,
        "repetition_penalty": sampling.repetition_penalty,
    }
    if sampling.do_sample:
        values.update(
            temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k or None
        )
    else:
        values.update(temperature=None, top_p=None, top_k=None)
    return GenerationConfig(**values)


class _BatchTracker:
    """Both the streamer and the stopping criterion of one `generate` call.

    transformers calls `put` with each step's new tokens before it asks the stopping criteria,
    so each row's decoder decides there whether the row is done.
    """

    def __init__(self, batch: list[PreparedRequest], decoders: list[RowDecoder]):
        self.batch = batch
        self.decoders = decoders
        self._seen_prompt = False
        self.started = time.perf_counter()
        self.first_token_at: list[float | None] = [None] * len(batch)

    # streamer protocol
    def put(self, value: Any) -> None:
        if not self._seen_prompt:  # the first call carries the prompt
            self._seen_prompt = True
            return
        tokens = value.view(-1).tolist()
        now = time.perf_counter()
        for row, (item, decoder) in enumerate(zip(self.batch, self.decoders, strict=True)):
            if decoder.done:
                continue
            if item.handle.cancelled:
                decoder.cancel()
            elif self._timed_out(item, now):
                item.handle.push_text(decoder.cancel("timeout"))
            else:
                if self.first_token_at[row] is None:
                    self.first_token_at[row] = now
                item.handle.push_text(decoder.add_token(int(tokens[row])))
            if decoder.done:
                self._finish_row(row)

    def end(self) -> None:
        pass

    def _timed_out(self, item: PreparedRequest, now: float) -> bool:
        limit = item.request.timeout_s
        return limit is not None and now - self.started > limit

    # stopping-criteria protocol
    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        pairs = zip(self.decoders, self.batch, strict=True)
        done = [d.done or item.handle.cancelled for d, item in pairs]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    def finish_all(self) -> None:
        for row, decoder in enumerate(self.decoders):
            if not self.batch[row].handle.finished:
                if not decoder.done:
                    self.batch[row].handle.push_text(decoder.cancel("length"))
                self._finish_row(row)

    def _finish_row(self, row: int) -> None:
        item, decoder = self.batch[row], self.decoders[row]
        now = time.perf_counter()
        first = self.first_token_at[row] or now
        timings = dict(item.timings)
        timings.update(
            queue_and_prefill_s=first - self.started,
            generate_s=now - self.started,
            batch_size=float(len(self.batch)),
        )
        item.handle.finish(
            GenerationResult(
                text=decoder.final_text(),
                finish_reason=decoder.finish_reason or "length",
                input_tokens=len(item.input_ids),
                output_tokens=decoder.num_generated,
                image_tokens=item.image_tokens,
                num_images=item.num_images,
                timings=timings,
            )
        )


_ENGINES: dict[LoadSpec, InternVLEngine] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(spec: LoadSpec) -> InternVLEngine:
    """The process-wide engine for this (checkpoint, device, dtype, ...), created on first use.

    Creating it loads nothing: weights load when the first request is prepared.
    """
    with _ENGINES_LOCK:
        engine = _ENGINES.get(spec)
        if engine is None:
            engine = _ENGINES[spec] = InternVLEngine(spec)
        return engine


def register_model(
    name: str,
    model: Any,
    tokenizer: Any,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    **engine_options: Any,
) -> InternVLEngine:
    """Serve an InternVL model you already loaded under `name`.

    Afterwards `ChatInternVL(model=name, device=device, dtype=dtype)` uses it (the same
    device and dtype strings select it). Benchmarks use this for random models built in memory.
    """
    import torch

    from internvl_agent.engine.loading import resolve_dtype

    spec = LoadSpec(name, device=device, dtype=dtype)
    engine = InternVLEngine(spec, **engine_options)
    input_device = model.get_input_embeddings().weight.device
    engine._loaded = LoadedModel(
        model, tokenizer, spec, torch.device(input_device), resolve_dtype(dtype, device), name
    )
    with _ENGINES_LOCK:
        old = _ENGINES.get(spec)
        _ENGINES[spec] = engine
    if old is not None:
        old.close()
    return engine


@atexit.register
def _close_engines() -> None:
    """Let worker threads end before the interpreter tears torch down."""
    for engine in loaded_engines():
        engine.close()


def loaded_engines() -> list[InternVLEngine]:
    """Engines created in this process (loaded or not)."""
    with _ENGINES_LOCK:
        return list(_ENGINES.values())

"""The local InternVL engine: one loaded model per process, batching concurrent requests.

Callers (any thread, sync or async) prepare their request (image tiling, prompt, tokens) in
their own thread and submit it; one worker thread owns the model and runs compatible pending
requests together as one batch, streaming each row's tokens back.

Generation is the engine's own loop (`DecodeLoop`), not `model.generate`: it feeds tokens a
JSON constraint forces several per forward pass (jump-forward) and takes logprobs from the
same logits it samples from.
"""

from __future__ import annotations

import atexit
import inspect
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
    TextDelta,
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
    """Loads a checkpoint lazily and serves generation requests from any thread.

    `jump_forward`: tokens a constraint forces (a tool call's ``{"name": "``, the keys, the
    suffix) are appended several at a time in one forward pass instead of one pass each; the
    output is the same token for token.
    """

    def __init__(
        self,
        spec: LoadSpec,
        *,
        max_batch_size: int = 8,
        batch_wait_s: float = 0.05,
        vision_cache_bytes: int = 256 * 1024 * 1024,
        prefix_cache_entries: int = 2,
        jump_forward: bool = True,
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
        self.jump_forward = jump_forward
        self._byte_table: list[bytes] | None = None
        self.stats = {"forward_passes": 0, "jumped_tokens": 0}

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
        from transformers import DynamicCache

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
        token_bytes = self._token_bytes if _wants_logprobs(batch) else None
        tracker = _BatchTracker(batch, decoders, token_bytes)
        sampling = batch[0].request.sampling
        processor = None
        constraints = [p.request.constraint for p in batch]
        if any(c is not None for c in constraints):
            from internvl_agent.engine.constrained import make_logits_processor

            processor = make_logits_processor(
                constraints,
                max_new_tokens=[p.max_new_tokens for p in batch],
                eos_token_ids=sorted(eos),
            )
        signature = self._signature(batch[0]) if len(batch) == 1 else None
        with torch.inference_mode():
            embeds = self._embed(input_ids, [img for p in batch for img in p.images])
            # rows of a padded batch cannot share prefixes
            kv = (
                self._reusable_kv(signature)
                if signature is not None
                else DynamicCache(config=loaded.model.config)
            )
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            tracker.started = time.perf_counter()
            loop = DecodeLoop(
                loaded.model,
                kv,
                sampling=sampling,
                processor=processor,
                tracker=tracker,
                pad_id=pad_id,
                jump_forward=self.jump_forward,
                stats=self.stats,
            )
            loop.run(input_ids, attention.to(loaded.device), embeds)
        if signature is not None:
            self.prefix_cache.store(signature, kv)
        tracker.finish_all()

    def _token_bytes(self, token: int) -> bytes:
        """The bytes token `token` stands for (byte-level BPE and sentencepiece alike)."""
        table = self._byte_table
        if table is None:
            table = self._byte_table = _byte_table(self.loaded.tokenizer)
        return table[token] if token < len(table) else b""

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


def _wants_logprobs(batch: list[PreparedRequest]) -> bool:
    return any(p.request.logprobs is not None for p in batch)


def _byte_level_decoder() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet: symbol -> the byte it stands for."""
    kept = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    symbols, extra = {}, 0
    for b in range(256):
        if b in kept:
            symbols[chr(b)] = b
        else:
            symbols[chr(256 + extra)] = b
            extra += 1
    return symbols


def _byte_table(tokenizer: Any) -> list[bytes]:
    """Each token id's bytes: byte-level BPE symbols mapped back to bytes, sentencepiece
    ``▁`` to a space and ``<0xNN>`` byte tokens to their byte; special tokens as their text."""
    decoder = _byte_level_decoder()
    specials = {int(t) for t in getattr(tokenizer, "added_tokens_decoder", {}) or {}}
    out: list[bytes] = []
    for tid, piece in enumerate(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))):
        piece = piece or ""
        if tid in specials:
            out.append(piece.encode())
        elif len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            out.append(bytes([int(piece[3:5], 16)]))
        elif all(c in decoder for c in piece):
            out.append(bytes(decoder[c] for c in piece))
        else:
            out.append(piece.replace("\u2581", " ").encode())
    return out


class DecodeLoop:
    """The engine's decoding loop over one batch: prefill, then one forward pass per step.

    Every row advances each step; a constrained row whose next tokens are forced (the
    processor's `jump`) feeds them in the same forward pass as its sampled token, so they cost
    no pass of their own. Rows of one pass may feed different numbers of tokens: shorter ones
    are padded on the right with masked positions (attention mask 0), which later positions
    never see. Logits are processed as `transformers` does (repetition penalty, the
    constraint, temperature, top-k, top-p), greedy or sampled with the global torch RNG.
    Logprobs, where asked, are the model's own: the log-softmax of the raw logits.
    """

    def __init__(
        self,
        model: Any,
        kv: Any,
        *,
        sampling: SamplingParams,
        processor: Any,
        tracker: _BatchTracker,
        pad_id: int,
        jump_forward: bool = True,
        stats: dict[str, int] | None = None,
    ) -> None:
        from transformers import (
            LogitsProcessorList,
            RepetitionPenaltyLogitsProcessor,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        self.model, self.kv = model, kv
        # transformers >= 5.2x names it `cache`; earlier 5.x `past_key_values`
        names = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in names else "past_key_values"
        self.sampling, self.processor, self.tracker = sampling, processor, tracker
        self.pad_id = pad_id
        self.jump_forward = jump_forward and processor is not None
        self.before = LogitsProcessorList()
        if sampling.repetition_penalty != 1.0:
            self.before.append(RepetitionPenaltyLogitsProcessor(sampling.repetition_penalty))
        self.after = LogitsProcessorList()
        if sampling.do_sample:
            if sampling.temperature != 1.0:
                self.after.append(TemperatureLogitsWarper(sampling.temperature))
            if sampling.top_k:
                self.after.append(TopKLogitsWarper(sampling.top_k))
            if sampling.top_p < 1.0:
                self.after.append(TopPLogitsWarper(sampling.top_p))
        self.stats = stats if stats is not None else {"forward_passes": 0, "jumped_tokens": 0}

    def _forward(self, attention: Any, positions: Any, keep: int, **inputs: Any) -> Any:
        self.stats["forward_passes"] += 1
        out = self.model(
            attention_mask=attention,
            position_ids=positions,
            **{self._cache_arg: self.kv},
            use_cache=True,
            logits_to_keep=keep,
            **inputs,
        )
        return out.logits.float()

    def run(self, input_ids: Any, attention: Any, embeds: Any) -> None:
        """Generate until every row is done (its decoder says so) or cancelled."""
        import torch

        rows = input_ids.shape[0]
        device = input_ids.device
        tracker = self.tracker
        cached = self.kv.get_seq_length()
        # Tokens forced from the start (a named tool call's {"name": "click", "arguments": ...)
        # join the prefill pass.
        steps: list[list[int]] = [[] for _ in range(rows)]
        if self.jump_forward:
            for i in tracker.live_rows():
                steps[i] = self._jump(i, tracker.room(i))
        history = input_ids  # every token so far, for the repetition penalty
        width = 0
        if any(steps):
            feed, fresh = self._pad(steps, rows, device)
            width = feed.shape[1]
            embeds = torch.cat([embeds, self.model.get_input_embeddings()(feed)], dim=1)
            attention = torch.cat([attention, fresh], dim=1)
            history = torch.cat([history, feed], dim=1)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        all_logits = self._forward(
            attention, positions[:, cached:], width + 1, inputs_embeds=embeds[:, cached:]
        )
        logits = self._take(all_logits, steps)
        next_pos = positions[:, -1] + 1
        while True:
            live = tracker.live_rows()
            if not live:
                return
            scores = self.before(history, logits.clone()) if self.before else logits.clone()
            if self.processor is not None:
                scores = self.processor.mask(scores)
            scores = self.after(history, scores) if self.after else scores
            sampled = self._sample(scores)
            steps = [[] for _ in range(rows)]
            for i in live:
                token = int(sampled[i])
                tracker.add(i, token, logits[i])
                if self.processor is not None:
                    self.processor.accept(i, token)
                steps[i] = [token]
                if self.jump_forward and not tracker.is_done(i):
                    steps[i] += self._jump(i, tracker.room(i))
            if not tracker.live_rows():
                return
            feed, fresh = self._pad(steps, rows, device)
            attention = torch.cat([attention, fresh], dim=1)
            step_pos = next_pos[:, None] + (fresh.cumsum(-1) - 1).clamp(min=0)
            next_pos = next_pos + fresh.sum(-1)
            history = torch.cat([history, feed], dim=1)
            all_logits = self._forward(attention, step_pos, feed.shape[1], input_ids=feed)
            logits = self._take(all_logits, [s[1:] for s in steps])

    def _sample(self, scores: Any) -> list[int]:
        """Each row's next token from its processed scores: sampled, or greedy."""
        import torch

        if self.sampling.do_sample:
            probs = torch.softmax(scores, dim=-1)
            return torch.multinomial(probs, num_samples=1).squeeze(1).tolist()
        return scores.argmax(dim=-1).tolist()

    def _jump(self, i: int, limit: int) -> list[int]:
        """Row `i`'s forced tokens, -1 standing for a forced end token."""
        run, ends = self.processor.jump(i, limit)
        return [*run, -1] if ends and len(run) < limit else run

    def _pad(self, steps: list[list[int]], rows: int, device: Any) -> tuple[Any, Any]:
        """The tokens to feed (right-padded) and their attention mask (0 on padding)."""
        import torch

        width = max(1, max(len([t for t in s if t >= 0]) for s in steps))
        feed = torch.full((rows, width), self.pad_id, dtype=torch.long)
        fresh = torch.zeros((rows, width), dtype=torch.long)
        for i, s in enumerate(steps):
            real = [t for t in s if t >= 0]
            if real:
                feed[i, : len(real)] = torch.tensor(real)
                fresh[i, : len(real)] = 1
        return feed.to(device), fresh.to(device)

    def _take(self, all_logits: Any, runs: list[list[int]]) -> Any:
        """Hand each row's jumped tokens to the tracker with the logits that predicted them
        (position j of the pass's kept logits predicts the j-th: position 0 is the token fed
        before the run); return each row's logits for its next token."""
        import torch

        last = []
        for i, run in enumerate(runs):
            real = [t for t in run if t >= 0]
            for j, token in enumerate(run):
                if self.tracker.is_done(i):
                    break
                row_logits = all_logits[i, j]
                if token < 0:  # the best of the end tokens, as masking would pick
                    ends = sorted(self.tracker.eos)
                    token = ends[int(row_logits[ends].argmax())]
                else:
                    self.stats["jumped_tokens"] += 1
                self.tracker.add(i, token, row_logits)
            last.append(len(real))
        index = torch.tensor(last, device=all_logits.device)
        return all_logits[torch.arange(len(runs), device=all_logits.device), index]


class _BatchTracker:
    """Each row's decoder, handle, timings and logprobs while one batch decodes."""

    def __init__(
        self,
        batch: list[PreparedRequest],
        decoders: list[RowDecoder],
        token_bytes: Any = None,
    ):
        self.batch = batch
        self.decoders = decoders
        self.token_bytes = token_bytes
        self.eos = decoders[0].eos_token_ids if decoders else set()
        self.started = time.perf_counter()
        self.first_token_at: list[float | None] = [None] * len(batch)
        self.logprobs: list[list[dict[str, Any]] | None] = [
            [] if p.request.logprobs is not None else None for p in batch
        ]
        self._sent = [0] * len(batch)  # logprob entries already attached to a delta

    def live_rows(self) -> list[int]:
        """Rows still generating (cancelled or timed-out ones are finished here)."""
        now = time.perf_counter()
        live = []
        for row, (item, decoder) in enumerate(zip(self.batch, self.decoders, strict=True)):
            if decoder.done:
                continue
            if item.handle.cancelled:
                self._push(row, decoder.cancel())
            elif self._timed_out(item, now):
                self._push(row, decoder.cancel("timeout"))
            if decoder.done:
                self._finish_row(row)
            else:
                live.append(row)
        return live

    def is_done(self, row: int) -> bool:
        return self.decoders[row].done

    def room(self, row: int) -> int:
        """Tokens row `row` may still take."""
        decoder = self.decoders[row]
        return decoder.max_new_tokens - decoder.num_generated

    def add(self, row: int, token: int, logits: Any) -> None:
        """Row `row` took `token`, sampled from (or forced after) the raw `logits`."""
        decoder = self.decoders[row]
        if decoder.done:
            return
        if self.first_token_at[row] is None:
            self.first_token_at[row] = time.perf_counter()
        entries = self.logprobs[row]
        if entries is not None and token not in self.eos:
            entries.append(self._entry(token, logits, self.batch[row].request.logprobs or 0))
        self._push(row, decoder.add_token(token))
        if decoder.done:
            self._finish_row(row)

    def _entry(self, token: int, logits: Any, top: int) -> dict[str, Any]:
        import torch

        logprobs = torch.log_softmax(logits.float(), dim=-1)
        entry = self._token(token, float(logprobs[token]))
        if top:
            values, ids = logprobs.topk(min(top, logprobs.shape[-1]))
            top_list = [
                self._token(int(t), float(v))
                for v, t in zip(values.tolist(), ids.tolist(), strict=True)
            ]
        else:
            top_list = []
        entry["top_logprobs"] = top_list
        return entry

    def _token(self, token: int, logprob: float) -> dict[str, Any]:
        data = self.token_bytes(token) if self.token_bytes else b""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = "".join(f"\\x{b:02x}" for b in data)  # a piece of a character, as OpenAI
        return {"token": text, "logprob": logprob, "bytes": list(data)}

    def _push(self, row: int, text: str) -> None:
        """Hand `text` to the row's handle, with the logprobs of the tokens since the last."""
        entries = self.logprobs[row]
        if entries is None:
            self.batch[row].handle.push_text(text)
            return
        if not text and not self.decoders[row].done:
            return
        delta = TextDelta(text)
        delta.logprobs = entries[self._sent[row] :]
        self._sent[row] = len(entries)
        if text or delta.logprobs:
            self.batch[row].handle.push_text(delta)

    def _timed_out(self, item: PreparedRequest, now: float) -> bool:
        limit = item.request.timeout_s
        return limit is not None and now - self.started > limit

    def finish_all(self) -> None:
        for row, decoder in enumerate(self.decoders):
            if not self.batch[row].handle.finished:
                if not decoder.done:
                    self._push(row, decoder.cancel("length"))
                self._finish_row(row)

    def _finish_row(self, row: int) -> None:
        item, decoder = self.batch[row], self.decoders[row]
        if item.handle.finished:
            return
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
                logprobs=self.logprobs[row],
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

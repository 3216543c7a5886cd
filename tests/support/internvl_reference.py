"""Re-implementations of InternVL's own code, as references for the conversion tests.

- `ReferenceInternLM2Tokenizer`: the original remote-code ``InternLM2Tokenizer``
  (tokenization_internlm2.py) as run by transformers 4.x's slow ``PreTrainedTokenizer``:
  added tokens split out of the text with the longest match, every other chunk encoded by
  sentencepiece on its own, ``<s>`` prepended; decoding through ``convert_tokens_to_string``
  (special tokens kept out of sentencepiece, the legacy ``clean_up_tokenization`` applied) and
  ``_decode`` (added tokens beyond the sentencepiece vocabulary joined with spaces).
- `model_card_prompt`: the prompt `InternVLChatModel.chat` builds (``internvl2_5`` template,
  ``<image>\\n`` put before the first question, history turns, image placeholders).
- `model_card_tiles` and `model_card_pixels`: the model cards' ``dynamic_preprocess`` and
  ``build_transform`` (bicubic resize, ImageNet normalization) with PIL and numpy.

Written from InternVL's code, not from this package: nothing here imports internvl_agent.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

# conversation.py's `internvl2_5` template.
SYSTEM_MESSAGE = (
    "你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的"
    "多模态大语言模型。"
)
_SYSTEM_TEMPLATE = "<|im_start|>system\n{system_message}"
_ROLES = ("<|im_start|>user\n", "<|im_start|>assistant\n")
_SEP = "<|im_end|>\n"
NUM_IMAGE_TOKEN = 256


def _legacy_clean_up(text: str) -> str:
    """transformers 4.x `PreTrainedTokenizerBase.clean_up_tokenization`."""
    for old, new in (
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ):
        text = text.replace(old, new)
    return text


class ReferenceInternLM2Tokenizer:
    """The original InternLM2Tokenizer's encode and decode, on sentencepiece directly."""

    def __init__(self, folder: str | Path) -> None:
        import sentencepiece as spm

        folder = Path(folder)
        self.sp = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
        config = json.loads((folder / "tokenizer_config.json").read_text())
        self.added_decoder = {
            int(i): e["content"] for i, e in config.get("added_tokens_decoder", {}).items()
        }
        self.added_encoder = {c: i for i, c in self.added_decoder.items()}
        named = [config.get(k) for k in ("bos_token", "eos_token", "unk_token", "pad_token")]
        self.additional = list(config.get("additional_special_tokens") or [])
        self.all_special = {t for t in [*named, *self.additional] if t}
        self.all_special_ids = {self.to_id(t) for t in self.all_special}
        self.vocab_size = self.sp.get_piece_size()
        self.legacy_added = (set(self.added_encoder) - self.all_special) | {
            t for t in self.additional if self.to_id(t) >= self.vocab_size
        }
        self.add_bos_token = config.get("add_bos_token", True)

    def to_id(self, token: str) -> int:
        if token in self.added_encoder:
            return self.added_encoder[token]
        return int(self.sp.piece_to_id(token))

    def to_token(self, index: int) -> str:
        return self.added_decoder.get(index) or str(self.sp.id_to_piece(index))

    def _split(self, text: str) -> list[str]:
        """transformers' Trie.split: the earliest, then longest, added token each time."""
        out, start = [], 0
        while start < len(text):
            best: tuple[int, int] | None = None
            for token in self.added_encoder:
                at = text.find(token, start)
                if at >= 0 and (best is None or (at, -len(token)) < (best[0], -best[1])):
                    best = (at, len(token))
            if best is None:
                out.append(text[start:])
                break
            at, length = best
            if at > start:
                out.append(text[start:at])
            out.append(text[at : at + length])
            start = at + length
        return out

    def tokenize(self, text: str) -> list[str]:
        tokens: list[str] = []
        for chunk in self._split(text):
            if chunk in self.added_encoder:
                tokens.append(chunk)
            elif chunk:
                tokens.extend(self.sp.encode(chunk, out_type=str))
        return tokens

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = [self.to_id(t) for t in self.tokenize(text)]
        if add_special_tokens and self.add_bos_token:
            ids = [self.sp.bos_id(), *ids]
        return ids

    def _tokens_to_string(self, tokens: list[str]) -> str:
        """InternLM2Tokenizer.convert_tokens_to_string."""
        current: list[str] = []
        out = ""
        prev_is_special = False
        for token in tokens:
            if token in self.all_special:
                if not prev_is_special:
                    out += " "
                out += self.sp.decode(current) + token
                prev_is_special = True
                current = []
            else:
                current.append(token)
                prev_is_special = False
        out += self.sp.decode(current)
        out = _legacy_clean_up(out)
        # _maybe_add_prefix_space compares a token (str) with a set of ids: always true.
        if tokens:
            out = " " + out
        return out[1:]

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        """PreTrainedTokenizer._decode (transformers 4.x, spaces_between_special_tokens)."""
        tokens = [
            self.to_token(i) for i in ids if not (skip_special_tokens and i in self.all_special_ids)
        ]
        sub_texts: list[str] = []
        current: list[str] = []
        for token in tokens:
            if skip_special_tokens and token in self.all_special:
                continue
            if token in self.legacy_added:
                if current:
                    text = self._tokens_to_string(current)
                    if text:
                        sub_texts.append(text)
                    current = []
                sub_texts.append(token)
            else:
                current.append(token)
        if current:
            sub_texts.append(self._tokens_to_string(current))
        return " ".join(sub_texts)


def model_card_prompt(
    question: str,
    num_patches_list: list[int],
    history: list[tuple[str, str]] | None = None,
    system_message: str = SYSTEM_MESSAGE,
) -> str:
    """The query string of InternVLChatModel.chat (before tokenization)."""
    if history is None and num_patches_list and "<image>" not in question:
        question = "<image>\n" + question
    messages = [*(history or []), (question, None)]
    query = _SYSTEM_TEMPLATE.format(system_message=system_message) + _SEP
    for old_question, old_answer in messages:
        query += _ROLES[0] + old_question + _SEP
        query += _ROLES[1] + (old_answer + _SEP if old_answer is not None else "")
    for num_patches in num_patches_list:
        tokens = "<img>" + "<IMG_CONTEXT>" * NUM_IMAGE_TOKEN * num_patches + "</img>"
        query = query.replace("<image>", tokens, 1)
    return query


def _closest_aspect_ratio(
    aspect: float, ratios: list[tuple[int, int]], width: int, height: int, size: int
) -> tuple[int, int]:
    best_diff, best = float("inf"), (1, 1)
    area = width * height
    for ratio in ratios:
        diff = abs(aspect - ratio[0] / ratio[1])
        if diff < best_diff:
            best_diff, best = diff, ratio
        elif diff == best_diff and area > 0.5 * size * size * ratio[0] * ratio[1]:
            best = ratio
    return best


def model_card_tiles(
    image: Image.Image, min_num: int = 1, max_num: int = 12, size: int = 448
) -> list[Image.Image]:
    """The model card's dynamic_preprocess (use_thumbnail=True)."""
    width, height = image.size
    ratios = sorted(
        {
            (i, j)
            for n in range(min_num, max_num + 1)
            for i in range(1, n + 1)
            for j in range(1, n + 1)
            if min_num <= i * j <= max_num
        },
        key=lambda r: r[0] * r[1],
    )
    cols, rows = _closest_aspect_ratio(width / height, ratios, width, height, size)
    resized = image.resize((size * cols, size * rows), Image.Resampling.BICUBIC)
    tiles = []
    for i in range(cols * rows):
        box = ((i % cols) * size, (i // cols) * size)
        tiles.append(resized.crop((box[0], box[1], box[0] + size, box[1] + size)))
    if len(tiles) != 1:
        tiles.append(image.resize((size, size), Image.Resampling.BICUBIC))
    return tiles


def model_card_pixels(image: Image.Image, max_num: int = 12) -> np.ndarray:
    """load_image: tiles -> (tiles, 3, 448, 448) float32, ImageNet-normalized."""
    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32)
    arrays = []
    for tile in model_card_tiles(image.convert("RGB"), max_num=max_num):
        tile = tile.resize((448, 448), Image.Resampling.BICUBIC)
        array = np.asarray(tile, dtype=np.float32) / 255.0
        arrays.append(((array - mean) / std).transpose(2, 0, 1))
    return np.stack(arrays)

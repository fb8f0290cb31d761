"""The published tokenizer.json: the model's own fast tokenizer, truncating at max_seq_length, padding
to the longest input of a batch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tokenizers import Tokenizer

from server.repository import ATTENTION_MASK, INPUT_IDS, TOKEN_TYPE_IDS

from .errors import InputError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

@dataclass(frozen=True)
class Padding:
    pad_id: int
    pad_token: str
    side: str


def padding_of(model: SentenceTransformer) -> Padding:
    tokenizer = model[0].tokenizer
    if tokenizer.pad_token is None or tokenizer.pad_token_id is None:
        raise InputError("the model's tokenizer defines no pad token")
    return Padding(
        pad_id=int(tokenizer.pad_token_id), pad_token=str(tokenizer.pad_token), side=tokenizer.padding_side
    )


def build_tokenizer(model: SentenceTransformer, max_seq_length: int) -> Tokenizer:
    """A copy of the tokenizer sentence-transformers uses (incl. its lower-casing), configured for serving."""
    tokenizer = model[0].tokenizer
    if not getattr(tokenizer, "is_fast", False):
        raise InputError("the model has no fast tokenizer (tokenizer.json); the server needs one")
    published = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    padding = padding_of(model)
    published.enable_truncation(max_length=max_seq_length, strategy="longest_first", direction="right")
    published.enable_padding(
        direction=padding.side, pad_id=padding.pad_id, pad_token=padding.pad_token, pad_type_id=0
    )
    return published


def load(path: Path) -> Tokenizer:
    return Tokenizer.from_file(str(path))


def encode(tokenizer: Tokenizer, texts: list[str], inputs: list[str]) -> dict[str, np.ndarray]:
    """The ONNX feed for `texts`: exactly the graph's inputs, int64, with the tokenizer's own padding."""
    encodings = tokenizer.encode_batch(texts)
    columns = {
        INPUT_IDS: [e.ids for e in encodings],
        ATTENTION_MASK: [e.attention_mask for e in encodings],
        TOKEN_TYPE_IDS: [e.type_ids for e in encodings],
    }
    missing = [name for name in inputs if name not in columns]
    if missing:
        raise ValueError(f"the graph wants inputs this exporter cannot feed: {missing}")
    return {name: np.asarray(columns[name], dtype=np.int64) for name in inputs}

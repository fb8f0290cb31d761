"""Text → token ids with the model's own tokenizer.json, truncated at max_seq_length, never padded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Encoding, Tokenizer

from .errors import invalid


@dataclass(frozen=True)
class Tokenized:
    """The sequences of one request, ready to queue: ids include the model's special tokens."""

    sequences: list[np.ndarray]
    truncated: int

    @property
    def token_count(self) -> int:
        return sum(len(s) for s in self.sequences)


class TextTokenizer:
    def __init__(self, path: Path, max_seq_length: int, *, truncate: bool) -> None:
        self.max_seq_length = max_seq_length
        self.truncate = truncate
        self._tokenizer = Tokenizer.from_file(str(path))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_seq_length)
        self._untruncated = Tokenizer.from_file(str(path))
        self._untruncated.no_padding()
        self._untruncated.no_truncation()
        self.vocab_size = self._tokenizer.get_vocab_size(with_added_tokens=True)
        self.pad_id = self._pad_id(path)
        self.prefix, self.suffix = self._special_affixes()

    def _pad_id(self, path: Path) -> int:
        padding = Tokenizer.from_file(str(path)).padding
        if padding and padding.get("pad_id") is not None:
            return int(padding["pad_id"])
        for token in ("[PAD]", "<pad>"):
            token_id = self._tokenizer.token_to_id(token)
            if token_id is not None:
                return token_id
        return 0

    def _special_affixes(self) -> tuple[list[int], list[int]]:
        """The special tokens the post-processor puts around one sequence, e.g. [CLS] … [SEP]."""
        encoding = self._untruncated.encode("a")
        positions = [i for i, special in enumerate(encoding.special_tokens_mask) if not special]
        if not positions:
            return [], []
        return encoding.ids[: positions[0]], encoding.ids[positions[-1] + 1 :]

    def encode_texts(self, texts: list[str]) -> Tokenized:
        for index, text in enumerate(texts):
            if not text:
                raise invalid(f"input {index} is an empty string", param="input")
            if "\x00" in text:
                raise invalid(f"input {index} contains a NUL character", param="input")
        if len(texts) == 1:
            encodings = [self._tokenizer.encode(texts[0])]
        else:
            encodings = self._tokenizer.encode_batch(texts)
        truncated = [i for i, e in enumerate(encodings) if e.overflowing]
        if truncated and not self.truncate:
            lengths = [len(e.ids) for e in self._untruncated.encode_batch([texts[i] for i in truncated[:1]])]
            raise invalid(
                f"input {truncated[0]} has {lengths[0]} tokens, more than this model's max_seq_length "
                f"{self.max_seq_length}, and the server is configured not to truncate",
                param="input",
            )
        sequences = [np.asarray(e.ids, dtype=np.int64) for e in encodings]
        return Tokenized(sequences=sequences, truncated=len(truncated))

    def encode_full(self, texts: list[str]) -> list[Encoding]:
        """Untruncated encodings with the special tokens, for left truncation and chunking (server/chunking.py)."""
        if len(texts) == 1:
            return [self._untruncated.encode(texts[0])]
        return self._untruncated.encode_batch(texts)

    def encode_ids(self, token_lists: list[list[int]]) -> Tokenized:
        """Pre-tokenized input (ids without special tokens): add the model's special tokens, check the vocabulary."""
        room = self.max_seq_length - len(self.prefix) - len(self.suffix)
        sequences, truncated = [], 0
        for index, ids in enumerate(token_lists):
            array = np.asarray(ids, dtype=np.int64)
            if array.size and (array.min() < 0 or array.max() >= self.vocab_size):
                raise invalid(
                    f"input {index} holds token ids outside this model's vocabulary [0, {self.vocab_size})",
                    param="input",
                )
            if array.size > room:
                if not self.truncate:
                    raise invalid(
                        f"input {index} has {array.size + len(self.prefix) + len(self.suffix)} tokens, more than "
                        f"this model's max_seq_length {self.max_seq_length}, and the server is configured not "
                        "to truncate",
                        param="input",
                    )
                array, truncated = array[:room], truncated + 1
            sequences.append(np.concatenate([self.prefix, array, self.suffix]).astype(np.int64))
        return Tokenized(sequences=sequences, truncated=truncated)

    def tokens(self, text: str) -> list[tuple[int, str, int, int, bool]]:
        """(id, token text, start, stop, special) for each token of `text`, as TEI's /tokenize shows them."""
        encoding = self._tokenizer.encode(text)
        return [
            (token_id, token, start, stop, bool(special))
            for token_id, token, (start, stop), special in zip(
                encoding.ids, encoding.tokens, encoding.offsets, encoding.special_tokens_mask
            )
        ]

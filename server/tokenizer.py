"""Text → token ids with the model's own tokenizer.json, truncated at max_seq_length, never padded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Encoding, Tokenizer

from .errors import ServerError, invalid

# A text longer than max_seq_length x this many characters is tokenized from a prefix first (see `_encode_one`).
PREFIX_CHARS_PER_TOKEN = 16
# Tokens the prefix must yield beyond what is kept, so that the word cut at its end cannot reach the kept ones
# (WordPiece turns a word of more than 100 characters into one [UNK]).
PREFIX_MARGIN_TOKENS = 128
# Characters at the start of a suffix searched for a word boundary (`kept_suffix`).
WORD_SCAN_CHARS = 512
# Texts longer than this are encoded with `encode_batch`, which releases the GIL (`encode` holds it throughout).
GIL_FREE_CHARS = 4096


@dataclass(frozen=True)
class Tokenized:
    """The sequences of one request, ready to queue: ids include the model's special tokens."""

    sequences: list[np.ndarray]
    truncated: int

    @property
    def token_count(self) -> int:
        return sum(len(s) for s in self.sequences)


def too_long_error(index: int, tokens: int | None, max_seq_length: int) -> ServerError:
    """The error for input `index` over the model's limit with truncation off (`tokens` None: not counted)."""
    count = "more tokens than" if tokens is None else f"{tokens} tokens, more than"
    return invalid(f"input {index} has {count} this model's max_seq_length {max_seq_length}, and the server is "
                   "configured not to truncate", param="input")


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
        """Texts already checked (non-empty, no NUL: `embedding.check_texts`) to sequences with special tokens."""
        if max(map(len, texts)) > self.max_seq_length * PREFIX_CHARS_PER_TOKEN:
            results = [self._encode_one(text) for text in texts]
        elif len(texts) == 1 and len(texts[0]) <= GIL_FREE_CHARS:
            encoding = self._tokenizer.encode(texts[0])
            results = [(encoding.ids, bool(encoding.overflowing))]
        else:
            results = [(e.ids, bool(e.overflowing)) for e in self._tokenizer.encode_batch(texts)]
        truncated = [i for i, (_, cut) in enumerate(results) if cut]
        if truncated and not self.truncate:
            raise too_long_error(truncated[0], self._token_count(texts[truncated[0]]), self.max_seq_length)
        sequences = [np.asarray(ids, dtype=np.int64) for ids, _ in results]
        return Tokenized(sequences=sequences, truncated=len(truncated))

    def _encode_one(self, text: str) -> tuple[list[int], bool]:
        """Ids of one long text (truncated) and whether it was truncated; `encode_batch` releases the GIL."""
        prefix, count = self._kept_prefix(text)
        encoding = self._tokenizer.encode_batch([prefix])[0]
        return encoding.ids, count is not None or bool(encoding.overflowing)

    def _kept_prefix(self, text: str) -> tuple[str, int | None]:
        """A prefix of `text` that tokenizes to the same first max_seq_length tokens, and its token count.

        The pre-tokenizers split on whitespace and punctuation and the normalizers work per character, so only
        the word cut at the prefix's end can tokenize differently from the whole text; a prefix that yields
        PREFIX_MARGIN_TOKENS more tokens than are kept puts that word's tokens past the kept ones. A 10 MB text
        then costs the tokenization of a few kilobytes. Returns (text, None) when no shorter prefix will do.
        """
        room = self.max_seq_length - len(self.prefix) - len(self.suffix)
        cut = self.max_seq_length * PREFIX_CHARS_PER_TOKEN
        while cut < len(text):
            plain = self._untruncated.encode_batch([text[:cut]], add_special_tokens=False)[0]
            if len(plain.ids) >= room + PREFIX_MARGIN_TOKENS:
                return text[:cut], len(plain.ids)
            cut *= 4
        return text, None

    def kept_suffix(self, text: str) -> str:
        """A suffix of `text` that tokenizes to the same last max_seq_length tokens as the whole text (left
        truncation keeps only those), so a long text costs the tokenization of a few kilobytes whichever end is
        kept. The suffix starts where a word of the model's pre-tokenizer starts: words tokenize independently
        (BPE does not, within one word: a cut inside a long run would change its last tokens). Returns `text`
        when no shorter suffix will do (no word boundary near the cut, or no pre-tokenizer)."""
        pre_tokenizer = self._untruncated.pre_tokenizer
        room = self.max_seq_length - len(self.prefix) - len(self.suffix)
        cut = self.max_seq_length * PREFIX_CHARS_PER_TOKEN
        while pre_tokenizer is not None and cut < len(text):
            tail = text[-cut:]
            words = pre_tokenizer.pre_tokenize_str(tail[:WORD_SCAN_CHARS])
            if len(words) > 1:
                kept = tail[words[1][1][0]:]  # from the first word the cut did not go through
                plain = self._untruncated.encode_batch([kept], add_special_tokens=False)[0]
                if len(plain.ids) >= room + PREFIX_MARGIN_TOKENS:
                    return kept
            cut *= 4
        return text

    def surely_longer_than(self, text: str, tokens: int) -> bool:
        """Whether `text` has more than `tokens` tokens, decided from prefixes of doubling length that start a
        little over `tokens` characters, so that a text far over the bound costs the tokenization of about `tokens` tokens,
        not of the whole text. False means: tokenize it whole to know."""
        cut = tokens + 2 * PREFIX_MARGIN_TOKENS
        while cut < len(text):
            plain = self._untruncated.encode_batch([text[:cut]], add_special_tokens=False)[0]
            if len(plain.ids) > tokens + PREFIX_MARGIN_TOKENS:  # the word cut at the end adds fewer than that
                return True
            cut *= 2
        return False

    def _token_count(self, text: str) -> int | None:
        """The tokens of a text refused as too long, or None for one too long to be worth counting whole."""
        if len(text) > self.max_seq_length * PREFIX_CHARS_PER_TOKEN:
            return None
        return len(self._untruncated.encode_batch([text])[0].ids)

    def encode_full(self, texts: list[str]) -> list[Encoding]:
        """Untruncated encodings with the special tokens, for left truncation and chunking (server/chunking.py)."""
        return self._untruncated.encode_batch(texts)  # releases the GIL (`encode` holds it throughout)

    def encode_ids(self, token_lists: list[list[int]]) -> Tokenized:
        """Pre-tokenized input (ids without special tokens): add the model's special tokens, check the vocabulary."""
        room = self.max_seq_length - len(self.prefix) - len(self.suffix)
        sequences, truncated = [], 0
        for index, ids in enumerate(token_lists):
            try:
                array = np.asarray(ids, dtype=np.int64)
            except (OverflowError, ValueError, TypeError):  # e.g. an id of 2**63 or more
                array = np.array([-1])
            if array.size and (array.min() < 0 or array.max() >= self.vocab_size):
                raise invalid(
                    f"input {index} holds token ids outside this model's vocabulary [0, {self.vocab_size})",
                    param="input",
                )
            if array.size > room:
                if not self.truncate:
                    raise too_long_error(index, array.size + len(self.prefix) + len(self.suffix), self.max_seq_length)
                array, truncated = array[:room], truncated + 1
            sequences.append(np.concatenate([self.prefix, array, self.suffix]).astype(np.int64))
        return Tokenized(sequences=sequences, truncated=truncated)

    def tokens(self, text: str) -> list[tuple[int, str, int, int, bool]]:
        """(id, token text, start, stop, special) for each token of `text`, as TEI's /tokenize shows them."""
        if len(text) > self.max_seq_length * PREFIX_CHARS_PER_TOKEN:
            text = self._kept_prefix(text)[0]
        if len(text) > GIL_FREE_CHARS:
            encoding = self._tokenizer.encode_batch([text])[0]
        else:
            encoding = self._tokenizer.encode(text)
        return [
            (token_id, token, start, stop, bool(special))
            for token_id, token, (start, stop), special in zip(
                encoding.ids, encoding.tokens, encoding.offsets, encoding.special_tokens_mask
            )
        ]

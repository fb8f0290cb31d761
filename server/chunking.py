"""Long inputs at token level: left truncation, overlapping windows with character spans, their weighted mean.

Everything starts from one untruncated encoding of `prompt + text` with the model's special tokens, split
into [special prefix] [prompt tokens] [text tokens] [special suffix]. The prompt's tokens are the leading
tokens that lie entirely inside the prompt's characters, so prompt and text are tokenized together exactly
as sentence-transformers tokenizes `prompt + text`.

- Left truncation keeps the special tokens, the prompt and the last text tokens that fit.
- Windows: the text tokens are cut into windows of `room = max_seq_length - specials - prompt tokens`
  tokens with stride `room - overlap`; each window is embedded as prefix + prompt + window + suffix. An input
  that fits is one window: its whole encoding, the same sequence as without chunking.
- A window's span is the character range of the input text (the prompt not counted) from its first token's
  start to its last token's end; `text[start:end]` is the text the window embeds.
- The mean of an input's windows is weighted by each window's text token count and re-normalized when the
  model normalizes its outputs (what vLLM's chunked processing returns).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import invalid
from .vectors import l2_normalized


@dataclass(frozen=True)
class Split:
    """One input's encoding of `prompt + text`, in its parts."""

    prefix: np.ndarray  # leading special tokens
    prompt: np.ndarray  # the prompt's tokens
    text: np.ndarray  # the text's tokens
    offsets: np.ndarray  # [len(text), 2] character offsets of the text tokens in the text (prompt not counted)
    suffix: np.ndarray  # trailing special tokens
    text_chars: int

    @property
    def length(self) -> int:
        return len(self.prefix) + len(self.prompt) + len(self.text) + len(self.suffix)

    def sequence(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """prefix + prompt + text[start:stop] + suffix, as int64."""
        return np.concatenate([self.prefix, self.prompt, self.text[start:stop], self.suffix]).astype(np.int64)


def split_encoding(ids: Sequence[int], offsets: Sequence[tuple[int, int]], *, prefix: int, suffix: int,
                   prompt_chars: int, text_chars: int) -> Split:
    """Split an encoding of `prompt + text` that carries `prefix` and `suffix` special tokens at its ends."""
    array = np.asarray(ids, dtype=np.int64)
    spans = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    body = slice(prefix, len(array) - suffix)
    content, content_spans = array[body], spans[body]
    prompt_count = 0
    if prompt_chars:
        inside = content_spans[:, 1] <= prompt_chars
        prompt_count = len(inside) if inside.all() else int(np.argmin(inside))
    text_spans = np.clip(content_spans[prompt_count:] - prompt_chars, 0, text_chars)
    return Split(array[:prefix], content[:prompt_count], content[prompt_count:], text_spans,
                 array[len(array) - suffix:], text_chars)


def _room(split: Split, max_seq_length: int) -> int:
    room = max_seq_length - len(split.prefix) - len(split.suffix) - len(split.prompt)
    if room < 1:
        raise invalid(f"the prompt takes {len(split.prompt)} tokens and leaves no room for the text within this "
                      f"model's max_seq_length {max_seq_length}", "prompt")
    return room


def truncate_left(split: Split, max_seq_length: int) -> np.ndarray:
    """The sequence keeping the special tokens, the prompt and as many of the last text tokens as fit."""
    if split.length <= max_seq_length:
        return split.sequence()
    return split.sequence(len(split.text) - _room(split, max_seq_length))


@dataclass(frozen=True)
class Window:
    sequence: np.ndarray  # int64 ids with special tokens and prompt
    start: int  # character span in the input text
    end: int
    weight: int  # text tokens in the window


def windows(split: Split, max_seq_length: int, overlap: int, max_windows: int) -> list[Window]:
    """The input as one window if it fits, else overlapping windows of text tokens (stride room - overlap).

    The count is known from the lengths, so more than `max_windows` is refused before any window is built."""
    count = len(split.text)
    if split.length <= max_seq_length:
        return [_window(split, 0, count)]
    room = _room(split, max_seq_length)
    if overlap >= room:
        raise invalid(f"the chunk overlap {overlap} must be smaller than the window, {room} tokens for this "
                      "model and prompt", "chunking")
    stride = room - overlap
    if 1 + -(-(count - room) // stride) > max_windows:
        raise TooManyWindows()
    starts = [0]
    while starts[-1] + room < count:
        starts.append(starts[-1] + stride)
    return [_window(split, start, min(start + room, count)) for start in starts]


class TooManyWindows(Exception):
    """More windows than the request may have; the caller words the error (it knows the request's total)."""


def _window(split: Split, start: int, stop: int) -> Window:
    if stop <= start:
        return Window(split.sequence(), 0, split.text_chars, 1)
    return Window(split.sequence(start, stop), int(split.offsets[start, 0]), int(split.offsets[stop - 1, 1]),
                  stop - start)


def most_tokens(windows: int, max_seq_length: int, overlap: int) -> int:
    """The most text tokens `windows` windows can hold (no prompt, no special tokens: a high bound). An input that
    fits one window is one window however few are left (`windows` counts only windows of long inputs)."""
    windows = max(windows, 1)
    return max_seq_length + (windows - 1) * max(1, max_seq_length - overlap)


def estimated_windows(text_chars: int, max_seq_length: int, overlap: int, chars_per_token: int) -> int:
    """A low estimate of an input's window count from its length alone (before tokenizing)."""
    stride = max(1, max_seq_length - 2 - overlap)
    tokens = text_chars // chars_per_token
    return 1 if tokens <= max_seq_length else 1 + -(-(tokens - max_seq_length) // stride)


def weighted_mean(vectors: np.ndarray, weights: np.ndarray, *, model_normalizes: bool) -> np.ndarray:
    """The mean of `vectors` [k, dim] weighted by `weights` [k]; unit length when the model normalizes."""
    mean = (vectors.astype(np.float64) * weights[:, None]).sum(axis=0) / max(float(weights.sum()), 1.0)
    if model_normalizes:
        mean = l2_normalized(mean)
    return mean.astype(np.float32)

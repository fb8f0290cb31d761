"""Admission: a request reserves its share of a model's token budget before any of its work is done.

A request is admitted (or refused with 429/503 and Retry-After) from its size alone, before it is tokenized:
its reservation is an upper-bound estimate of its tokens (each text at most `max_seq_length` tokens, and a
text of n characters rarely more than n + the special tokens), lowered or raised to the real count once
tokenized, and released when the request is answered, refused later, or cancelled (a cancelled request's
tokenizer job that already runs keeps its reservation until it ends; one still queued is dropped). So the work waiting for
the tokenizer, in the queue and being computed is bounded in tokens, not only in requests, and a flood of large
requests is turned away before their tokenization costs CPU. Used on the event loop only: no lock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import Future

from .errors import ErrorKind, ServerError


def estimate_text_tokens(texts: Sequence[str], max_seq_length: int, specials: int) -> int:
    """Tokens these texts will probably need: min(max_seq_length, characters + special tokens) each."""
    return sum(min(max_seq_length, len(text) + specials) for text in texts)


def estimate_id_tokens(token_lists: Sequence[Sequence[int]], max_seq_length: int, specials: int) -> int:
    """Tokens these pre-tokenized inputs need once the special tokens are added (exact, capped)."""
    return sum(min(max_seq_length, len(ids) + specials) for ids in token_lists)


class Ticket:
    """One admitted request's reservation. `release` is idempotent; while CPU work of the request still runs on
    another thread (`hold_until`), the release waits for it, so the budget bounds the work really pending."""

    def __init__(self, admission: TokenBudget, tokens: int) -> None:
        self._admission: TokenBudget | None = admission
        self.tokens = tokens
        self._holds = 0
        self._release_asked = False

    def resize(self, tokens: int) -> None:
        """Replace the estimate with the real count (never refused: the request is already admitted)."""
        if self._admission is not None:
            self._admission.reserved += tokens - self.tokens
            self.tokens = tokens

    def hold_until(self, work: Future, loop: asyncio.AbstractEventLoop) -> None:
        """Keep the reservation, even past `release`, until `work` (running on another thread) is done."""
        self._holds += 1
        work.add_done_callback(lambda _: loop.call_soon_threadsafe(self._unhold))

    def _unhold(self) -> None:
        self._holds -= 1
        if self._release_asked:
            self.release()

    def release(self) -> None:
        self._release_asked = True
        if self._holds == 0 and self._admission is not None:
            self._admission.reserved -= self.tokens
            self._admission = None


class TokenBudget:
    """At most `max_tokens` tokens reserved at once (0 = no bound); one request alone is always admitted."""

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self.reserved = 0

    def reserve(self, tokens: int) -> Ticket:
        if self.max_tokens and self.reserved and self.reserved + tokens > self.max_tokens:
            raise ServerError(ErrorKind.OVERLOADED, f"Exceeds maximum queued tokens ({self.max_tokens})",
                              retry_after_s=1)
        self.reserved += tokens
        return Ticket(self, tokens)


def estimate_window_tokens(text_chars: Sequence[int], max_seq_length: int, specials: int, overlap: int) -> int:
    """Tokens chunked texts will probably need (at most one token per character, as above): one sequence of
    min(max_seq_length, characters + `specials`) for a short text, else its windows (each room =
    max_seq_length - `specials` new tokens, stride room - overlap) at max_seq_length each. `specials` counts the
    special tokens and the prompt (repeated in every window)."""
    room = max(1, max_seq_length - specials)
    stride = max(1, room - overlap)
    total = 0
    for chars in text_chars:
        if chars <= room:
            total += min(max_seq_length, chars + specials)
        else:
            total += (1 + -(-(chars - room) // stride)) * max_seq_length
    return total

"""The batching policy: when to take queued texts, how many from each request, how to split them into runs.
Pure functions and one frozen policy object (`BatchingPolicy`): no clock, no threads, no I/O.

Rounds: the inference threads take queued work a round at a time. A round gives each queued request, in
arrival order, a turn of at most one batch's worth of its texts, and goes round again until the round is
full, so a 1-text request queued behind a 2048-text one runs in the next round, not after all of it. A
request's turns take its texts shortest first (`turn_order`), so each turn's texts are of like lengths and
a round splits into few, well-filled batches, nearly as if the whole request had been sorted at once. (While a
bulk request is on its short texts, a turn of it is bounded by the text count, not the tokens, so it takes
more of a round's texts than its long ones would.)

A batch fed to ONNX Runtime is one rectangular tensor padded to its longest text, so its cost is
about `overhead + count x longest` token-steps. Sorting the queued texts by length and cutting the
sorted run where that total cost is least beats filling a fixed token budget in arrival order
(mixed lengths pad badly) and beats fixed-size chunks of the sorted run (each run has an overhead
that small batches pay too often).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def plan_batches(
    lengths: Sequence[int],
    *,
    max_batch_size: int,
    max_batch_tokens: int,
    batch_overhead_tokens: int,
) -> list[list[int]]:
    """Split items (given by their token lengths) into batches; returns lists of item indexes.

    Every batch holds at most `max_batch_size` items and at most `max_batch_tokens` padded tokens
    (count x longest), except that an item longer than the budget still runs, alone. Batches come
    out shortest texts first; within a batch, items are in ascending length.
    """
    if max_batch_size < 1 or max_batch_tokens < 1:
        raise ValueError("max_batch_size and max_batch_tokens must be >= 1")
    n = len(lengths)
    if n <= 1:
        return [[0]] if n else []
    order = np.argsort(np.asarray(lengths, dtype=np.int64), kind="stable")
    sorted_len = np.asarray(lengths, dtype=np.int64)[order]
    cuts = _least_padding_cuts(sorted_len, max_batch_size, max_batch_tokens, batch_overhead_tokens)
    return [order[start:end].tolist() for start, end in zip(cuts[:-1], cuts[1:])]


def _least_padding_cuts(sorted_len: np.ndarray, max_size: int, max_tokens: int, overhead: int) -> list[int]:
    """Dynamic programme over the sorted lengths: best[i] = least cost of running the first i items."""
    n = len(sorted_len)
    best = np.zeros(n + 1, dtype=np.float64)
    start_of = np.zeros(n + 1, dtype=np.int64)
    for end in range(1, n + 1):
        longest = int(sorted_len[end - 1])
        fit = max(1, min(max_size, max_tokens // max(longest, 1)))
        first = max(0, end - fit)
        starts = np.arange(first, end)
        costs = best[first:end] + overhead + (end - starts) * longest
        k = int(np.argmin(costs))
        best[end] = costs[k]
        start_of[end] = first + k
    cuts = [n]
    while cuts[-1] > 0:
        cuts.append(int(start_of[cuts[-1]]))
    return cuts[::-1]


def padded_tokens(lengths: Sequence[int]) -> int:
    """Tokens a batch of these lengths costs once padded to its longest."""
    return len(lengths) * max(lengths, default=0)


def turn_order(lengths: Sequence[int]) -> np.ndarray:
    """The order in which a request's texts (given by their token lengths) go into its turns: shortest first,
    ties in arrival order. A turn is then a run of like lengths, which pads little however the round falls."""
    if len(lengths) == 1:
        return _ONE_TEXT  # the common case at any load: no sort
    return np.argsort(np.asarray(lengths, dtype=np.int64), kind="stable")


_ONE_TEXT = np.zeros(1, dtype=np.int64)
_ONE_TEXT.flags.writeable = False


def fair_round(
    pending: Sequence[Sequence[int]],
    *,
    max_texts: int,
    max_tokens: int,
    turn_texts: int,
    turn_tokens: int,
) -> list[int]:
    """How many of its next texts each pending request (given by the token lengths of its untaken texts, in
    the order they are to be taken) puts into one round.

    Requests take turns in arrival order; a turn is at most `turn_texts` texts and `turn_tokens` tokens (but at
    least one text); turns go round until the round holds `max_texts` texts or `max_tokens` tokens, or nothing
    is left. The first request's next text is always taken, whatever its size.
    """
    if len(pending) == 1 and len(pending[0]) == 1:
        return [1]  # a lone one-text request (the common case at low load): its text is always taken
    shares = [0] * len(pending)
    texts = tokens = 0
    progress = True
    while progress and texts < max_texts and tokens < max_tokens:
        progress = False
        for k, lengths in enumerate(pending):
            room_texts = min(turn_texts, max_texts - texts, len(lengths) - shares[k])
            taken, cost = _turn(lengths, shares[k], room_texts, min(turn_tokens, max_tokens - tokens),
                                force=texts == 0)
            shares[k] += taken
            texts, tokens = texts + taken, tokens + cost
            progress = progress or taken > 0
            if texts >= max_texts or tokens >= max_tokens:
                break
    return shares


def _turn(lengths: Sequence[int], start: int, room_texts: int, room_tokens: int, *, force: bool) -> tuple[int, int]:
    """(texts, tokens) one request takes from `start` within the room; `force` takes one text even if too long."""
    taken = cost = 0
    while taken < room_texts:
        length = int(lengths[start + taken])
        if cost + length > room_tokens and not (force and taken == 0):
            break
        taken, cost = taken + 1, cost + length
    return taken, cost


@dataclass(frozen=True)
class BatchingPolicy:
    """The whole batching policy of a model, pure (no clock, no threads): when a round is taken (`wait_s`, the
    batching window), in which order a request's texts are taken (`turn_order`), how many of each queued
    request a round takes (`shares`, fair turns of at most one batch), and how the round is split into runs
    (`split`). The work queue and the dispatcher only ask it."""

    max_batch_size: int
    max_batch_tokens: int
    max_queue_delay_s: float
    batch_overhead_tokens: int
    round_batches: int = 2  # enough texts per round to group by length, few enough that newcomers wait little

    @property
    def round_items(self) -> int:
        """Texts per round (a round may end earlier on tokens)."""
        return self.max_batch_size * self.round_batches

    @property
    def round_tokens(self) -> int:
        """Tokens per round (a round always takes at least one text, whatever its length)."""
        return self.max_batch_tokens * self.round_batches

    def wait_s(self, queued_texts: int, oldest_waited_s: float) -> float:
        """How much longer to wait before taking a round (0: take it now), given how many texts are queued and
        how long the oldest queued request has waited: a round's worth of texts, or a request that has waited
        out the batching window (`max_queue_delay_s`; 0 takes at once), ends the wait."""
        if self.max_queue_delay_s <= 0 or queued_texts >= self.round_items:
            return 0.0
        return max(0.0, self.max_queue_delay_s - oldest_waited_s)

    def turn_order(self, lengths: Sequence[int]) -> np.ndarray:
        """The order in which a request's texts are taken into rounds (see `turn_order`)."""
        return turn_order(lengths)

    def shares(self, pending: Sequence[Sequence[int]]) -> list[int]:
        """How many texts each pending request (the token lengths of its untaken texts, in `turn_order`;
        requests in arrival order) gives to the next round."""
        return fair_round(pending, max_texts=self.round_items, max_tokens=self.round_tokens,
                          turn_texts=self.max_batch_size, turn_tokens=self.max_batch_tokens)

    def split(self, lengths: Sequence[int]) -> list[list[int]]:
        """The round's texts (by token length) as batches of indexes."""
        return plan_batches(lengths, max_batch_size=self.max_batch_size, max_batch_tokens=self.max_batch_tokens,
                            batch_overhead_tokens=self.batch_overhead_tokens)

    def largest_batch(self, max_seq_length: int) -> int:
        """How many texts of `max_seq_length` tokens one batch may hold (what a warm-up runs)."""
        return max(1, min(self.max_batch_size, self.max_batch_tokens // max(1, max_seq_length)))

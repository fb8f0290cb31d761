"""The batching policy: which queued texts run together. Pure functions, no threads, no I/O.

A batch fed to ONNX Runtime is one rectangular tensor padded to its longest text, so its cost is
about `overhead + count x longest` token-steps. Sorting the queued texts by length and cutting the
sorted run where that total cost is least beats filling a fixed token budget in arrival order
(mixed lengths pad badly) and beats fixed-size chunks of the sorted run (each run has an overhead
that small batches pay too often).
"""

from __future__ import annotations

from collections.abc import Sequence

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

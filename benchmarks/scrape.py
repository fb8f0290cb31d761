"""Our server's own view of a point: how many texts each model run took, from its Prometheus /metrics."""

from __future__ import annotations

import urllib.error
import urllib.request

BATCH_SIZE = "oes_batch_size"


def batch_totals(url: str) -> tuple[float, float] | None:
    """(texts run, model runs) so far, summed over models; None when the endpoint or metric is absent."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except (urllib.error.URLError, OSError):
        return None
    totals = {"_sum": 0.0, "_count": 0.0}
    found = False
    for line in text.splitlines():
        for suffix in totals:
            if line.startswith((BATCH_SIZE + suffix + "{", BATCH_SIZE + suffix + " ")):
                totals[suffix] += float(line.rsplit(" ", 1)[1])
                found = True
    return (totals["_sum"], totals["_count"]) if found else None


def mean_batch(before: tuple[float, float] | None, after: tuple[float, float] | None) -> float | None:
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])

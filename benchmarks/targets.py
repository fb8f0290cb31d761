"""The issue's targets, as ratios of numbers measured in one run, each with PASS / MISS / n/a."""

from __future__ import annotations

import math
from dataclasses import dataclass

from benchmarks.stats import ratio


@dataclass(frozen=True)
class Target:
    name: str
    value: float
    threshold: float
    at_most: bool = False
    unit: str = "x"

    @property
    def verdict(self) -> str:
        if math.isnan(self.value):
            return "n/a"
        ok = self.value <= self.threshold if self.at_most else self.value >= self.threshold
        return "PASS" if ok else "MISS"

    def measured(self) -> str:
        return "n/a" if math.isnan(self.value) else _fmt(self.value, self.unit)

    def wanted(self) -> str:
        return f"{'<=' if self.at_most else '>='} {_fmt(self.threshold, self.unit)}"

    def describe(self) -> str:
        return f"{self.name}: {self.measured()} (target {self.wanted()}) {self.verdict}"


def _fmt(value: float, unit: str) -> str:
    return f"{value:.1f} {unit}" if unit == "ms" else f"{value:.2f}{unit}"


def point(run: dict, contender: str, concurrency: int, batch: int = 1) -> dict | None:
    entry = run.get("contenders", {}).get(contender) or {}
    for candidate in entry.get("points", []):
        if (
            candidate["concurrency"] == concurrency
            and candidate["batch"] == batch
            and candidate["texts_per_s"] > 0
        ):
            return candidate
    return None


def throughput(run: dict, contender: str, concurrency: int) -> float | None:
    found = point(run, contender, concurrency)
    return found["texts_per_s"] if found else None


def best_of_group(run: dict, group: str, concurrency: int) -> tuple[str | None, float | None]:
    """The contender of `group` with the highest throughput at `concurrency`."""
    scored = [
        (name, throughput(run, name, concurrency))
        for name, entry in run.get("contenders", {}).items()
        if entry.get("group") == group
    ]
    scored = [(name, value) for name, value in scored if value is not None]
    return max(scored, key=lambda item: item[1]) if scored else (None, None)


def evaluate(
    run: dict,
    ours: str = "ours",
    int8: str = "ours-int8",
    peer: str = "infinity",
    process_pool: str = "st-process",
) -> list[Target]:
    saturated = max(run["settings"]["concurrency"])
    ceiling = run.get("ceiling") or {}
    ours_peak = throughput(run, ours, saturated)
    best_article, best_article_tps = best_of_group(run, "article", saturated)
    ours_c64 = point(run, ours, saturated) or {}
    ours_c1 = point(run, ours, 1) or {}
    single = (ceiling.get("single_latency") or {}).get("p50_ms")
    return [
        Target(
            f"c={saturated}: ours / best offline ceiling",
            ratio(ours_peak, ceiling.get("best_texts_per_s")),
            0.90,
        ),
        Target(
            f"c={saturated}: ours / best article design ({best_article or 'none'})",
            ratio(ours_peak, best_article_tps),
            4.0,
        ),
        Target(f"c={saturated}: ours / Infinity", ratio(ours_peak, throughput(run, peer, saturated)), 3.0),
        Target(
            f"c={saturated}: int8 served / fp32 served",
            ratio(throughput(run, int8, saturated), ours_peak),
            1.6,
        ),
        Target(
            f"c={saturated}: probe p99 while ours is saturated",
            _number(ours_c64.get("probe_p99_ms")),
            5.0,
            True,
            "ms",
        ),
        Target(
            "c=1: ours p50 - ceiling single-text p50",
            _difference(ours_c1.get("p50_ms"), single),
            1.0,
            True,
            "ms",
        ),
        Target(
            "server RSS: ours / process-pool design",
            ratio(_peak_rss(run, ours), _peak_rss(run, process_pool)),
            0.40,
            True,
        ),
    ]


def _number(value: float | None) -> float:
    return math.nan if value is None else value


def _difference(a: float | None, b: float | None) -> float:
    return math.nan if a is None or b is None else a - b


def _peak_rss(run: dict, contender: str) -> float | None:
    return (run.get("contenders", {}).get(contender) or {}).get("peak_rss_mb")

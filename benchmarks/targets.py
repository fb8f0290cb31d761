"""The issue's targets, as ratios of numbers measured in one run, each with PASS / MISS / n/a."""

from __future__ import annotations

import math
from dataclasses import dataclass

from benchmarks.contenders import SECOND_MINIMAL
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
        if math.isnan(self.threshold):
            return "info"
        if math.isnan(self.value):
            return "n/a"
        ok = self.value <= self.threshold if self.at_most else self.value >= self.threshold
        return "PASS" if ok else "MISS"

    def measured(self) -> str:
        return "n/a" if math.isnan(self.value) else _fmt(self.value, self.unit)

    def wanted(self) -> str:
        if math.isnan(self.threshold):
            return "-"
        return f"{'<=' if self.at_most else '>='} {_fmt(self.threshold, self.unit)}"

    def describe(self) -> str:
        if self.verdict == "info":
            return f"{self.name}: {self.measured()} (reported)"
        return f"{self.name}: {self.measured()} (target {self.wanted()}) {self.verdict}"


def _fmt(value: float, unit: str) -> str:
    if unit == "us":
        return f"{value:.0f} us"
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


INFO = math.nan  # the threshold of a row that is reported, not judged


def evaluate(run: dict) -> list[Target]:
    """Issue 15's targets: the default layout (one inference thread x every CPU) on the main model, the tuned
    layout (N instances), the larger model, and the peers; ratios within this run."""
    saturated = max(run["settings"]["concurrency"])
    return [
        *_default_layout(run, saturated),
        *_tuned_and_peers(run, saturated),
        *_window_bounds(run.get("ceiling") or {}, "", saturated, throughput(run, "ours", saturated)),
        *_second_model(run, saturated),
    ]


def _window_bounds(ceiling: dict, prefix: str, saturated: int, ours: float | None) -> list[Target]:
    """Reported beside the ceiling targets: what the ceiling reaches when it may only batch within fixed arrival
    windows of as many requests as a server holds at c=`saturated` (an estimate of what a server with that many
    clients can do: it never sees the whole corpus, though its window slides), as a share of the best ceiling,
    and ours against it."""
    window = ceiling.get("window")
    if not window:
        return []
    layout = ceiling.get("layout", "server's layout")
    held = (ceiling.get("window_by_layout") or {}).get(layout)
    return [
        Target(f"{prefix}c={saturated}: windows-of-{window} ceiling / best ceiling, same layout ({layout})",
               ratio(held, _best_in_layout(ceiling, layout)), INFO),
        Target(f"{prefix}c={saturated}: windows-of-{window} ceiling / best ceiling, any layout",
               ratio(ceiling.get("window_texts_per_s"), _best(ceiling)), INFO),
        Target(f"{prefix}c={saturated}: ours / windows-of-{window} ceiling, same layout ({layout})",
               ratio(ours, held), INFO),
    ]


def _default_layout(run: dict, saturated: int) -> list[Target]:
    ceiling = run.get("ceiling") or {}
    ours_peak = throughput(run, "ours", saturated)
    ours_c64 = point(run, "ours", saturated) or {}
    layout = ceiling.get("layout", "server's layout")
    return [
        Target(
            "c=1: ours p50 - minimal ORT-in-handler server p50 (ort-minimal)",
            difference(_p50(run, "ours", 1), _p50(run, "ort-minimal", 1)),
            0.5,
            True,
            "ms",
        ),
        Target(
            f"c={saturated}: ours / best offline ceiling in the same layout ({layout})",
            ratio(ours_peak, _best_in_layout(ceiling, layout)),
            0.90,
        ),
        Target(
            f"c={saturated}: ours / best offline ceiling of any layout",
            ratio(ours_peak, _best(ceiling)),
            INFO,
        ),
        Target(
            f"c={saturated}: probe p99 while ours is saturated",
            _number(ours_c64.get("probe_p99_ms")),
            5.0,
            True,
            "ms",
        ),
        Target(
            "server RSS: ours / process-pool design",
            ratio(_peak_rss(run, "ours"), _peak_rss(run, "st-process")),
            0.40,
            True,
        ),
    ]


def _tuned_and_peers(run: dict, saturated: int) -> list[Target]:
    ceiling = run.get("ceiling") or {}
    ours_peak = throughput(run, "ours", saturated)
    return [
        Target(
            f"c={saturated}: ours tuned (N instances) / best offline ceiling of any layout",
            ratio(throughput(run, "ours-tuned", saturated), _best(ceiling)),
            0.95,
        ),
        Target(
            f"c={saturated}: ours / Infinity", ratio(ours_peak, throughput(run, "infinity", saturated)), 3.0
        ),
        Target(
            f"c={saturated}: ours / Triton (PyTriton), this load generator (targets: perf_analyzer run)",
            ratio(ours_peak, throughput(run, "triton", saturated)),
            INFO,
        ),
        Target(
            f"c={saturated}: int8 served / fp32 served",
            ratio(throughput(run, "ours-int8", saturated), ours_peak),
            1.6,
        ),
    ]


def _second_model(run: dict, saturated: int) -> list[Target]:
    second = run.get("second_model") or {}
    ceiling = second.get("ceiling") or {}
    name = second.get("model", "second model")
    single = (ceiling.get("single_latency") or {}).get("p50_ms")
    layout = ceiling.get("layout", "server's layout")
    return [
        Target(
            f"{name} c={saturated}: ours / best offline ceiling of any layout",
            ratio(throughput(run, "ours-mpnet", saturated), _best(ceiling)),
            0.90,
        ),
        Target(
            f"{name} c=1: ours p50 - single-text ceiling p50 ({layout})",
            difference(_p50(run, "ours-mpnet", 1), single),
            0.5,
            True,
            "ms",
        ),
        # The default layout's own best, as a share of any layout's: the most the c=64 target can reach.
        Target(f"{name} c={saturated}: best offline ceiling in the served layout ({layout}) / best of any layout",
               ratio(_best_in_layout(ceiling, layout), _best(ceiling)), INFO),
        Target(f"{name} c={saturated}: ours / best offline ceiling in the same layout ({layout})",
               ratio(throughput(run, "ours-mpnet", saturated), _best_in_layout(ceiling, layout)), INFO),
        *_window_bounds(ceiling, f"{name} ", saturated, throughput(run, "ours-mpnet", saturated)),
        # What any HTTP server pays above the offline run through this client: the floor of the c=1 target.
        Target(
            f"{name} c=1: minimal ORT-in-handler server p50 - single-text ceiling p50",
            difference(_p50(run, SECOND_MINIMAL, 1), single),
            INFO,
            True,
            "ms",
        ),
        Target(
            f"{name} c=1: ours p50 - minimal ORT-in-handler server p50 ({SECOND_MINIMAL})",
            difference(_p50(run, "ours-mpnet", 1), _p50(run, SECOND_MINIMAL, 1)),
            INFO,
            True,
            "ms",
        ),
    ]


def _best(ceiling: dict) -> float | None:
    return ceiling.get("best_texts_per_s")


def _best_in_layout(ceiling: dict, layout: str) -> float | None:
    return (ceiling.get("best_by_layout") or {}).get(layout)


def _p50(run: dict, contender: str, concurrency: int) -> float | None:
    found = point(run, contender, concurrency)
    return found["p50_ms"] if found else None


def _number(value: float | None) -> float:
    return math.nan if value is None else value


def difference(a: float | None, b: float | None) -> float:
    """a - b, NaN (not measured) when either is missing."""
    return math.nan if a is None or b is None else a - b


def _peak_rss(run: dict, contender: str) -> float | None:
    return (run.get("contenders", {}).get(contender) or {}).get("peak_rss_mb")

"""Prometheus metrics: Triton's per-model metric names, read from ModelStatistics, plus batch histograms.

Triton's counters have no `_total` suffix and prometheus-client appends one to every counter it
exposes, so the Triton families are exposed untyped under their exact names: dashboards and alerts
written for Triton keep working, and rate()/increase() behave the same on them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from .statistics import ModelStatistics

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

BatchObserver = Callable[[int, int, int], None]  # (texts, real tokens, padded tokens) of one model run

# (name, help, value read from the statistics)
_TRITON_COUNTERS: list[tuple[str, str, Callable[[ModelStatistics], float]]] = [
    ("nv_inference_request_success", "Number of successful inference requests, all batch sizes",
     lambda s: s.success.count),
    ("nv_inference_request_failure", "Number of failed inference requests, all batch sizes", lambda s: s.fail.count),
    ("nv_inference_count", "Number of inferences performed (does not include cached requests)",
     lambda s: s.inference_count),
    ("nv_inference_exec_count", "Number of model executions performed (does not include cached requests)",
     lambda s: s.execution_count),
    ("nv_inference_request_duration_us", "Cumulative inference request duration in microseconds",
     lambda s: (s.success.ns + s.fail.ns) // 1000),
    ("nv_inference_queue_duration_us", "Cumulative inference queuing duration in microseconds",
     lambda s: s.queue.ns // 1000),
    ("nv_inference_compute_input_duration_us", "Cumulative compute input duration in microseconds",
     lambda s: s.compute_input.ns // 1000),
    ("nv_inference_compute_infer_duration_us", "Cumulative compute inference duration in microseconds",
     lambda s: s.compute_infer.ns // 1000),
    ("nv_inference_compute_output_duration_us", "Cumulative inference compute output duration in microseconds",
     lambda s: s.compute_output.ns // 1000),
    ("oes_truncated_inputs", "Inputs truncated to the model's max_seq_length", lambda s: s.truncated_inputs),
]


class _TritonCollector:
    """Triton's per-model families; a model version's counters keep counting across reloads (the statistics of
    the instances a reload or unload retired are added to those of the instance serving now)."""

    def __init__(self, statistics: Callable[[], Iterable[ModelStatistics]]) -> None:
        self._statistics = statistics
        self.retired: list[ModelStatistics] = []

    def _by_version(self) -> dict[tuple[str, str], list[ModelStatistics]]:
        grouped: dict[tuple[str, str], list[ModelStatistics]] = {}
        current = list(self._statistics())
        for s in current + [r for r in self.retired if all(r is not c for c in current)]:
            grouped.setdefault((s.name, str(s.version)), []).append(s)
        return grouped

    def collect(self) -> Iterator[Metric]:
        grouped = self._by_version()
        for name, help_text, read in _TRITON_COUNTERS:
            family = Metric(name, help_text, "unknown")
            for (model, version), stats in grouped.items():
                family.add_sample(name, {"model": model, "version": version}, float(sum(read(s) for s in stats)))
            yield family
        pending = GaugeMetricFamily("nv_inference_pending_request_count",
                                    "Instantaneous number of pending requests awaiting execution per-model.",
                                    labels=["model", "version"])
        for (model, version), stats in grouped.items():
            pending.add_metric([model, version], sum(s.pending for s in stats))
        yield pending


class Metrics:
    """Every metric the server exposes, on a registry of its own (one per app)."""

    def __init__(self, statistics: Callable[[], Iterable[ModelStatistics]]) -> None:
        self.registry = CollectorRegistry()
        self._triton = _TritonCollector(statistics)
        self.registry.register(self._triton)
        self.batch_size = Histogram("oes_batch_size", "Texts per model run", ["model"], registry=self.registry,
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.batch_tokens = Histogram("oes_batch_padded_tokens", "Padded tokens (count x longest) per model run",
                                      ["model"], registry=self.registry,
                                      buckets=(16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768))
        self.padding_ratio = Histogram("oes_batch_padding_ratio", "Share of a run's tokens that are padding",
                                       ["model"], registry=self.registry,
                                       buckets=(0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0))

    def retire(self, stats: ModelStatistics) -> None:
        """Keep counting what an instance that a reload or unload replaces has done (and still finishes)."""
        if all(stats is not kept for kept in self._triton.retired):
            self._triton.retired.append(stats)

    def batch_observer(self, model: str) -> BatchObserver:
        """What observes `model`'s runs in the batch histograms (its series exist from here on, at 0)."""
        size, tokens, ratio = (self.batch_size.labels(model), self.batch_tokens.labels(model),
                               self.padding_ratio.labels(model))

        def observe(batch_size: int, real_tokens: int, padded_tokens: int) -> None:
            size.observe(batch_size)
            tokens.observe(padded_tokens)
            ratio.observe(1 - real_tokens / padded_tokens if padded_tokens else 0.0)

        return observe

    def render(self) -> bytes:
        return generate_latest(self.registry)

"""Per-model inference statistics in Triton's shape; /v2/.../stats and /metrics both read them."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns

    def as_json(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass
class BatchStat:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


class ModelStatistics:
    """Cumulative, monotonic counters; written by inference threads and the event loop, read by both."""

    def __init__(self, name: str, version: int) -> None:
        self.name = name
        self.version = version
        self._lock = threading.Lock()
        self.success = Duration()
        self.fail = Duration()
        self.queue = Duration()
        self.compute_input = Duration()
        self.compute_infer = Duration()
        self.compute_output = Duration()
        self.inference_count = 0
        self.execution_count = 0
        self.last_inference_ms = 0
        self.truncated_inputs = 0
        self.pending = 0
        self.batches: dict[int, BatchStat] = defaultdict(BatchStat)

    def record_execution(self, batch_size: int, input_ns: int, infer_ns: int, output_ns: int) -> None:
        with self._lock:
            self.execution_count += 1
            self.inference_count += batch_size
            self.last_inference_ms = int(time.time() * 1000)
            stat = self.batches[batch_size]
            stat.compute_input.add(input_ns)
            stat.compute_infer.add(infer_ns)
            stat.compute_output.add(output_ns)

    def record_success(self, total_ns: int, queue_ns: int, input_ns: int, infer_ns: int, output_ns: int) -> None:
        with self._lock:
            self.success.add(total_ns)
            self.queue.add(queue_ns)
            self.compute_input.add(input_ns)
            self.compute_infer.add(infer_ns)
            self.compute_output.add(output_ns)

    def record_failure(self, total_ns: int) -> None:
        with self._lock:
            self.fail.add(total_ns)

    def record_truncated(self, count: int) -> None:
        if count:
            with self._lock:
                self.truncated_inputs += count

    def change_pending(self, delta: int) -> None:
        with self._lock:
            self.pending += delta

    def as_json(self) -> dict:
        """One entry of Triton's `{"model_stats": [...]}`."""
        with self._lock:
            return {
                "name": self.name,
                "version": str(self.version),
                "last_inference": self.last_inference_ms,
                "inference_count": self.inference_count,
                "execution_count": self.execution_count,
                "inference_stats": {
                    "success": self.success.as_json(),
                    "fail": self.fail.as_json(),
                    "queue": self.queue.as_json(),
                    "compute_input": self.compute_input.as_json(),
                    "compute_infer": self.compute_infer.as_json(),
                    "compute_output": self.compute_output.as_json(),
                    "cache_hit": Duration().as_json(),
                    "cache_miss": Duration().as_json(),
                },
                "response_stats": {},
                "batch_stats": [
                    {
                        "batch_size": size,
                        "compute_input": stat.compute_input.as_json(),
                        "compute_infer": stat.compute_infer.as_json(),
                        "compute_output": stat.compute_output.as_json(),
                    }
                    for size, stat in sorted(self.batches.items())
                ],
                "memory_usage": [],
            }

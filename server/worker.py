"""One inference thread: it alone owns its ONNX Runtime session, and loops until its queue closes."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .batching import plan_batches
from .errors import ErrorKind, ServerError
from .scheduler import Job, WorkQueue
from .statistics import ModelStatistics

log = logging.getLogger(__name__)


class Session(Protocol):
    def run(self, output_names: list[str], input_feed: dict[str, np.ndarray]) -> list[Any]: ...


@dataclass(frozen=True)
class BatchPolicy:
    max_batch_size: int
    max_batch_tokens: int
    max_queue_delay_s: float
    batch_overhead_tokens: int

    @property
    def round_items(self) -> int:
        """Texts taken from the queue per planning round: enough to group by length, few enough to stay fair."""
        return self.max_batch_size * 8


BatchObserver = Callable[[int, int, int], None]  # (batch size, real tokens, padded tokens)


class InferenceWorker:
    def __init__(
        self,
        name: str,
        session: Session,
        input_names: list[str],
        output_name: str,
        pad_id: int,
        queue: WorkQueue,
        policy: BatchPolicy,
        stats: ModelStatistics,
        on_batch: BatchObserver,
        on_fatal: Callable[[BaseException], None],
    ) -> None:
        self.name = name
        self._session = session
        self._input_names = input_names
        self._output_name = output_name
        self._pad_id = pad_id
        self._queue = queue
        self._policy = policy
        self._stats = stats
        self._on_batch = on_batch
        self._on_fatal = on_fatal
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def run_batch_now(self, sequences: list[np.ndarray]) -> np.ndarray:
        """Run one batch on the calling thread: warm-up before the thread starts, nothing else."""
        return self._session.run([self._output_name], self._feeds(sequences))[0]

    def _run(self) -> None:
        jobs: list[Job] | None = []
        try:
            while (jobs := self._queue.take(self._policy.round_items, self._policy.max_queue_delay_s)) is not None:
                self._run_round(jobs)
        except BaseException as exc:  # the thread must never die silently, nor leave its jobs waiting
            log.critical("inference thread %s died", self.name, exc_info=True)
            for job in jobs or []:
                if not job.settled:
                    job.fail(ServerError(ErrorKind.UNAVAILABLE, "the inference thread stopped", retry_after_s=5))
            self._on_fatal(exc)

    def _run_round(self, jobs: list[Job]) -> None:
        live = [job for job in jobs if self._still_wanted(job, time.monotonic())]
        items = [(job, index) for job in live for index in range(len(job.sequences))]
        lengths = [len(job.sequences[index]) for job, index in items]
        plan = plan_batches(
            lengths,
            max_batch_size=self._policy.max_batch_size,
            max_batch_tokens=self._policy.max_batch_tokens,
            batch_overhead_tokens=self._policy.batch_overhead_tokens,
        )
        for batch in plan:
            now = time.monotonic()
            chosen = [items[k] for k in batch if self._still_wanted(items[k][0], now)]
            if chosen:
                self._run_batch(chosen)

    def _still_wanted(self, job: Job, now: float) -> bool:
        if job.abandoned:
            return False
        if job.expired(now):
            self._stats.record_failure(time.perf_counter_ns() - job.enqueued_ns)
            job.fail(ServerError(ErrorKind.TIMEOUT, "Request timeout expired before computing started",
                                 retry_after_s=1))
            return False
        return True

    def _run_batch(self, items: list[tuple[Job, int]]) -> None:
        jobs = list(dict.fromkeys(job for job, _ in items))
        start = time.perf_counter_ns()
        for job in jobs:
            job.started_ns = job.started_ns or start
        try:
            sequences = [job.sequences[index] for job, index in items]
            feeds = self._feeds(sequences)
            fed = time.perf_counter_ns()
            output = self._session.run([self._output_name], feeds)[0]
            ran = time.perf_counter_ns()
            for row, (job, index) in zip(output, items):
                if job.output is None:
                    job.output = np.empty((len(job.sequences), output.shape[1]), dtype=np.float32)
                job.output[index] = row
            done = time.perf_counter_ns()
        except Exception:
            log.exception("inference failed for a batch of %d texts from %d requests", len(items), len(jobs))
            for job in jobs:
                if not job.settled:
                    self._stats.record_failure(time.perf_counter_ns() - job.enqueued_ns)
                    job.fail(ServerError(ErrorKind.INTERNAL, "inference failed"))
            return
        padded = feeds["attention_mask"].size
        self._stats.record_execution(len(items), fed - start, ran - fed, done - ran)
        self._on_batch(len(items), int(feeds["attention_mask"].sum()), padded)
        for job in jobs:
            job.compute_input_ns += fed - start
            job.compute_infer_ns += ran - fed
            job.compute_output_ns += done - ran
        for job, _ in items:
            job.remaining -= 1
            if job.remaining == 0 and not job.settled:
                self._stats.record_success(
                    done - job.enqueued_ns, job.started_ns - job.enqueued_ns,
                    job.compute_input_ns, job.compute_infer_ns, job.compute_output_ns,
                )
                job.resolve()

    def _feeds(self, sequences: list[np.ndarray]) -> dict[str, np.ndarray]:
        longest = max(len(s) for s in sequences)
        input_ids = np.full((len(sequences), longest), self._pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(sequences), longest), dtype=np.int64)
        for row, sequence in enumerate(sequences):
            input_ids[row, : len(sequence)] = sequence
            attention_mask[row, : len(sequence)] = 1
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        return feeds

"""A model instance's dedicated inference thread: one per instance, it asks the model's dispatcher for a batch,
runs it through the instance's session, writes the rows into their requests and hands finished requests back to
the event loop (server/jobs.py: deliver), until the queue closes. The CPU instances of a model share one
session (ORT's `Run` is thread-safe), so N CPU instances are N threads each running its own batches on it; a
GPU instance's thread is the only caller of its own session."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

import numpy as np

from .dispatch import BatchDispatcher
from .errors import ErrorKind, ServerError
from .jobs import Item, deliver
from .repository import ATTENTION_MASK, INPUT_IDS, TOKEN_TYPE_IDS
from .session import lower_thread_priority
from .statistics import ModelStatistics

log = logging.getLogger(__name__)


class Session(Protocol):
    def run(self, output_names: list[str], input_feed: dict[str, np.ndarray]) -> list[Any]: ...


class InstanceEvents(Protocol):
    """What an inference thread reports to whoever loaded its model (server/loading.py)."""

    def batch_ran(self, batch_size: int, real_tokens: int, padded_tokens: int) -> None:
        """A batch ran (called before its answers go out)."""

    def thread_died(self, error: BaseException) -> None:
        """The thread is dying of `error` (its own requests were already failed)."""


THREAD_PREFIX = "infer-"  # every inference thread's name starts with it (server/__main__.py waits for them)


def thread_name(model: str, index: int) -> str:
    return f"{THREAD_PREFIX}{model}-{index}"


class InferenceWorker:
    def __init__(
        self,
        name: str,
        session: Session,
        input_names: list[str],
        output_name: str,
        pad_id: int,
        dispatcher: BatchDispatcher,
        stats: ModelStatistics,
        events: InstanceEvents,
        niceness: int = 0,
    ) -> None:
        self.name = name
        self._session = session
        self._input_names = input_names
        self._output_name = output_name
        self._pad_id = pad_id
        self._dispatcher = dispatcher
        self._stats = stats
        self._events = events
        self._niceness = niceness
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
        lower_thread_priority(self._niceness)
        batch: list[Item] | None = []
        try:
            while (batch := self._dispatcher.next_batch()) is not None:
                self._run_batch(batch)
        except BaseException as exc:  # the thread must never die silently, nor leave its requests waiting
            log.critical("inference thread %s died", self.name, exc_info=True)
            for job, _ in batch or []:
                if not job.settled:
                    job.fail(ServerError(ErrorKind.UNAVAILABLE, "the inference thread stopped", retry_after_s=5))
            self._events.thread_died(exc)

    def _run_batch(self, items: list[Item]) -> None:
        jobs = list(dict.fromkeys(job for job, _ in items))
        start = time.perf_counter_ns()
        try:
            feeds = self._feeds([job.sequences[index] for job, index in items])
            fed = time.perf_counter_ns()
            output = self._session.run([self._output_name], feeds)[0]
            ran = time.perf_counter_ns()
        except Exception:
            log.exception("inference failed for a batch of %d texts from %d requests", len(items), len(jobs))
            with self._dispatcher.results_lock:
                for job in jobs:
                    if not job.settled:
                        self._stats.record_failure(time.perf_counter_ns() - job.enqueued_ns)
                        job.fail(ServerError(ErrorKind.INTERNAL, "inference failed"))
            return
        with self._dispatcher.results_lock:  # another thread may be filling other rows of the same requests
            for row, (job, index) in zip(output, items):
                if job.output is None:
                    job.output = np.empty((len(job.sequences), output.shape[1]), dtype=np.float32)
                job.output[index] = row
            done = time.perf_counter_ns()
            self._stats.record_execution(len(items), fed - start, ran - fed, done - ran)
            for job in jobs:
                job.compute_input_ns += fed - start
                job.compute_infer_ns += ran - fed
                job.compute_output_ns += done - ran
            finished = []
            for job, _ in items:
                job.remaining -= 1
                if job.remaining == 0 and not job.settled:
                    self._stats.record_success(
                        done - job.enqueued_ns, job.started_ns - job.enqueued_ns,
                        job.compute_input_ns, job.compute_infer_ns, job.compute_output_ns,
                    )
                    finished.append(job.resolve())
        # Observed before the answers go out, so a client that scrapes /metrics after its answer sees its batch.
        self._events.batch_ran(len(items), int(feeds[ATTENTION_MASK].sum()), feeds[ATTENTION_MASK].size)
        deliver(finished)

    def _feeds(self, sequences: list[np.ndarray]) -> dict[str, np.ndarray]:
        longest = max(len(s) for s in sequences)
        input_ids = np.full((len(sequences), longest), self._pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(sequences), longest), dtype=np.int64)
        for row, sequence in enumerate(sequences):
            input_ids[row, : len(sequence)] = sequence
            attention_mask[row, : len(sequence)] = 1
        feeds = {INPUT_IDS: input_ids, ATTENTION_MASK: attention_mask}
        if TOKEN_TYPE_IDS in self._input_names:
            feeds[TOKEN_TYPE_IDS] = np.zeros_like(input_ids)
        return feeds

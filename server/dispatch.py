"""Batches for a model's inference threads: rounds of texts taken from the queue, planned once, handed out one by one.

The dispatcher decides nothing about batches itself: the round it takes and the batches it splits it into are
the model's BatchingPolicy's (server/batching.py). Every inference thread of a model asks the same dispatcher
for its next batch, so the batches planned from one round of queued requests run on as many threads as are
free. The dispatcher also holds the lock under which threads write results into requests that several of them
may be filling at once, and fails requests whose deadline passed before computing started.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from .batching import BatchingPolicy
from .errors import ErrorKind, ServerError
from .jobs import Item, Job
from .work_queue import WorkQueue
from .statistics import ModelStatistics

log = logging.getLogger(__name__)

class BatchDispatcher:
    def __init__(self, queue: WorkQueue, policy: BatchingPolicy, stats: ModelStatistics) -> None:
        self.queue = queue
        self.policy = policy
        self.results_lock = threading.Lock()
        self._stats = stats
        self._cond = threading.Condition()
        self._planned: deque[list[Item]] = deque()
        self._taking = False  # one thread at a time waits on the queue; the others wait for its plan
        self._drained = False

    def next_batch(self) -> list[Item] | None:
        """Block until there is a batch to run; None once the queue is closed and every batch is handed out.

        Requests that were cancelled, or whose deadline passed before computing started, drop out here.
        """
        while True:
            with self._cond:
                while self._taking and not self._planned:
                    self._cond.wait()
                if self._planned:
                    chosen = [item for item in self._planned.popleft() if self._still_wanted(item[0])]
                    if chosen:
                        now = time.perf_counter_ns()
                        for job, _ in chosen:
                            job.started_ns = job.started_ns or now
                        return chosen
                    continue
                if self._drained:
                    return None
                self._taking = True
            self._take_and_plan()

    def _take_and_plan(self) -> None:
        """Take a round from the queue and plan it. An error here (a bug, never a client's doing) fails the
        requests it touched, is logged, and leaves the thread serving; only BaseException ends the thread."""
        batches: list[list[Item]] = []
        drained, items = False, None
        try:
            items = self.queue.take(self.policy)
            drained = items is None
            batches = [] if items is None else self._plan(items)
        except Exception:
            log.exception("taking or planning a round of %d texts failed", len(items or []))
            self._fail_round(items, ServerError(ErrorKind.INTERNAL, "batching failed"))
        except BaseException:
            self._fail_round(items, ServerError(ErrorKind.UNAVAILABLE, "the inference thread stopped",
                                                retry_after_s=5))
            raise
        finally:
            with self._cond:
                self._taking = False
                self._drained = self._drained or drained
                self._planned.extend(batches)
                self._cond.notify_all()

    def _fail_round(self, items: list[Item] | None, error: ServerError) -> None:
        """Fail the jobs of a round that could not be planned (or, if the queue itself failed, every queued one)."""
        if items is None:
            self.queue.fail_all(error)
        for job in dict.fromkeys(job for job, _ in items or []):
            with self._cond:
                if not job.settled:
                    job.fail(error.copy())

    def _plan(self, items: list[Item]) -> list[list[Item]]:
        with self._cond:
            wanted = {job: self._still_wanted(job) for job in dict.fromkeys(job for job, _ in items)}
        live = [item for item in items if wanted[item[0]]]
        plan = self.policy.split([int(job.lengths[index]) for job, index in live])
        return [[live[k] for k in batch] for batch in plan]

    def _still_wanted(self, job: Job) -> bool:
        """Called with the lock held, so a request split over batches is failed and counted once."""
        if job.abandoned:
            return False
        if job.expired(time.monotonic()):
            self._stats.record_failure(time.perf_counter_ns() - job.enqueued_ns)
            job.fail(_timeout())
            return False
        return True

    def expire(self, job: Job) -> None:
        """Deadline timer (event loop): fail `job` with a timeout unless one of its batches started computing,
        and free its queue slot. Under the lock that hands out batches, so a job is started or expired, never
        both."""
        with self._cond:
            if job.started_ns or job.abandoned:
                return
            self._stats.record_failure(time.perf_counter_ns() - job.enqueued_ns)
            job.fail(_timeout())
        self.queue.discard(job)

    def fail_all(self, error: ServerError) -> None:
        """Answer every request still queued or planned with `error` (each with its own copy)."""
        with self._cond:
            planned = [job for batch in self._planned for job, _ in batch]
            self._planned.clear()
        for job in dict.fromkeys(planned):
            if not job.settled:
                job.fail(error.copy())
        self.queue.fail_all(error)


def _timeout() -> ServerError:
    return ServerError(ErrorKind.TIMEOUT, "Request timeout expired before computing started", retry_after_s=1)

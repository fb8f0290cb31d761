"""Work handed from the event loop to a model's inference threads.

Ownership: `WorkQueue.put` takes a Job from the event loop; from then on only an inference thread
touches the job's worker-side fields, and the result or error goes back to the loop with
`loop.call_soon_threadsafe`, once per finished batch (`deliver`): every call wakes the loop and makes the
inference thread drop and retake the GIL, which per request cost measurable inference time. A job whose
future is done (the client went away, or it already failed) is dropped before it costs compute.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .batching import BatchingPolicy
from .errors import ErrorKind, ServerError


@dataclass(frozen=True)
class JobResult:
    embeddings: np.ndarray  # [n, dim] float32
    queue_ns: int
    compute_ns: int


@dataclass(eq=False)
class Job:
    sequences: list[np.ndarray]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[JobResult]
    deadline: float | None = None  # time.monotonic() by which computing must start
    enqueued_ns: int = field(default_factory=time.perf_counter_ns)
    output: np.ndarray | None = None
    remaining: int = 0
    started_ns: int = 0
    compute_input_ns: int = 0
    compute_infer_ns: int = 0
    compute_output_ns: int = 0
    settled: bool = False
    taken: int = 0  # texts handed to rounds so far (rounds take a request's texts in order)

    def __post_init__(self) -> None:
        self.remaining = len(self.sequences)
        self.lengths = np.fromiter((len(s) for s in self.sequences), dtype=np.int64, count=len(self.sequences))

    @property
    def abandoned(self) -> bool:
        return self.settled or self.future.done()

    def expired(self, now: float) -> bool:
        return self.deadline is not None and not self.started_ns and now > self.deadline

    def resolve(self) -> Outcome:
        """Mark the job settled with its output; the outcome reaches the loop through `deliver`."""
        assert self.output is not None
        self.settled = True
        compute = self.compute_input_ns + self.compute_infer_ns + self.compute_output_ns
        return self.loop, self.future, JobResult(self.output, self.started_ns - self.enqueued_ns, compute)

    def fail(self, error: BaseException) -> None:
        self.settled = True
        self.loop.call_soon_threadsafe(_settle, self.future, None, error)


Outcome = tuple[asyncio.AbstractEventLoop, "asyncio.Future[JobResult]", JobResult]
Item = tuple[Job, int]  # a request and the index of one of its texts


def deliver(outcomes: list[Outcome]) -> None:
    """Set the futures of finished jobs with one `call_soon_threadsafe` per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[JobResult], JobResult]]] = {}
    for loop, future, result in outcomes:
        by_loop.setdefault(loop, []).append((future, result))
    for loop, settled in by_loop.items():
        loop.call_soon_threadsafe(_settle_all, settled)


def _settle_all(settled: list[tuple[asyncio.Future[JobResult], JobResult]]) -> None:
    for future, result in settled:
        _settle(future, result, None)


def _settle(future: asyncio.Future[JobResult], result: JobResult | None, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)  # type: ignore[arg-type]


class WorkQueue:
    """A bounded FIFO of jobs shared by the inference threads of one model; a job leaves it once every text
    of it was taken into a round. `max_requests` bounds the jobs none of whose texts was taken yet (Triton's
    max_queue_size: requests waiting, not those being computed)."""

    def __init__(self, max_requests: int) -> None:
        self.max_requests = max_requests
        self._jobs: deque[Job] = deque()
        self._items = 0
        self._waiting = 0  # jobs none of whose texts was taken yet: what max_requests bounds
        self._closed = False
        self._cond = threading.Condition()

    def __len__(self) -> int:
        return len(self._jobs)

    def check_room(self) -> None:
        """Raise what `put` would raise now: lets a request be refused before its tokenization is paid for."""
        with self._cond:
            self._check_room()

    def _check_room(self) -> None:
        if self._closed:
            raise ServerError(ErrorKind.UNAVAILABLE, "the model is being unloaded or the server is stopping",
                              retry_after_s=1)
        if self.max_requests and self._waiting >= self.max_requests:
            raise ServerError(ErrorKind.OVERLOADED, "Exceeds maximum queue size", retry_after_s=1)

    def put(self, job: Job) -> None:
        with self._cond:
            self._check_room()
            self._jobs.append(job)
            self._items += len(job.sequences)
            self._waiting += 1
            self._cond.notify()

    def take(self, policy: BatchingPolicy) -> list[Item] | None:
        """Block for work; return one round of texts (`policy.shares`: every queued request gets turns, oldest
        first), or None once closed and empty.

        With a batching window (`policy.max_queue_delay_s`), wait until a round's worth of texts is queued or the
        oldest request has waited that long. Requests may be discarded (their clients went away) during that
        wait; then the wait starts over with what is left.
        """
        with self._cond:
            while True:
                while not self._jobs and not self._closed:
                    self._cond.wait()
                if not self._jobs:
                    return None
                if policy.max_queue_delay_s > 0:
                    self._wait_for_more(policy.round_items, policy.max_queue_delay_s)
                if self._jobs:
                    return self._take_round(policy)

    def _wait_for_more(self, max_items: int, max_delay_s: float) -> None:
        """Called with the lock held and a job queued: wait out the oldest job's batching window."""
        while self._jobs and self._items < max_items and not self._closed:
            remaining = self._jobs[0].enqueued_ns / 1e9 + max_delay_s - time.perf_counter_ns() / 1e9
            if remaining <= 0:
                return
            self._cond.wait(remaining)

    def _take_round(self, policy: BatchingPolicy) -> list[Item]:
        """Called with the lock held: at most `round_items` requests can have a turn in one round."""
        jobs = list(itertools.islice(self._jobs, policy.round_items))
        shares = policy.shares([job.lengths[job.taken:] for job in jobs])
        items: list[Item] = []
        for job, share in zip(jobs, shares):
            items += [(job, index) for index in range(job.taken, job.taken + share)]
            self._waiting -= job.taken == 0 and share > 0
            job.taken += share
        if any(job.taken == len(job.sequences) for job in jobs):
            self._jobs = deque(job for job in self._jobs if job.taken < len(job.sequences))
        self._items -= len(items)
        return items

    def discard(self, job: Job) -> None:
        """Free the slot of a job whose client went away while it was still queued."""
        with self._cond:
            try:
                self._jobs.remove(job)
            except ValueError:
                return
            self._items -= len(job.sequences) - job.taken
            self._waiting -= job.taken == 0

    def close(self) -> None:
        """No new jobs; threads finish what is queued, then `take` returns None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def fail_all(self, error: BaseException) -> None:
        with self._cond:
            jobs = list(self._jobs)
            self._jobs.clear()
            self._items = self._waiting = 0
        for job in jobs:
            job.fail(error)

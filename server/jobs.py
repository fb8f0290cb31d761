"""Jobs: one request's sequences handed from the event loop to a model's inference threads, and the way their
results go back to the loop.

Ownership: the event loop builds a Job and puts it in the model's work queue (server/work_queue.py); from then
on the queue's fields (`taken`, the turn order) change only under the queue's lock, the worker-side fields
only in inference threads (under the dispatcher's results lock, since the batches of one request may run on
several instances' threads), and the result or error goes back to the loop with
`loop.call_soon_threadsafe`, once per finished batch (`deliver`), not once per request: every call wakes the
loop and makes the inference thread drop and retake the GIL. A job whose future is done (the client went
away, or it already failed) is dropped before it costs compute.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import numpy as np



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
    taken: int = 0  # texts handed to rounds so far, in `order`
    order: np.ndarray | None = field(default=None, init=False)  # text indexes in the order rounds take them
    lengths_in_order: np.ndarray | None = field(default=None, init=False)  # `lengths[order]`

    def __post_init__(self) -> None:
        self.remaining = len(self.sequences)
        self.lengths = np.fromiter((len(s) for s in self.sequences), dtype=np.int64, count=len(self.sequences))

    def set_turn_order(self, order: np.ndarray) -> None:
        """Rounds take this job's texts in `order` (a permutation of its text indexes). Set once, before any
        of its texts is taken: the work queue does it when the job first comes up for a round."""
        if self.order is not None or self.taken:
            raise RuntimeError("a job's turn order is set once, before any of its texts is taken")
        self.order = order
        self.lengths_in_order = self.lengths if len(order) == 1 else self.lengths[order]

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

"""A model's work queue: a bounded FIFO of jobs shared by its inference threads, taken a round at a time.

It holds no policy of its own: when to take a round, how much of each job goes into it and in which order
are the model's BatchingPolicy's answers (server/batching.py); the dispatcher (server/dispatch.py) asks for
rounds and plans them.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from .batching import BatchingPolicy
from .errors import ErrorKind, ServerError
from .jobs import Item, Job


class WorkQueue:
    """A bounded FIFO of jobs shared by the inference threads of one model; a job leaves it once every text
    of it was taken into a round, or once it is answered (discarded, failed part-way). `max_requests` bounds
    the jobs none of whose texts was taken yet (Triton's max_queue_size: requests waiting, not those being
    computed)."""

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
        """Block for work; return one round of texts, or None once closed and empty.

        `policy.wait_s` says when to take (at once, or after the batching window unless a round's worth of texts
        is queued first), `policy.shares` how many texts of each queued job the round takes (every job gets
        turns, oldest first), `policy.turn_order` which of a job's texts come first. Jobs may be
        discarded (their clients went away) during the wait; the policy is then asked again about what is
        left. A closing queue hands out what it holds without waiting.
        """
        with self._cond:
            while True:
                while not self._jobs and not self._closed:
                    self._cond.wait()
                if not self._jobs:
                    return None
                waited_s = (time.perf_counter_ns() - self._jobs[0].enqueued_ns) / 1e9
                wait_s = policy.wait_s(self._items, waited_s)
                if wait_s <= 0 or self._closed:
                    return self._take_round(policy)
                self._cond.wait(wait_s)

    def _take_round(self, policy: BatchingPolicy) -> list[Item]:
        """Called with the lock held: at most `round_items` requests can have a turn in one round. A request
        answered since its last turn (failed part-way, or its client gone) leaves the queue instead."""
        jobs: list[Job] = []
        answered: list[Job] = []
        for job in self._jobs:
            if job.taken and job.abandoned:  # one not taken yet leaves through `discard` (cancel, deadline)
                answered.append(job)
            elif len(jobs) < policy.round_items:
                jobs.append(job)
            else:
                break
        for job in answered:
            self._forget(job)
        for job in jobs:
            if job.order is None:
                job.set_turn_order(policy.turn_order(job.lengths))
        shares = policy.shares([job.lengths_in_order[job.taken:] for job in jobs])
        items: list[Item] = []
        for job, share in zip(jobs, shares):
            items += [(job, index) for index in job.order[job.taken:job.taken + share].tolist()]
            self._waiting -= job.taken == 0 and share > 0
            job.taken += share
        if answered or any(job.taken == len(job.sequences) for job in jobs):
            left = set(answered)
            self._jobs = deque(job for job in self._jobs if job.taken < len(job.sequences) and job not in left)
        self._items -= len(items)
        return items

    def _forget(self, job: Job) -> None:
        """Called with the lock held: uncount the untaken texts of a job that leaves the queue unfinished."""
        self._items -= len(job.sequences) - job.taken
        self._waiting -= job.taken == 0

    def discard(self, job: Job) -> None:
        """Free the slot of a job whose client went away while it was still queued."""
        with self._cond:
            try:
                self._jobs.remove(job)
            except ValueError:
                return
            self._forget(job)

    def close(self) -> None:
        """No new jobs; threads finish what is queued, then `take` returns None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def fail_all(self, error: ServerError) -> None:
        """Answer every queued request with `error` (each with its own copy)."""
        with self._cond:
            jobs = list(self._jobs)
            self._jobs.clear()
            self._items = self._waiting = 0
        for job in jobs:
            job.fail(error.copy())

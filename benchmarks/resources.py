"""Memory and CPU of a server's whole process tree (the process pool's worker counts), sampled over time."""

from __future__ import annotations

import threading
import time

import psutil


def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def rss_bytes(pid: int) -> int:
    total = 0
    for process in tree(pid):
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def machine_busy_seconds() -> float:
    """CPU seconds spent by every process on the machine (all cores), not idle or waiting on I/O."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def cpu_seconds(pid: int) -> float:
    total = 0.0
    for process in tree(pid):
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


class Sampler:
    """Samples the tree's RSS every `interval` seconds on a thread; CPU between `mark_start` and `mark_stop`."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._cpu_start = self._cpu_stop = 0.0
        self._busy_start = self._busy_stop = 0.0
        self._t_start = self._t_stop = 0.0

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.is_set():
            self.samples.append((time.monotonic() - start, rss_bytes(self.pid)))
            self._stop.wait(self.interval)

    def mark_start(self) -> None:
        self._t_start, self._cpu_start, self._busy_start = (
            time.monotonic(),
            cpu_seconds(self.pid),
            machine_busy_seconds(),
        )

    def mark_stop(self) -> None:
        self._t_stop, self._cpu_stop, self._busy_stop = (
            time.monotonic(),
            cpu_seconds(self.pid),
            machine_busy_seconds(),
        )

    def machine_cpu_percent(self) -> float:
        """Whole-machine CPU over the window (100 % = one core): server + load + whatever else runs."""
        wall = self._t_stop - self._t_start
        return 100 * (self._busy_stop - self._busy_start) / wall if wall > 0 else float("nan")

    def cpu_percent(self) -> float:
        wall = self._t_stop - self._t_start
        return 100 * (self._cpu_stop - self._cpu_start) / wall if wall > 0 else float("nan")

    def peak_rss(self) -> int:
        return max((rss for _, rss in self.samples), default=rss_bytes(self.pid))

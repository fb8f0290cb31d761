"""Typed application state shared by routes, middleware and the lifecycle."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

from .config import ServerConfig
from .metrics import Metrics
from .registry import ModelRegistry


@dataclass
class Lifecycle:
    ready: bool = False
    draining: bool = False
    fatal: BaseException | None = None
    startup_models: tuple[str, ...] = ()  # readiness needs each of them loaded (Triton's strict readiness)
    drain_deadline: float | None = None  # loop.time() by which the drain must be over
    in_flight: int = 0
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._idle.set()

    def request_started(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def request_finished(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no request is in flight; False if `timeout_s` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), max(0.0, timeout_s))
        except asyncio.TimeoutError:
            return False
        return True

    def remaining_s(self, now: float) -> float | None:
        """Seconds left of the drain, None when not draining."""
        return None if self.drain_deadline is None else max(0.0, self.drain_deadline - now)


CONFIG = web.AppKey("config", ServerConfig)
REGISTRY = web.AppKey("registry", ModelRegistry)
METRICS = web.AppKey("metrics", Metrics)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)

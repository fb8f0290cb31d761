"""Typed application state shared by routes, middleware and the lifecycle."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from .config import ServerConfig
from .metrics import Metrics
from .registry import ModelRegistry


@dataclass
class Lifecycle:
    ready: bool = False
    draining: bool = False
    fatal: BaseException | None = None


CONFIG = web.AppKey("config", ServerConfig)
REGISTRY = web.AppKey("registry", ModelRegistry)
METRICS = web.AppKey("metrics", Metrics)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)

"""The aiohttp application: routes, middleware, and the lifecycle that loads models before serving."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator

from aiohttp import web

from . import grpc_server
from .config import ServerConfig
from .metrics import Metrics
from .middleware import auth_middleware, errors_middleware
from .registry import ModelRegistry
from .routes import docs, health, kserve, openai, tei
from .state import CONFIG, LIFECYCLE, METRICS, REGISTRY, Lifecycle

log = logging.getLogger(__name__)

ROUTE_TABLES = [health.routes, openai.routes, kserve.routes, tei.routes, docs.routes]


def create_app(config: ServerConfig, *, exit_on_fatal: bool = True) -> web.Application:
    app = web.Application(middlewares=[errors_middleware, auth_middleware], client_max_size=config.max_request_bytes)
    app[CONFIG] = config
    app[LIFECYCLE] = Lifecycle()
    for table in ROUTE_TABLES:
        app.router.add_routes(table)
    app.cleanup_ctx.append(_models_ctx(exit_on_fatal))
    app.on_shutdown.append(_start_draining)
    grpc_server.install(app)  # KServe v2 over gRPC: starts after the models, drains beside HTTP
    return app


def _models_ctx(exit_on_fatal: bool):
    async def models_ctx(app: web.Application) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        lifecycle = app[LIFECYCLE]

        def on_fatal(model_name: str, exc: BaseException) -> None:
            loop.call_soon_threadsafe(_fatal, app, model_name, exc, exit_on_fatal)

        registry = ModelRegistry(app[CONFIG], lambda name: app[METRICS].batch_observer(name), on_fatal)
        app[REGISTRY] = registry
        app[METRICS] = Metrics(lambda: [m.stats for m in registry])
        await loop.run_in_executor(None, registry.load_startup_models)
        lifecycle.ready = True
        log.info("ready: serving %s", ", ".join(registry.names()))
        yield
        lifecycle.ready = False
        await registry.stop_all()

    return models_ctx


async def _start_draining(app: web.Application) -> None:
    app[LIFECYCLE].draining = True
    log.info("shutting down: readiness is 503, finishing in-flight requests")


def _fatal(app: web.Application, model_name: str, exc: BaseException, exit_on_fatal: bool) -> None:
    lifecycle = app[LIFECYCLE]
    lifecycle.fatal = exc
    try:
        app[REGISTRY].get(model_name).fail_pending(exc)
    except Exception:
        log.exception("failing the queue of %s", model_name)
    log.critical("inference thread of model %s died; the process will exit non-zero", model_name)
    if exit_on_fatal:
        os.kill(os.getpid(), signal.SIGTERM)

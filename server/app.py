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
from .errors import Protocol
from .metrics import BatchObserver, Metrics
from .middleware import (add_routes, auth_middleware, body_middleware, errors_middleware,
                         in_flight_middleware, speaking)
from .model import ServedModel
from .registry import ModelRegistry
from .routes import docs, health, kserve, openai, tei
from .state import CONFIG, LIFECYCLE, METRICS, REGISTRY, Lifecycle

log = logging.getLogger(__name__)

# Where each route table is served and in which protocol: a sub-application per prefixed family, then the root
# application's routes (its own protocol is OpenAI's; TEI's root routes are marked TEI as they are added).
# The health probes are public: they need no API key.
SUB_APPLICATIONS = [
    ("/v1", Protocol.OPENAI, [openai.routes], []),
    ("/v2", Protocol.KSERVE, [kserve.routes], [health.kserve_probes]),
]
ROOT_ROUTES = [
    (Protocol.OPENAI, [health.routes, openai.routes, docs.routes], [health.probes]),
    (Protocol.TEI, [tei.routes], []),
]


def create_app(config: ServerConfig, *, exit_on_fatal: bool = True) -> web.Application:
    # Bodies are decoded by body_middleware (bounded, clear errors), not by aiohttp's parser.
    app = web.Application(middlewares=[in_flight_middleware, errors_middleware, auth_middleware, body_middleware],
                          client_max_size=config.max_request_bytes, handler_args={"auto_decompress": False})
    app[CONFIG] = config
    app[LIFECYCLE] = Lifecycle()
    _add_route_tables(app)
    app.cleanup_ctx.append(_models_ctx(exit_on_fatal))
    app.on_shutdown.append(_start_draining)
    grpc_server.install(app)  # KServe v2 over gRPC: starts after the models, drains beside HTTP
    return app


def _add_route_tables(app: web.Application) -> None:
    speaking(Protocol.OPENAI, app)
    for protocol, tables, public in ROOT_ROUTES:
        for table in tables:
            add_routes(app, table, protocol)
        for table in public:
            add_routes(app, table, protocol, public=True)
    for prefix, protocol, tables, public in SUB_APPLICATIONS:
        family = speaking(protocol)
        for table in tables:
            add_routes(family, table)
        for table in public:
            add_routes(family, table, public=True)
        app.add_subapp(prefix, family)


class _ProcessEvents:
    """What the models' inference threads tell the process (server/loading.py: ModelEvents): batches go to the
    metrics; a thread's death is handled on the event loop (`_fatal`)."""

    def __init__(self, app: web.Application, loop: asyncio.AbstractEventLoop, exit_on_fatal: bool) -> None:
        self._app = app
        self._loop = loop
        self._exit_on_fatal = exit_on_fatal
        self._metrics = app[METRICS]

    def batch_observer(self, model: str) -> BatchObserver:
        return self._metrics.batch_observer(model)

    def thread_died(self, model: ServedModel, error: BaseException) -> None:
        self._loop.call_soon_threadsafe(_fatal, self._app, model, error, self._exit_on_fatal)


def _models_ctx(exit_on_fatal: bool):
    async def models_ctx(app: web.Application) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        lifecycle = app[LIFECYCLE]
        app[METRICS] = Metrics(lambda: [m.stats for m in app[REGISTRY]])
        registry = app[REGISTRY] = ModelRegistry(app[CONFIG], _ProcessEvents(app, loop, exit_on_fatal))
        await loop.run_in_executor(None, registry.load_startup_models)
        lifecycle.startup_models = tuple(registry.names())
        lifecycle.ready = True
        log.info("ready: serving %s", ", ".join(registry.names()))
        yield
        lifecycle.ready = False
        await _stop_models(registry, lifecycle.remaining_s(loop.time()))

    return models_ctx


async def _stop_models(registry: ModelRegistry, remaining_s: float | None) -> None:
    """Stop every model, within what is left of the drain when there is one (unfinished threads are left to
    `__main__`, which then ends the process without finalizing the interpreter under them)."""
    try:
        await asyncio.wait_for(registry.stop_all(), remaining_s)
    except asyncio.TimeoutError:
        log.warning("the grace period ended before every inference thread stopped")


async def _start_draining(app: web.Application) -> None:
    """Readiness is 503 from here on (already so when a signal started the drain, see serving.py)."""
    app[LIFECYCLE].draining = True


def _fatal(app: web.Application, model: ServedModel, exc: BaseException, exit_on_fatal: bool) -> None:
    """An inference thread of `model` died: fail what that instance holds. If it is the serving instance, the
    process goes unready and exits non-zero; an instance a reload already replaced only takes itself down."""
    try:
        model.fail_pending(exc)
    except Exception:
        log.exception("failing the queue of %s", model.info.name)
    if not app[REGISTRY].is_serving(model):
        log.error("an inference thread of a replaced instance of model %s v%d died while draining; its remaining "
                  "requests were failed, the serving instance is unaffected", model.info.name, model.info.version)
        return
    app[LIFECYCLE].fatal = exc
    log.critical("inference thread of model %s died; the process will exit non-zero", model.info.name)
    if exit_on_fatal:
        os.kill(os.getpid(), signal.SIGTERM)

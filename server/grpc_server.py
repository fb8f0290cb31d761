"""The gRPC server's lifecycle inside the aiohttp app: same process, same event loop, same models.

`install(app)` adds a cleanup context: start the `grpc.aio` server once the models are warm; stop it before
they are. There is one drain for both protocols: gRPC calls are counted in the app's `Lifecycle` beside HTTP's
requests, so `server/serving.py` waits for both within one --shutdown-grace-s (health turns NOT_SERVING with
readiness, at the next sync). What still runs when the stop comes gets what is left of the grace period, then is
cut. With `--grpc false` nothing of gRPC is even imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .state import CONFIG, LIFECYCLE

log = logging.getLogger(__name__)

# Seconds between health syncs pushed to Watch streams (Check always syncs first).
HEALTH_SYNC_INTERVAL_S = 1.0
# After the drain, how long open streams (health Watch, idle ModelStreamInfer) may linger before they are cut.
STOP_GRACE_S = 0.5


@dataclass
class GrpcRuntime:
    server: Any  # grpc.aio.Server
    service: Any  # grpc_service.InferenceService
    health: Any  # grpc_health.ServerHealth
    port: int
    tasks: list[asyncio.Task] = field(default_factory=list)


GRPC = web.AppKey("grpc", GrpcRuntime)


def install(app: web.Application) -> None:
    app.cleanup_ctx.append(_grpc_ctx)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _start(app: web.Application) -> GrpcRuntime:
    import grpc
    from .grpc_health import ServerHealth, register_health
    from .grpc_service import InferenceService, add_to_server

    config = app[CONFIG]
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", config.max_request_bytes),
                                      ("grpc.max_send_message_length", -1),
                                      ("grpc.so_reuseport", 0)])
    health = ServerHealth(app)
    service = InferenceService(app, health.sync)
    add_to_server(service, server)
    register_health(health, server)
    port = server.add_insecure_port(_address(config.host, config.grpc_port))
    if not port:
        raise RuntimeError(f"gRPC cannot listen on {_address(config.host, config.grpc_port)}")
    await server.start()
    await health.sync()
    log.info("gRPC: listening on %s (inference.GRPCInferenceService, grpc.health.v1.Health)",
             _address(config.host, port))
    return GrpcRuntime(server, service, health, port)


async def _keep_health_in_sync(health) -> None:
    while True:
        await asyncio.sleep(HEALTH_SYNC_INTERVAL_S)
        await health.sync()


async def _grpc_ctx(app: web.Application) -> AsyncIterator[None]:
    if not app[CONFIG].grpc:
        yield
        return
    runtime = await _start(app)
    app[GRPC] = runtime
    runtime.tasks.append(asyncio.create_task(_keep_health_in_sync(runtime.health)))
    try:
        yield
    finally:
        await _stop(app, runtime)


async def _stop(app: web.Application, runtime: GrpcRuntime) -> None:
    """Health NOT_SERVING for good; calls still running (none after serving.py's drain, unless its grace period
    ran out) get what is left of the grace period; then the server stops and open streams are cut."""
    await runtime.health.drain()
    lifecycle = app[LIFECYCLE]
    if not await lifecycle.wait_idle(_drain_budget_s(app)):
        log.warning("gRPC: stopping with %d request(s) still running after the grace period; cutting them",
                    lifecycle.in_flight)
    for task in runtime.tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await runtime.server.stop(STOP_GRACE_S)


def _drain_budget_s(app: web.Application) -> float:
    """What is left of the one grace period (serving.py started it), else a whole one."""
    remaining = app[LIFECYCLE].remaining_s(asyncio.get_running_loop().time())
    return app[CONFIG].shutdown_grace_s if remaining is None else remaining

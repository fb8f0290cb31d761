"""The gRPC server's lifecycle inside the aiohttp app: same process, same event loop, same models.

`install(app)` adds a cleanup context (start the `grpc.aio` server once the models are warm; stop it before
they are) and a shutdown hook (health NOT_SERVING, refuse new calls, let the running ones finish within
--shutdown-grace-s, concurrently with HTTP's drain). With `--grpc false` nothing of gRPC is even imported.
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
    drained: asyncio.Task | None = None


GRPC = web.AppKey("grpc", GrpcRuntime)


def install(app: web.Application) -> None:
    app.cleanup_ctx.append(_grpc_ctx)
    app.on_shutdown.append(_start_draining)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _start(app: web.Application) -> GrpcRuntime:
    import grpc
    from grpc_health.v1 import health_pb2_grpc
    from tritonclient.grpc import service_pb2_grpc

    from .grpc_health import ServerHealth
    from .grpc_service import InferenceService

    config = app[CONFIG]
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", config.max_request_bytes),
                                      ("grpc.max_send_message_length", -1),
                                      ("grpc.so_reuseport", 0)])
    health = ServerHealth(app)
    service = InferenceService(app, health.sync)
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(service, server)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
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
        if runtime.drained is None:
            runtime.drained = asyncio.create_task(_drain(runtime, _drain_budget_s(app)))
        await runtime.drained
        for task in runtime.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await runtime.server.stop(STOP_GRACE_S)


async def _drain(runtime: GrpcRuntime, grace_s: float) -> None:
    await runtime.health.drain()
    if not await runtime.service.in_flight.drain(grace_s):
        log.warning("gRPC: %d call(s) still running after %.1fs; cutting them", runtime.service.in_flight.count,
                    grace_s)


def _drain_budget_s(app: web.Application) -> float:
    """What is left of the one grace period the HTTP drain started (serving.py), else a whole one."""
    remaining = app[LIFECYCLE].remaining_s(asyncio.get_running_loop().time())
    return app[CONFIG].shutdown_grace_s if remaining is None else remaining


async def _start_draining(app: web.Application) -> None:
    runtime = app.get(GRPC)
    if runtime is not None and runtime.drained is None:
        log.info("gRPC: draining: health NOT_SERVING, new calls refused, %d call(s) finishing",
                 runtime.service.in_flight.count)
        runtime.drained = asyncio.create_task(_drain(runtime, _drain_budget_s(app)))

"""`grpc.health.v1.Health` (grpcio-health-checking) kept in step with the server's readiness.

Service names: "" (the whole server) and `inference.GRPCInferenceService` are SERVING once every model is warm
and healthy; each loaded model's name is SERVING while that model is; everything is NOT_SERVING once the
server drains. A model unloaded since is NOT_SERVING; a name never served is NOT_FOUND (Check). A request
message protobuf cannot parse is INVALID_ARGUMENT (`register_health`).
"""

from __future__ import annotations

import grpc
from aiohttp import web
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from .grpc_registration import Undecodable, end_call, register
from .routes.health import is_ready
from .state import REGISTRY

SERVICE = "inference.GRPCInferenceService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class ServerHealth(HealthServicer):
    """The library's servicer; `sync()` sets its statuses from the app (and Check syncs first, so a probe
    always sees the present state, including loads and unloads made over HTTP)."""

    def __init__(self, app: web.Application) -> None:
        super().__init__()
        self.app = app

    async def sync(self) -> None:
        overall = SERVING if is_ready(self.app) else NOT_SERVING
        await self.set("", overall)
        await self.set(SERVICE, overall)
        models = {model.info.name: model for model in self.app[REGISTRY]}
        for name in set(self._server_status) - {"", SERVICE} - set(models):
            await self.set(name, NOT_SERVING)
        for name, model in models.items():
            await self.set(name, SERVING if model.healthy and overall == SERVING else NOT_SERVING)

    async def Check(self, request, context):
        if isinstance(request, Undecodable):
            end_call(context, request.error())
            return None
        await self.sync()
        return await super().Check(request, context)

    async def Watch(self, request, context):
        if isinstance(request, Undecodable):
            end_call(context, request.error())
            return
        await super().Watch(request, context)

    async def drain(self) -> None:
        """NOT_SERVING for every service, for good."""
        await self.enter_graceful_shutdown()


def register_health(health: ServerHealth, server: grpc.aio.Server) -> None:
    """Add `health` to `server` as grpcio-health-checking's generated code does, its request deserializers
    tolerant of undecodable messages."""
    register(health_pb2_grpc.add_HealthServicer_to_server, health, server)

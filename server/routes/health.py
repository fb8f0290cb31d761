"""Liveness, readiness and /metrics."""

from __future__ import annotations

from aiohttp import web

from ..metrics import CONTENT_TYPE
from ..state import LIFECYCLE, METRICS, REGISTRY

routes = web.RouteTableDef()


def is_ready(app: web.Application) -> bool:
    """Triton's strict readiness: serving, not draining, and every start-up model loaded and healthy."""
    lifecycle = app[LIFECYCLE]
    if not lifecycle.ready or lifecycle.draining or lifecycle.fatal is not None:
        return False
    registry = app[REGISTRY]
    if not set(lifecycle.startup_models) <= set(registry.names()):
        return False
    return all(model.healthy for model in registry)


def is_live(app: web.Application) -> bool:
    return app[LIFECYCLE].fatal is None


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    if is_ready(request.app):
        return web.json_response({"status": "ok"})
    return web.json_response({"status": "unavailable"}, status=503)


@routes.get("/v2/health/live")
async def live(request: web.Request) -> web.Response:
    return web.Response(status=200 if is_live(request.app) else 503)


@routes.get("/v2/health/ready")
async def ready(request: web.Request) -> web.Response:
    return web.Response(status=200 if is_ready(request.app) else 503)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE})

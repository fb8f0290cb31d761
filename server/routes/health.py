"""Liveness, readiness and /metrics. The probes need no API key: `probes` (/health) at the root, `kserve_probes`
(/health/live, /health/ready) in the /v2 sub-application; `routes` (/metrics) at the root."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ..metrics import CONTENT_TYPE
from ..state import LIFECYCLE, METRICS, REGISTRY

routes = web.RouteTableDef()
probes = web.RouteTableDef()
kserve_probes = web.RouteTableDef()


def is_ready(app: Mapping[Any, Any]) -> bool:
    """Triton's strict readiness: serving, not draining, and every start-up model loaded and healthy.
    `app`: the application or a request's `config_dict`."""
    lifecycle = app[LIFECYCLE]
    if not lifecycle.ready or lifecycle.draining or lifecycle.fatal is not None:
        return False
    registry = app[REGISTRY]
    if not set(lifecycle.startup_models) <= set(registry.names()):
        return False
    return all(model.healthy for model in registry)


def is_live(app: Mapping[Any, Any]) -> bool:
    return app[LIFECYCLE].fatal is None


@probes.get("/health")
async def health(request: web.Request) -> web.Response:
    if is_ready(request.config_dict):
        return web.json_response({"status": "ok"})
    return web.json_response({"status": "unavailable"}, status=503)


@kserve_probes.get("/health/live")
async def live(request: web.Request) -> web.Response:
    return web.Response(status=200 if is_live(request.config_dict) else 503)


@kserve_probes.get("/health/ready")
async def ready(request: web.Request) -> web.Response:
    return web.Response(status=200 if is_ready(request.config_dict) else 503)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.config_dict[METRICS].render(), headers={"Content-Type": CONTENT_TYPE})

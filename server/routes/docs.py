"""The OpenAPI document of the server's routes."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import orjson
from aiohttp import web

from ..openapi import openapi_document
from .common import json_response

routes = web.RouteTableDef()


def server_version() -> str:
    try:
        return version("onnx-embedding-server")
    except PackageNotFoundError:
        return "0.0.0"


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return json_response(orjson.dumps(openapi_document(server_version())))

"""The OpenAPI document of the server's routes."""

from __future__ import annotations

import orjson
from aiohttp import web

from ..openapi import openapi_document
from .common import json_response, server_version

routes = web.RouteTableDef()


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return json_response(orjson.dumps(openapi_document(server_version())))

"""Helpers shared by the route modules: body reading, JSON responses, off-loop rendering."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from aiohttp import web

from ..errors import invalid

# Responses with more floats than this are serialized off the event loop.
INLINE_RENDER_FLOATS = 65536


async def read_json(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        raise invalid("the request body is empty; expected a JSON object")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid(f"the request body is not valid JSON: {exc}") from None


def json_response(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


T = TypeVar("T")


async def render(build: Callable[[], T], floats: int) -> T:
    if floats <= INLINE_RENDER_FLOATS:
        return build()
    return await asyncio.get_running_loop().run_in_executor(None, build)

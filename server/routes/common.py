"""Helpers shared by the route modules: body parsing, JSON responses, off-loop rendering, the response bound,
the timing headers and the server version."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from importlib.metadata import PackageNotFoundError, version

from aiohttp import web

from ..errors import invalid
from ..model import Embeddings
from ..response_limit import check_response_floats
from ..protocols import bounded_json
from ..state import CONFIG

# Responses with more floats than this are serialized off the event loop.
INLINE_RENDER_FLOATS = 65536
# Bodies larger than this are parsed and checked off the event loop: the Python work there gives the loop
# the GIL every few milliseconds (the JSON scan in numpy releases it).
INLINE_PARSE_BYTES = 64 * 1024

T = TypeVar("T")


async def parse_body(request: web.Request, parse: Callable[[bytes], T]) -> T:
    """`parse(body)`, on the loop for a small body, on a thread for a large one."""
    raw = await request.read()
    if len(raw) <= INLINE_PARSE_BYTES:
        return parse(raw)
    return await asyncio.get_running_loop().run_in_executor(None, parse, raw)


def json_of(raw: bytes, max_inputs: int) -> Any:
    """The JSON document of a request body, refused when it holds more than `max_inputs` inputs could need."""
    if not raw:
        raise invalid("the request body is empty; expected a JSON object")
    return bounded_json.loads(raw, max_inputs=max_inputs)


class SentOnceResponse(web.Response):
    """A response that lets go of its body once it is sent: aiohttp's connection handler holds the last response
    while the connection waits idle for its next request (a 10 MB answer stayed in memory per idle connection)."""

    async def write_eof(self, data: bytes = b"") -> None:
        try:
            await super().write_eof(data)
        finally:
            self._body = self._compressed_body = None


def json_response(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return SentOnceResponse(body=body, status=status, content_type="application/json", headers=headers)


def check_response_size(request: web.Request, floats: int, *, binary: bool = False) -> None:
    """Refuse (400, 422 TEI) a response that would exceed --max-response-bytes, before it is serialized."""
    check_response_floats(floats, binary=binary, limit=request.config_dict[CONFIG].max_response_bytes)


async def render(build: Callable[[], T], floats: int) -> T:
    if floats <= INLINE_RENDER_FLOATS:
        return build()
    return await asyncio.get_running_loop().run_in_executor(None, build)


def timing_headers(result: Embeddings) -> dict[str, str]:
    """OpenAI's and KServe's per-response headers: truncated inputs, queue and inference time."""
    return {
        "X-Truncated-Inputs": str(result.truncated),
        "X-Queue-Time-Ms": f"{result.queue_ns / 1e6:.3f}",
        "X-Inference-Time-Ms": f"{result.compute_ns / 1e6:.3f}",
    }


def server_version() -> str:
    try:
        return version("onnx-embedding-server")
    except PackageNotFoundError:
        return "0.0.0"

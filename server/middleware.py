"""Every error becomes the body of the protocol its route speaks; every response carries a request id."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from .auth import check_bearer
from .decoding import decode
from .errors import TEI_TYPE, ErrorKind, Protocol, ServerError, status_for
from .protocols import openai
from .state import CONFIG, LIFECYCLE

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Compressed bodies up to this size are decoded on the loop; larger ones on a thread (zlib releases the GIL).
INLINE_DECODE_BYTES = 64 * 1024
UNAUTHENTICATED_PATHS = frozenset({"/health", "/v2/health/live", "/v2/health/ready"})
TEI_PATHS = frozenset({"/embed", "/embed_all", "/tokenize", "/decode", "/info", "/rerank", "/predict", "/similarity"})

_HTTP_KINDS = {
    404: (ErrorKind.NOT_FOUND, "no such route"),
    405: (ErrorKind.METHOD_NOT_ALLOWED, "Method Not Allowed"),
    413: (ErrorKind.PAYLOAD_TOO_LARGE, "the request body is larger than the server accepts"),
}


class ClosingError(ServerError):
    """An error after which the connection must close: the rest of its body will not be read."""


def protocol_for(path: str) -> Protocol:
    if path.startswith("/v2"):
        return Protocol.KSERVE
    if path in TEI_PATHS:
        return Protocol.TEI
    return Protocol.OPENAI


def error_response(error: ServerError, protocol: Protocol) -> web.Response:
    if protocol is Protocol.OPENAI:
        body = openai.error_body(error)
    elif protocol is Protocol.TEI:
        body = orjson.dumps({"error": error.message, "error_type": TEI_TYPE[error.kind]})
    else:
        body = orjson.dumps({"error": error.message})
    response = web.Response(status=status_for(error.kind, protocol), body=body, content_type="application/json")
    if error.retry_after_s is not None:
        response.headers["Retry-After"] = str(error.retry_after_s)
    return response


def _from_http(exc: web.HTTPException) -> ServerError:
    kind, message = _HTTP_KINDS.get(exc.status, (ErrorKind.INVALID_INPUT, exc.reason))
    if exc.status == 413:
        message = f"{message} ({exc.text or 'too large'})"
    return ServerError(kind, message)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = request.headers.get("X-Request-Id", "")[:128] or uuid.uuid4().hex
    protocol = protocol_for(request.path)
    try:
        response = await handler(request)
    except ServerError as exc:
        response = error_response(exc, protocol)
        if isinstance(exc, ClosingError):
            response.force_close()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(_from_http(exc), protocol)
    except Exception:
        log.exception("request %s %s %s failed", request_id, request.method, request.path)
        response = error_response(
            ServerError(ErrorKind.INTERNAL, f"internal server error (request id {request_id})"), protocol)
    response.headers["X-Request-Id"] = request_id
    return response


@web.middleware
async def in_flight_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count requests being handled, so that a drain knows when the last one is answered."""
    lifecycle = request.app[LIFECYCLE]
    lifecycle.request_started()
    try:
        return await handler(request)
    finally:
        lifecycle.request_finished()


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path not in UNAUTHENTICATED_PATHS:
        check_bearer(request.headers.get("Authorization"), request.app[CONFIG].api_key,
                     where="'Authorization: Bearer <key>'")
    return await handler(request)


@web.middleware
async def body_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Read the whole body before the route runs: within --body-timeout-s, bounded by --max-request-bytes before
    and after decoding its Content-Encoding. The route's `request.read()` then returns the decoded body."""
    if request.body_exists:
        config = request.app[CONFIG]
        try:
            raw = await asyncio.wait_for(request.read(), config.body_timeout_s)
        except asyncio.TimeoutError:
            raise ClosingError(ErrorKind.REQUEST_TIMEOUT,
                               f"the request body did not arrive within {config.body_timeout_s:g}s") from None
        except RequestPayloadError as exc:
            raise ClosingError(ErrorKind.INVALID_INPUT, f"the request body could not be read: {exc}") from None
        encoding = request.headers.get("Content-Encoding", "").strip()
        if encoding and encoding.lower() != "identity":
            if len(raw) <= INLINE_DECODE_BYTES:
                decoded = decode(raw, encoding, config.max_request_bytes)
            else:
                decoded = await asyncio.get_running_loop().run_in_executor(
                    None, decode, raw, encoding, config.max_request_bytes)
            request._read_bytes = decoded  # what `request.read()` returns from now on
    return await handler(request)

"""Every error becomes the body of the protocol its route speaks; every response carries a request id.

A route's protocol is fixed where it is registered (server/app.py): each application (the root one, and a
sub-application per prefixed family) speaks one protocol, and a route whose protocol differs from its
application's (TEI's root routes) is marked when it is added (`add_routes`). No middleware reads the path to
choose a protocol.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import HttpVersion11, hdrs, web
from aiohttp.web_protocol import RequestPayloadError

from .auth import check_bearer
from .decoding import decode, layers
from .errors import ErrorKind, Protocol, ServerError, error_body, status_for
from .state import CONFIG, LIFECYCLE

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Compressed bodies up to this size, of one coding, are decoded on the loop; others on a thread (zlib releases
# the GIL).
INLINE_DECODE_BYTES = 64 * 1024
# Per application: the protocol it speaks, its resources (paths) that speak another one, and its resources that
# need no API key (the health probes).
PROTOCOL = web.AppKey("protocol", Protocol)
ROUTE_PROTOCOLS = web.AppKey("route_protocols", dict[web.AbstractResource, Protocol])
PUBLIC_ROUTES = web.AppKey("public_routes", set[web.AbstractResource])

_HTTP_KINDS = {
    404: (ErrorKind.NOT_FOUND, "no such route"),
    405: (ErrorKind.METHOD_NOT_ALLOWED, "Method Not Allowed"),
    413: (ErrorKind.PAYLOAD_TOO_LARGE, "the request body is larger than the server accepts"),
}


class ClosingError(ServerError):
    """An error after which the connection must close: the rest of its body will not be read."""


def speaking(protocol: Protocol, app: web.Application | None = None) -> web.Application:
    """`app` (default: a new sub-application) set up to speak `protocol` and to take routes from `add_routes`."""
    app = web.Application() if app is None else app
    app[PROTOCOL], app[ROUTE_PROTOCOLS], app[PUBLIC_ROUTES] = protocol, {}, set()
    return app


def add_routes(app: web.Application, table: web.RouteTableDef, protocol: Protocol | None = None, *,
               public: bool = False) -> None:
    """Add `table` to `app` (set up by `speaking`); its routes speak `protocol` (default: the application's own)
    and, when `public`, need no API key."""
    defs = [web.RouteDef(d.method, d.path, d.handler, {"expect_handler": _expect_continue, **d.kwargs})
            if isinstance(d, web.RouteDef) else d for d in table]
    resources = {route.resource for route in app.router.add_routes(defs)}
    if public:
        app[PUBLIC_ROUTES].update(resources)
    if protocol is not None and protocol is not app[PROTOCOL]:
        for resource in resources:  # a wrong method matches no route: answer it here, 405 in `protocol`
            if all(route.method != hdrs.METH_ANY for route in resource):
                resource.add_route(hdrs.METH_ANY, _method_not_allowed)
        app[ROUTE_PROTOCOLS].update(dict.fromkeys(resources, protocol))


async def _expect_continue(request: web.Request) -> web.StreamResponse | None:
    """`Expect: 100-continue` (it runs before the middlewares): a body declared over --max-request-bytes gets 413
    in the route's protocol before the client sends it; otherwise 100 Continue, as aiohttp answers."""
    limit = request.config_dict[CONFIG].max_request_bytes
    if request.content_length is not None and request.content_length > limit:
        response = error_response(ServerError(ErrorKind.PAYLOAD_TOO_LARGE, f"the request body is larger than the "
                                              f"server accepts ({request.content_length} > {limit} bytes)"),
                                  protocol_of(request))
        response.headers["X-Request-Id"] = request_id_of(request)
        response.force_close()
        return response
    if request.version != HttpVersion11:
        return None
    if request.headers.get(hdrs.EXPECT, "").lower() != "100-continue":
        raise web.HTTPExpectationFailed(text=f"Unknown Expect: {request.headers.get(hdrs.EXPECT, '')}")
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0  # the answer's own bytes start after it (aiohttp does the same)
    return None


async def _method_not_allowed(request: web.Request) -> web.StreamResponse:
    raise ServerError(ErrorKind.METHOD_NOT_ALLOWED, _HTTP_KINDS[405][1])


def protocol_of(request: web.Request) -> Protocol:
    """The protocol of the matched route: its mark, else the innermost application's (also for 404 and 405)."""
    match_info, app = request.match_info, request.match_info.apps[-1]
    return app[ROUTE_PROTOCOLS].get(match_info.route.resource) or app[PROTOCOL]


def is_public(request: web.Request) -> bool:
    """The matched route needs no API key (a health probe)."""
    match_info = request.match_info
    return match_info.route.resource in match_info.apps[-1][PUBLIC_ROUTES]


def error_response(error: ServerError, protocol: Protocol) -> web.Response:
    response = web.Response(status=status_for(error.kind, protocol), body=error_body(error, protocol),
                            content_type="application/json")
    if error.retry_after_s is not None:
        response.headers["Retry-After"] = str(error.retry_after_s)
    return response


def _from_http(exc: web.HTTPException) -> ServerError:
    kind, message = _HTTP_KINDS.get(exc.status, (ErrorKind.INVALID_INPUT, exc.reason))
    if exc.status == 413:
        message = f"{message} ({exc.text or 'too large'})"
    return ServerError(kind, message)


def request_id_of(request: web.Request) -> str:
    """The client's X-Request-Id (at most 128 characters), else a new one."""
    return request.headers.get("X-Request-Id", "")[:128] or uuid.uuid4().hex


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = request_id_of(request)
    protocol = protocol_of(request)
    try:
        response = await handler(request)
    except ServerError as exc:
        response = error_response(exc, protocol)
        if isinstance(exc, ClosingError):
            response.force_close()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # aiohttp keeps the error of an unknown route or method in the request's match info: without its
        # traceback, which holds this request, that is no reference cycle.
        exc.__traceback__ = None
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
    lifecycle = request.config_dict[LIFECYCLE]
    lifecycle.request_started()
    try:
        return await handler(request)
    finally:
        lifecycle.request_finished()


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not is_public(request):
        check_bearer(request.headers.get("Authorization"), request.config_dict[CONFIG].api_key,
                     where="'Authorization: Bearer <key>'")
    return await handler(request)


@web.middleware
async def body_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Read the whole body before the route runs: within --body-timeout-s, bounded by --max-request-bytes before
    and after decoding its Content-Encoding. The route's `request.read()` then returns the decoded body, until the
    route returns: an idle keep-alive connection keeps its last request, but not its body. (`asyncio.timeout`, not
    `wait_for`: on Python 3.11 `wait_for` reads in a task that keeps its error, whose traceback holds the body: a
    cycle.)"""
    if request.body_exists:
        config = request.config_dict[CONFIG]
        try:
            async with asyncio.timeout(config.body_timeout_s):
                raw = await request.read()
        except TimeoutError:
            raise ClosingError(ErrorKind.REQUEST_TIMEOUT,
                               f"the request body did not arrive within {config.body_timeout_s:g}s") from None
        except RequestPayloadError as exc:
            raise ClosingError(ErrorKind.INVALID_INPUT, f"the request body could not be read: {exc}") from None
        except ConnectionError:  # the client left mid-body: nobody reads the answer, and it is no server error
            raise ClosingError(ErrorKind.INVALID_INPUT, "the connection closed before the request body arrived"
                               ) from None
        encoding = request.headers.get("Content-Encoding", "")
        codings = layers(encoding)
        if codings:
            if len(raw) <= INLINE_DECODE_BYTES and len(codings) == 1:
                decoded = decode(raw, encoding, config.max_request_bytes)
            else:
                decoded = await asyncio.get_running_loop().run_in_executor(
                    None, decode, raw, encoding, config.max_request_bytes)
            request._read_bytes = decoded  # what `request.read()` returns from now on
    try:
        return await handler(request)
    finally:
        request._read_bytes = b""

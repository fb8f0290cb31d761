"""Each route speaks the protocol it was registered with (server/middleware.py add_routes): errors of a
sub-application's routes, unknown paths under its prefix and wrong methods take its protocol's shape, and a
marked root route takes its mark's; nothing depends on how a path is spelled."""

from __future__ import annotations

from aiohttp import web

from server.config import ServerConfig
from server.errors import ErrorKind, Protocol, ServerError
from server.middleware import add_routes, auth_middleware, errors_middleware, in_flight_middleware, speaking
from server.state import CONFIG, LIFECYCLE, Lifecycle

routes = web.RouteTableDef()


@routes.post("/refuse")
async def refuse(request: web.Request) -> web.Response:
    raise ServerError(ErrorKind.INVALID_INPUT, "no")


def app_with(protocol_of_root_routes: Protocol, family: Protocol) -> web.Application:
    app = web.Application(middlewares=[in_flight_middleware, errors_middleware])
    app[CONFIG], app[LIFECYCLE] = ServerConfig(grpc=False), Lifecycle()
    add_routes(speaking(Protocol.OPENAI, app), routes, protocol_of_root_routes)
    sub = speaking(family)
    add_routes(sub, routes)
    app.add_subapp("/anything", sub)  # a prefix no protocol is known by
    return app


async def test_errors_take_the_protocol_of_the_route_or_application(aiohttp_client):
    client = await aiohttp_client(app_with(Protocol.TEI, Protocol.KSERVE))
    tei = await client.post("/refuse")
    assert tei.status == 422 and await tei.json() == {"error": "no", "error_type": "Validation"}
    wrong_method = await client.get("/refuse")
    assert wrong_method.status == 405 and (await wrong_method.json())["error_type"] == "Validation"
    kserve = await client.post("/anything/refuse")
    assert kserve.status == 400 and await kserve.json() == {"error": "no"}
    unknown = await client.get("/anything/else")
    assert unknown.status == 404 and await unknown.json() == {"error": "no such route"}
    root_unknown = await client.get("/else")
    assert root_unknown.status == 404 and (await root_unknown.json())["error"]["type"] == "not_found_error"


probe = web.RouteTableDef()


@probe.get("/probe")
async def probe_handler(request: web.Request) -> web.Response:
    return web.Response(status=200)


async def test_routes_added_public_need_no_key_and_others_do(aiohttp_client):
    app = web.Application(middlewares=[in_flight_middleware, errors_middleware, auth_middleware])
    app[CONFIG], app[LIFECYCLE] = ServerConfig(grpc=False, api_key="k"), Lifecycle()
    add_routes(speaking(Protocol.OPENAI, app), routes)
    sub = speaking(Protocol.KSERVE)
    add_routes(sub, probe, public=True)
    app.add_subapp("/anything", sub)
    client = await aiohttp_client(app)
    assert (await client.get("/anything/probe")).status == 200
    assert (await client.head("/anything/probe")).status == 200
    refused = await client.post("/refuse")
    assert refused.status == 401 and (await refused.json())["error"]["code"] == "invalid_api_key"
    assert (await client.post("/refuse", headers={"Authorization": "Bearer k"})).status == 400

"""The load generator's HTTP/1.1 client against real aiohttp servers on loopback."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiohttp import web

from benchmarks.apps.null import create_app
from benchmarks.http1 import Connection, HttpError, post_request
from benchmarks.load import LoadSpec, request_bodies, run_phase


def spec_for(url: str, texts: list[str], batch: int = 1, concurrency: int = 4) -> LoadSpec:
    return LoadSpec(url, "m", texts, [3] * len(texts), batch=batch, concurrency=concurrency, duration=10,
                    max_requests=len(texts), warmup=0, timeout=5)


async def test_run_phase_counts_every_embedding_of_a_real_server(aiohttp_server):
    server = await aiohttp_server(create_app())
    texts = [f"text {i}" for i in range(40)]
    spec = spec_for(str(server.make_url("/v1/embeddings")), texts, batch=3)
    requests = [(post_request(spec.url, body), n, t) for body, n, t in request_bodies(spec)]
    record = await run_phase(spec, requests, duration=10, max_requests=len(requests), offset=0)
    assert record.errors == 0, record.error_samples
    assert record.texts == 40 and len(record.latencies) == len(requests) == 14


async def test_chunked_replies_and_closing_servers_are_read_whole(aiohttp_server):
    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b'{"data": [', b"1, 2", b", 3]}"):
            await response.write(part)
        await response.write_eof()
        return response

    async def closing(request: web.Request) -> web.Response:
        return web.Response(body=await request.read(), headers={"Connection": "close"})

    app = web.Application()
    app.router.add_post("/chunked", chunked)
    app.router.add_post("/closing", closing)
    server = await aiohttp_server(app)
    connection = await Connection.open(str(server.make_url("/")))
    lost = asyncio.Event()
    connection_lost = connection.connection_lost
    connection.connection_lost = lambda exc: (connection_lost(exc), lost.set())  # type: ignore[method-assign]
    for _ in range(3):
        status, body = await connection.send(post_request(str(server.make_url("/chunked")), b"{}"), 5)
        assert status == 200 and orjson.loads(body) == {"data": [1, 2, 3]}
    status, body = await connection.send(post_request(str(server.make_url("/closing")), b"echo"), 5)
    assert (status, body) == (200, b"echo")
    await asyncio.wait_for(lost.wait(), 5)
    assert connection.closed
    with pytest.raises(HttpError):
        await connection.send(post_request(str(server.make_url("/closing")), b"x"), 5)


async def test_errors_and_timeouts_are_reported_not_raised(aiohttp_server):
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response(text="late")

    async def failing(request: web.Request) -> web.Response:
        return web.Response(status=503, text="busy")

    app = web.Application()
    app.router.add_post("/slow", slow)
    app.router.add_post("/failing", failing)
    server = await aiohttp_server(app)
    connection = await Connection.open(str(server.make_url("/")))
    with pytest.raises(HttpError, match="no reply within"):
        await connection.send(post_request(str(server.make_url("/slow")), b"{}"), 0.2)
    assert connection.closed
    texts = ["a", "b"]
    spec = spec_for(str(server.make_url("/failing")), texts, concurrency=1)
    requests = [(post_request(spec.url, body), n, t) for body, n, t in request_bodies(spec)]
    record = await run_phase(spec, requests, duration=10, max_requests=2, offset=0)
    assert record.errors == 2 and record.texts == 0
    assert record.error_samples[0].startswith("HTTP 503")

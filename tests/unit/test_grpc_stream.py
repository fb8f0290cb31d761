"""ModelStreamInfer's bound on requests running per stream (issue 14), with the real servicer and a stand-in
for the inference itself (pure scheduling logic: no model, no network)."""

from __future__ import annotations

import asyncio

import grpc
from aiohttp import web
from tritonclient.grpc import service_pb2

from server.config import ServerConfig
from server.grpc_service import InferenceService
from server.state import CONFIG, LIFECYCLE, Lifecycle

STREAM_MAX_IN_FLIGHT = 5  # --grpc-stream-in-flight
SENT = 3 * STREAM_MAX_IN_FLIGHT


class Context:
    """grpc.aio's servicer context as the stream uses it: `read()` gives the next request, then `grpc.aio.EOF`."""

    def __init__(self, requests) -> None:
        self.written: list[service_pb2.ModelStreamInferResponse] = []
        self._requests = requests

    async def read(self):
        try:
            return await anext(self._requests)
        except StopAsyncIteration:
            return grpc.aio.EOF

    def invocation_metadata(self):
        return ()

    def done(self) -> bool:
        return False

    async def write(self, response) -> None:
        self.written.append(response)


async def _no_change() -> None:
    return None


async def test_a_stream_runs_a_bounded_number_of_requests_and_answers_every_one():
    app = web.Application()
    app[CONFIG] = ServerConfig(grpc_stream_in_flight=STREAM_MAX_IN_FLIGHT)
    app[LIFECYCLE] = lifecycle = Lifecycle()
    service = InferenceService(app, _no_change)
    release, full = asyncio.Event(), asyncio.Event()
    running, most, read = 0, 0, 0

    async def infer(request):
        nonlocal running, most
        running += 1
        most = max(most, running)
        if running == STREAM_MAX_IN_FLIGHT:
            full.set()
        await release.wait()
        running -= 1
        return service_pb2.ModelInferResponse(id=request.id)

    async def requests():
        nonlocal read
        for index in range(SENT):
            read += 1
            yield service_pb2.ModelInferRequest(model_name="m", id=f"r{index}")

    service.infer = infer
    incoming = requests()
    context = Context(incoming)
    stream = asyncio.create_task(service.ModelStreamInfer(incoming, context))
    await asyncio.wait_for(full.wait(), 10)
    for _ in range(100):  # let the stream read on, if it would
        await asyncio.sleep(0)
    assert most == STREAM_MAX_IN_FLIGHT and lifecycle.in_flight == STREAM_MAX_IN_FLIGHT
    assert read <= STREAM_MAX_IN_FLIGHT + 1  # the stream is not read ahead of what it may run
    release.set()
    await asyncio.wait_for(stream, 10)
    assert sorted(r.infer_response.id for r in context.written) == sorted(f"r{i}" for i in range(SENT))
    assert most == STREAM_MAX_IN_FLIGHT and lifecycle.in_flight == 0

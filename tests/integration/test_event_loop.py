"""The event loop stays free while the model works: 64 concurrent requests (HTTP and gRPC, sharing batches), a
cheap endpoint probed throughout.

The server runs in this process on a real loopback socket so that asyncio's debug mode sees every
callback: one that holds the loop longer than SLOW_CALLBACK_S fails the test, and blockbuster fails
any blocking call (sleep, file or socket I/O) made on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
import pytest
from aiohttp import ClientSession, TCPConnector
from aiohttp.test_utils import TestServer
import tritonclient.grpc.aio as grpcaio
from blockbuster import blockbuster_ctx

from server.app import create_app
from server.config import ServerConfig
from server.grpc_server import GRPC
from server.state import REGISTRY

MODEL = "all-MiniLM-L6-v2"
SLOW_CALLBACK_S = 0.25  # one model run on the loop takes longer; OS scheduling noise here stays below


class SlowCallbacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Executing"):
            self.records.append(record.getMessage())


@pytest.fixture
async def app_server(minilm_repository):
    loop = asyncio.get_running_loop()
    config = ServerConfig(model_repository=minilm_repository, models=(MODEL,), grpc_port=0)
    app = create_app(config, exit_on_fatal=False)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    loop.set_debug(True)
    loop.slow_callback_duration = SLOW_CALLBACK_S
    yield server
    loop.set_debug(False)
    await server.close()


async def test_64_concurrent_requests_are_batched_and_the_loop_never_blocks(app_server, st_minilm):
    texts = [f"request number {i}: " + "some words " * (1 + i % 23) for i in range(64)]
    slow = SlowCallbacks()
    logging.getLogger("asyncio").addHandler(slow)
    probe_latencies: list[float] = []
    url = str(app_server.make_url(""))

    grpc_url = f"127.0.0.1:{app_server.app[GRPC].port}"
    async with ClientSession(connector=TCPConnector(limit=0)) as session, ClientSession() as probe_session, \
            grpcaio.InferenceServerClient(grpc_url) as grpc_client:
        assert await grpc_client.is_server_ready()  # channel connected before the load
        async def embed(text: str) -> list[float]:
            async with session.post(url + "/v1/embeddings", json={"model": MODEL, "input": text,
                                                                   "encoding_format": "float"}) as response:
                assert response.status == 200, await response.text()
                return (await response.json())["data"][0]["embedding"]

        async def embed_grpc(text: str) -> list[float]:
            tensor = grpcaio.InferInput("TEXT", [1, 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[text]], dtype=object))
            return (await grpc_client.infer(MODEL, [tensor])).as_numpy("sentence_embedding")[0].tolist()

        async def probe(stop: asyncio.Event) -> None:
            while not stop.is_set():
                start = time.perf_counter()
                async with probe_session.get(url + "/v2/health/live") as response:
                    assert response.status == 200
                probe_latencies.append(time.perf_counter() - start)
                await asyncio.sleep(0.02)  # the probe's cadence (it measures latency), not a wait for an event

        async with probe_session.get(url + "/v2/health/live") as response:  # connection opened before the load
            assert response.status == 200
        stop = asyncio.Event()
        try:
            with blockbuster_ctx(["server"]):
                prober = asyncio.create_task(probe(stop))
                vectors = await asyncio.wait_for(asyncio.gather(*(embed(t) for t in texts[:48]),
                                                                *(embed_grpc(t) for t in texts[48:])), 120)
                stop.set()
                await prober
        finally:
            logging.getLogger("asyncio").removeHandler(slow)

    asyncio.get_running_loop().set_debug(False)
    reference = st_minilm.encode(texts, convert_to_numpy=True)
    got = np.array(vectors)
    cos = (got * reference).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(reference, axis=1)
    assert cos.min() >= 0.99999
    assert slow.records == []
    # Client and server share this loop, so the probe also waits on the client's own work; a model run on
    # the loop (100+ ms a batch) would still stand out. The slow-callback check above is the precise one.
    assert len(probe_latencies) >= 3 and max(probe_latencies) < 1.0
    assert sorted(probe_latencies)[len(probe_latencies) // 2] < 0.1
    executions = app_server.app[REGISTRY].get(MODEL).stats.execution_count
    assert executions < 64 + 2, "concurrent single-text requests were not coalesced into batches"

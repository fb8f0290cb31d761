"""The protocol floor: KServe v2 over HTTP and over gRPC with no model behind them.

One process, one event loop, both stacks as the server runs them: aiohttp behind the server's own protocol
factory (`server/serving.py`: the connection count and header deadline) on `--port`, and `grpc.aio` with Triton's
`GRPCInferenceService` servicer (tritonclient's generated code, registered with the server's tolerant
deserializers) on `--grpc-port`, with the server's message size options. The metadata and config are the
server's own, built from the model's repository entry. Every inference is answered at once with the outputs the
server returns for one text when every output is requested, as perf_analyzer requests them (the embedding and the
three chunk outputs, zeros of their shapes). Each protocol still pays its own codec per request: over HTTP the
JSON header of the request is parsed and the response's is written (orjson, as the server does), the tensor
bytes prebuilt; over gRPC grpc parses the request message and serializes the prebuilt response. Left out on both
sides is the server's own per-request bookkeeping (HTTP middleware, the gRPC call wrapper), and all inference.
The server metadata names no extension, so perf_analyzer asks for no statistics (the floor keeps none). Driven
by perf_analyzer it shows what each protocol costs on this machine before any model or batching.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import grpc
import numpy as np
import orjson
from aiohttp import web
from tritonclient.grpc import service_pb2, service_pb2_grpc

from server.config import ServerConfig
from server.embedding import ChunkSet, chunk_tensors
from server.grpc_registration import register
from server.protocols import kserve, kserve_grpc
from server.repository import CHUNK_OUTPUTS, OUTPUT_EMBEDDING, ModelEntry, find_model
from server.serving import CappedProtocolFactory

NAME, VERSION = "onnx-embedding-server-floor", "0"


def canned_tensors(dimension: int) -> dict[str, np.ndarray]:
    """The outputs the server returns for one text when every output is requested, as perf_analyzer requests
    them, by name: its embedding (zeros here) and that text as its one chunk (`server/kserve_infer.py`)."""
    vectors = np.zeros((1, dimension), dtype=np.float32)
    one_chunk = ChunkSet(vectors, np.zeros((1, 2), dtype=np.int64))
    return {OUTPUT_EMBEDDING: vectors, **chunk_tensors([one_chunk], dimension)}


def _outputs() -> list[kserve.RequestedOutput]:
    return [kserve.requested_output(name, {}, "floor", True) for name in (OUTPUT_EMBEDDING, *CHUNK_OUTPUTS)]


def http_app(entry: ModelEntry, dimension: int) -> web.Application:
    tensors = canned_tensors(dimension)
    body, header_length = kserve.build_infer_response(
        model=entry.name, version=str(entry.version), request_id=None, vectors=tensors[OUTPUT_EMBEDDING],
        outputs=_outputs(), extra={name: tensors[name] for name in CHUNK_OUTPUTS})
    assert header_length is not None  # every output is binary
    response_header, tensor_bytes = orjson.loads(body[:header_length]), body[header_length:]
    metadata = kserve.model_metadata(entry.name, [str(entry.version)], entry.config)
    config = kserve.model_config(entry.config)

    async def infer(request: web.Request) -> web.Response:
        raw = await request.read()
        length = request.headers.get("Inference-Header-Content-Length")
        orjson.loads(raw[:int(length)] if length else raw)
        header = orjson.dumps(response_header)
        return web.Response(body=header + tensor_bytes, headers={
            "Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"})

    def constant(payload: bytes):
        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=payload, content_type="application/json")

        return handler

    app = web.Application(client_max_size=16 * 2**20)
    model = f"/v2/models/{entry.name}"
    for prefix in (model, f"{model}/versions/{entry.version}"):
        app.router.add_get(prefix, constant(metadata))
        app.router.add_get(prefix + "/config", constant(config))
        app.router.add_get(prefix + "/ready", constant(b""))
        app.router.add_post(prefix + "/infer", infer)
    app.router.add_get("/v2", constant(json.dumps({"name": NAME, "version": VERSION, "extensions": []}).encode()))
    app.router.add_get("/v2/health/live", constant(b""))
    app.router.add_get("/v2/health/ready", constant(b""))
    return app


class FloorService(service_pb2_grpc.GRPCInferenceServiceServicer):
    """The RPCs perf_analyzer and tritonclient use, with canned answers."""

    def __init__(self, entry: ModelEntry, dimension: int) -> None:
        tensors = canned_tensors(dimension)
        self._response = kserve_grpc.infer_response(model=entry.name, version=str(entry.version), request_id=None,
                                                    tensors=tensors, outputs=_outputs())
        self._metadata = kserve_grpc.model_metadata(entry.name, [str(entry.version)], entry.config)
        self._config = kserve_grpc.model_config(entry.config)

    async def ServerLive(self, request, context):
        return service_pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return service_pb2.ServerReadyResponse(ready=True)

    async def ModelReady(self, request, context):
        return service_pb2.ModelReadyResponse(ready=True)

    async def ServerMetadata(self, request, context):
        return service_pb2.ServerMetadataResponse(name=NAME, version=VERSION)

    async def ModelMetadata(self, request, context):
        return self._metadata

    async def ModelConfig(self, request, context):
        return self._config

    async def ModelInfer(self, request, context):
        return self._response


async def serve(entry: ModelEntry, dimension: int, host: str, port: int, grpc_port: int) -> None:
    """gRPC first, then HTTP: once HTTP answers (the harness's readiness probe), both are listening."""
    defaults = ServerConfig()
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", defaults.max_request_bytes),
                                      ("grpc.max_send_message_length", -1), ("grpc.so_reuseport", 0)])
    register(service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server, FloorService(entry, dimension), server)
    if not server.add_insecure_port(f"{host}:{grpc_port}"):
        raise SystemExit(f"gRPC cannot listen on {host}:{grpc_port}")
    await server.start()
    runner = web.AppRunner(http_app(entry, dimension), access_log=None, handler_cancellation=True,
                           keepalive_timeout=defaults.keep_alive_timeout_s)
    await runner.setup()
    assert runner.server is not None
    factory = CappedProtocolFactory(runner.server, defaults.max_connections, defaults.header_timeout_s)
    listener = await asyncio.get_running_loop().create_server(factory, host, port, reuse_address=True)
    print(f"floor: HTTP {host}:{port}, gRPC {host}:{grpc_port}, model {entry.name}", flush=True)
    try:
        await server.wait_for_termination()
    finally:
        listener.close()
        await server.stop(None)
        await runner.cleanup()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-repository", type=Path, required=True, help="the Triton model repository")
    parser.add_argument("--model", required=True, help="the model whose metadata and outputs are served")
    parser.add_argument("--dimension", type=int, required=True, help="the embedding dimension of the outputs")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="HTTP port")
    parser.add_argument("--grpc-port", type=int, required=True, help="gRPC port")
    return parser.parse_args()


if __name__ == "__main__":
    args = parse_args()
    model_entry = find_model(args.model_repository, args.model)
    asyncio.run(serve(model_entry, args.dimension, args.host, args.port, args.grpc_port))

"""KServe v2 over gRPC: Triton's `inference.GRPCInferenceService` on the same models, batcher and limits as HTTP.

The servicer is `tritonclient.grpc.service_pb2_grpc`'s (Triton's grpc_service.proto, not a copy). Every RPC but
ServerLive and ServerReady needs the API key when one is set (metadata `authorization: Bearer <key>`), as
over HTTP (`server/auth.py`). A `ServerError` ends the call with the gRPC status of its kind (`errors.PROTOCOL_ERRORS`).
Every call is counted in the app's `Lifecycle` beside HTTP's requests, so one drain (`server/serving.py`) waits
for both. A ModelStreamInfer stream has at most `--grpc-stream-in-flight` requests running; it reads the next one
when one of them is answered.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable

import grpc
from aiohttp import web
from tritonclient.grpc import service_pb2, service_pb2_grpc

from . import kserve_infer, model_control
from .auth import check_bearer
from .errors import ErrorKind, ServerError
from .grpc_registration import Undecodable, end_call, register
from .model import ServedModel
from .protocols import kserve, kserve_grpc
from .routes.common import server_version
from .routes.health import is_live, is_ready
from .state import CONFIG, LIFECYCLE, REGISTRY

log = logging.getLogger(__name__)


def add_to_server(service: InferenceService, server: grpc.aio.Server) -> None:
    """Register `service` as the generated code of Triton's proto does, its request deserializers tolerant of
    undecodable messages (`grpc_registration`)."""
    register(service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server, service, server)


def _rpc(*, public: bool = False):
    """Wrap a unary RPC: API key, in-flight accounting, and errors -> the gRPC status of their kind."""

    def decorate(method: Callable[..., Awaitable]) -> Callable[..., Awaitable]:
        @functools.wraps(method)
        async def handler(self: InferenceService, request, context: grpc.aio.ServicerContext):
            try:
                if not public:
                    self.authenticate(context)
                if isinstance(request, Undecodable):
                    raise request.error()
                if public:
                    return await method(self, request, context)
                self.lifecycle.request_started()
                try:
                    return await method(self, request, context)
                finally:
                    self.lifecycle.request_finished()
            except ServerError as exc:
                end_call(context, exc)
            except Exception:
                log.exception("gRPC %s failed", method.__name__)
                end_call(context, ServerError(ErrorKind.INTERNAL, f"internal server error in {method.__name__}"))
            return None

        return handler

    return decorate


_SEND_TENSORS = ": send tensors in the request message"


def _unimplemented(feature: str, advice: str = ""):
    @_rpc()
    async def handler(self: InferenceService, request, context) -> None:
        raise ServerError(ErrorKind.UNSUPPORTED, f"{feature} is not supported by this server{advice}")

    return handler


class InferenceService(service_pb2_grpc.GRPCInferenceServiceServicer):
    """Every RPC of Triton's GRPCInferenceService, answered from the aiohttp app's registry and config."""

    def __init__(self, app: web.Application, on_models_changed: Callable[[], Awaitable[None]]) -> None:
        self.app = app
        self.lifecycle = app[LIFECYCLE]
        self._on_models_changed = on_models_changed

    def authenticate(self, context: grpc.aio.ServicerContext) -> None:
        key = self.app[CONFIG].api_key
        if key:
            header = dict(context.invocation_metadata() or ()).get("authorization")
            check_bearer(header, key, where="metadata 'authorization: Bearer <key>'")

    def _model(self, name: str, version: str) -> ServedModel:
        return self.app[REGISTRY].get(name, version or None)

    @_rpc(public=True)
    async def ServerLive(self, request, context):
        return service_pb2.ServerLiveResponse(live=is_live(self.app))

    @_rpc(public=True)
    async def ServerReady(self, request, context):
        return service_pb2.ServerReadyResponse(ready=is_ready(self.app))

    @_rpc()
    async def ModelReady(self, request, context):
        try:
            ready = self._model(request.name, request.version).healthy
        except ServerError:
            ready = False
        return service_pb2.ModelReadyResponse(ready=ready)

    @_rpc()
    async def ServerMetadata(self, request, context):
        return kserve_grpc.server_metadata(server_version())

    @_rpc()
    async def ModelMetadata(self, request, context):
        model = self._model(request.name, request.version)
        return kserve_grpc.model_metadata(model.info.name, [str(model.info.version)], model.entry.config)

    @_rpc()
    async def ModelConfig(self, request, context):
        return kserve_grpc.model_config(self._model(request.name, request.version).entry.config)

    @_rpc()
    async def ModelStatistics(self, request, context):
        if request.name:
            models = [self._model(request.name, request.version)]
        else:
            models = list(self.app[REGISTRY])
        return kserve_grpc.statistics([model.stats.as_json() for model in models])

    async def infer(self, request: service_pb2.ModelInferRequest) -> service_pb2.ModelInferResponse:
        """One inference: the HTTP route's checks and core, Triton's gRPC response."""
        model, config = self._model(request.model_name, request.model_version), self.app[CONFIG]
        parse = functools.partial(kserve_grpc.parse_infer_request, request, max_inputs=config.max_inputs,
                                  max_input_chars=config.max_input_chars)
        if kserve_grpc.is_small(request):
            parsed = parse()
        else:  # millions of elements or parameters: seconds of work, off the loop
            parsed = await asyncio.get_running_loop().run_in_executor(None, parse)
        inferred = await kserve_infer.infer(model, parsed, config, binary=True)  # raw_output_contents
        return kserve_grpc.infer_response(model=model.info.name, version=str(model.info.version),
                                          request_id=parsed.id, tensors=inferred.tensors, outputs=inferred.outputs)

    @_rpc()
    async def ModelInfer(self, request, context):
        return await self.infer(request)

    async def ModelStreamInfer(self, request_iterator, context):
        """Each request on the stream is answered as soon as it is done (requests share batches); a failed
        request gets a response with `error_message` and its id, and the stream goes on. At most
        `--grpc-stream-in-flight` requests run at once: the next is read when one is answered. A client that goes
        away cancels what it still had running."""
        try:
            self.authenticate(context)
        except ServerError as exc:
            end_call(context, exc)
            return
        writing = asyncio.Lock()
        slots = asyncio.Semaphore(self.app[CONFIG].grpc_stream_in_flight)
        tasks: set[asyncio.Task] = set()

        async def answer(request: service_pb2.ModelInferRequest) -> None:
            try:
                response = await self._stream_response(request)
                async with writing:
                    if not context.done():
                        await context.write(response)
            finally:
                slots.release()

        try:
            # `context.read()`, not `request_iterator`: its generator holds the last message until the next one
            # arrives, and so would a loop variable; an idle stream must not keep its last (up to 16 MiB) request.
            while (request := await context.read()) is not grpc.aio.EOF:
                await slots.acquire()  # released by `answer`, created at once (no await in between)
                task = asyncio.create_task(answer(request))
                del request
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks)
        finally:
            for task in list(tasks):
                task.cancel()

    async def _stream_response(self, request) -> service_pb2.ModelStreamInferResponse:
        if isinstance(request, Undecodable):
            return service_pb2.ModelStreamInferResponse(error_message=request.error().message)
        self.lifecycle.request_started()
        try:
            return service_pb2.ModelStreamInferResponse(infer_response=await self.infer(request))
        except ServerError as exc:
            return _stream_error(request, exc.message)
        except Exception:
            log.exception("gRPC ModelStreamInfer request %r failed", request.id)
            return _stream_error(request, "internal server error")
        finally:
            self.lifecycle.request_finished()

    @_rpc()
    async def RepositoryIndex(self, request, context):
        _no_repository_name(request.repository_name)
        return kserve_grpc.repository_index(self.app[REGISTRY].entries(), request.ready)

    @_rpc()
    async def RepositoryModelLoad(self, request, context):
        self._check_control(request)
        kserve.check_load_request(kserve_grpc.load_parameters(request))
        await model_control.load(self.app, request.model_name)
        await self._on_models_changed()
        return service_pb2.RepositoryModelLoadResponse()

    @_rpc()
    async def RepositoryModelUnload(self, request, context):
        self._check_control(request)
        await model_control.unload(self.app, request.model_name)
        await self._on_models_changed()
        return service_pb2.RepositoryModelUnloadResponse()

    def _check_control(self, request) -> None:
        model_control.check_enabled(self.app)
        _no_repository_name(request.repository_name)

    SystemSharedMemoryStatus = _unimplemented("system shared memory", _SEND_TENSORS)
    SystemSharedMemoryRegister = _unimplemented("system shared memory", _SEND_TENSORS)
    SystemSharedMemoryUnregister = _unimplemented("system shared memory", _SEND_TENSORS)
    CudaSharedMemoryStatus = _unimplemented("CUDA shared memory", _SEND_TENSORS)
    CudaSharedMemoryRegister = _unimplemented("CUDA shared memory", _SEND_TENSORS)
    CudaSharedMemoryUnregister = _unimplemented("CUDA shared memory", _SEND_TENSORS)
    TraceSetting = _unimplemented("trace setting")
    LogSettings = _unimplemented("log setting", ": the log level is set at start (--log-level)")


def _no_repository_name(name: str) -> None:
    if name:
        raise ServerError(ErrorKind.UNSUPPORTED, "'repository_name' specification is not supported")


def _stream_error(request, message: str) -> service_pb2.ModelStreamInferResponse:
    return service_pb2.ModelStreamInferResponse(
        error_message=message,
        infer_response=service_pb2.ModelInferResponse(id=request.id, model_name=request.model_name,
                                                      model_version=request.model_version))

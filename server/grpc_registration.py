"""Registering a generated gRPC servicer so that no request message can end a call with UNKNOWN.

grpc's own deserializer failure ends a unary call with UNKNOWN and a stream with the requests it was running.
`register` adds a servicer through its generated `add_..._to_server`, each request deserializer made tolerant: a
message protobuf cannot parse reaches the RPC as an `Undecodable`, which the RPC answers INVALID_ARGUMENT
(`end_call` with its error) or, on a stream of requests, as that request's error. `end_call` ends any call with
the status of a `ServerError`'s kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from .errors import ErrorKind, ServerError, grpc_status_name


@dataclass(frozen=True)
class Undecodable:
    """A request message protobuf could not parse, handed to the RPC in its place."""

    method: str
    reason: str

    def error(self) -> ServerError:
        return ServerError(ErrorKind.INVALID_INPUT, f"the {self.method} request message could not be parsed: "
                           f"{self.reason}")


def tolerant(method: str, parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """`parse` (a request deserializer of `method`), returning an `Undecodable` where it would raise."""

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception as exc:  # google.protobuf.message.DecodeError, whatever the bytes
            return Undecodable(method, str(exc) or type(exc).__name__)

    return deserialize


class _Handlers:
    """Stands in for the server in the generated `add_..._to_server`, to take the method handlers it builds."""

    def __init__(self) -> None:
        self.service, self.by_method = "", {}

    def add_generic_rpc_handlers(self, handlers) -> None:
        pass

    def add_registered_method_handlers(self, service: str, by_method: dict) -> None:
        self.service, self.by_method = service, by_method


def register(add_generated: Callable[[Any, Any], None], servicer: Any, server: grpc.aio.Server) -> None:
    """Register `servicer` as its generated `add_generated` does, each request deserializer `tolerant`."""
    taken = _Handlers()
    add_generated(servicer, taken)
    if not taken.by_method:  # generated code older than grpcio 1.63's registered method handlers
        raise RuntimeError(f"{add_generated.__qualname__} registered no method handlers: upgrade the package "
                           "that generated it")
    handlers = {name: handler._replace(request_deserializer=tolerant(name, handler.request_deserializer))
                for name, handler in taken.by_method.items()}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(taken.service, handlers),))
    server.add_registered_method_handlers(taken.service, handlers)


def grpc_code(error: ServerError) -> grpc.StatusCode:
    """The gRPC status of the error's kind, from the one error table (`errors.PROTOCOL_ERRORS`)."""
    return grpc.StatusCode[grpc_status_name(error.kind)]


def end_call(context: grpc.aio.ServicerContext, error: ServerError) -> None:
    """End the RPC with the status of `error` (`grpc_code`) and its message once the handler returns.

    Not `context.abort`: grpc.aio keeps the AbortError it raises in the call's state, whose traceback holds the
    handler's frame and so the request message; that cycle lives until a full garbage collection, which
    allocations of large messages seldom trigger (a server answering 15 MB requests with errors grew by ~200 MB
    per request)."""
    context.set_code(grpc_code(error))
    context.set_details(error.message)

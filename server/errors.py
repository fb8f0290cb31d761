"""The closed set of error kinds and the one table that maps each kind to each protocol's status and body.

A kind is protocol-neutral; what a client sees is decided here, per protocol: the HTTP status and body of
OpenAI, KServe v2 / Triton and TEI, and the gRPC status code of KServe v2 over gRPC. Each protocol's error
body shape is built in this module and nowhere else (`error_body`). No I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import orjson


class ErrorKind(enum.Enum):
    INVALID_INPUT = "invalid_input"
    UNAUTHORIZED = "unauthorized"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    REQUEST_TIMEOUT = "request_timeout"
    OVERLOADED = "overloaded"
    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"
    UNSUPPORTED = "unsupported"
    INTERNAL = "internal"


class Protocol(enum.Enum):
    OPENAI = "openai"
    KSERVE = "kserve"
    TEI = "tei"


@dataclass(frozen=True)
class KindRow:
    """How one error kind shows in each protocol."""

    openai_status: int
    openai_type: str  # the `error.type` of an OpenAI error body
    openai_code: str | None  # the `error.code` when the error names none
    kserve_status: int  # KServe v2 / Triton over HTTP; its body is {"error": message}
    tei_status: int
    tei_type: str  # the `error_type` of a TEI error body
    grpc_code: str  # KServe v2 over gRPC: a `grpc.StatusCode` member name


_INVALID = "invalid_request_error"
PROTOCOL_ERRORS: dict[ErrorKind, KindRow] = {
    ErrorKind.INVALID_INPUT: KindRow(400, _INVALID, None, 400, 422, "Validation", "INVALID_ARGUMENT"),
    ErrorKind.UNAUTHORIZED: KindRow(401, "authentication_error", "invalid_api_key", 401, 401, "Unauthorized",
                                    "UNAUTHENTICATED"),
    ErrorKind.NOT_FOUND: KindRow(404, "not_found_error", None, 404, 404, "NotFound", "NOT_FOUND"),
    ErrorKind.METHOD_NOT_ALLOWED: KindRow(405, "method_not_allowed", None, 405, 405, "Validation", "UNIMPLEMENTED"),
    ErrorKind.PAYLOAD_TOO_LARGE: KindRow(413, "payload_too_large", None, 413, 413, "Validation",
                                         "RESOURCE_EXHAUSTED"),
    ErrorKind.REQUEST_TIMEOUT: KindRow(408, "request_timeout", None, 408, 408, "Validation", "DEADLINE_EXCEEDED"),
    ErrorKind.OVERLOADED: KindRow(429, "overloaded", "rate_limit_exceeded", 503, 429, "Overloaded",
                                  "RESOURCE_EXHAUSTED"),
    ErrorKind.TIMEOUT: KindRow(503, "timeout", None, 503, 503, "Overloaded", "DEADLINE_EXCEEDED"),
    ErrorKind.UNAVAILABLE: KindRow(503, "unavailable", None, 503, 503, "Unhealthy", "UNAVAILABLE"),
    ErrorKind.UNSUPPORTED: KindRow(400, "unsupported", None, 501, 422, "Validation", "UNIMPLEMENTED"),
    ErrorKind.INTERNAL: KindRow(500, "internal_error", None, 500, 500, "Backend", "INTERNAL"),
}


class ServerError(Exception):
    """An error a client may see: its kind decides the status, its message is safe to show."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.param = param
        self.code = code
        self.retry_after_s = retry_after_s

    def copy(self) -> ServerError:
        """The same error as a new (plain) ServerError. Requests failed together each get their own: an
        exception keeps the traceback of the handler that raised it last, and so that handler's frames."""
        return ServerError(self.kind, self.message, param=self.param, code=self.code,
                           retry_after_s=self.retry_after_s)


def invalid(message: str, param: str | None = None) -> ServerError:
    return ServerError(ErrorKind.INVALID_INPUT, message, param=param)


def status_for(kind: ErrorKind, protocol: Protocol) -> int:
    """The HTTP status of `kind` in `protocol`."""
    row = PROTOCOL_ERRORS[kind]
    return {Protocol.OPENAI: row.openai_status, Protocol.KSERVE: row.kserve_status,
            Protocol.TEI: row.tei_status}[protocol]


def grpc_status_name(kind: ErrorKind) -> str:
    """The gRPC status code (a `grpc.StatusCode` member name) of KServe v2 over gRPC for this kind."""
    return PROTOCOL_ERRORS[kind].grpc_code


def _openai_body(error: ServerError) -> dict:
    row = PROTOCOL_ERRORS[error.kind]
    return {"error": {"message": error.message, "type": row.openai_type, "param": error.param,
                      "code": error.code or row.openai_code}}


def _kserve_body(error: ServerError) -> dict:
    return {"error": error.message}


def _tei_body(error: ServerError) -> dict:
    return {"error": error.message, "error_type": PROTOCOL_ERRORS[error.kind].tei_type}


_BODIES = {Protocol.OPENAI: _openai_body, Protocol.KSERVE: _kserve_body, Protocol.TEI: _tei_body}


def error_body(error: ServerError, protocol: Protocol) -> bytes:
    """The JSON error body `protocol` gives for `error`."""
    return orjson.dumps(_BODIES[protocol](error))

"""The closed set of error kinds and the one table that maps them to each protocol's status (HTTP and gRPC)."""

from __future__ import annotations

import enum


class ErrorKind(enum.Enum):
    INVALID_INPUT = "invalid_request_error"
    UNAUTHORIZED = "authentication_error"
    NOT_FOUND = "not_found_error"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    REQUEST_TIMEOUT = "request_timeout"
    OVERLOADED = "overloaded"
    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"
    UNSUPPORTED = "unsupported"
    INTERNAL = "internal_error"


class Protocol(enum.Enum):
    OPENAI = "openai"
    KSERVE = "kserve"
    TEI = "tei"


# kind → (OpenAI, KServe v2 / Triton, TEI) HTTP status, and the KServe v2 gRPC status code (grpc.StatusCode name).
STATUS: dict[ErrorKind, tuple[int, int, int, str]] = {
    ErrorKind.INVALID_INPUT: (400, 400, 422, "INVALID_ARGUMENT"),
    ErrorKind.UNAUTHORIZED: (401, 401, 401, "UNAUTHENTICATED"),
    ErrorKind.NOT_FOUND: (404, 404, 404, "NOT_FOUND"),
    ErrorKind.METHOD_NOT_ALLOWED: (405, 405, 405, "UNIMPLEMENTED"),
    ErrorKind.PAYLOAD_TOO_LARGE: (413, 413, 413, "RESOURCE_EXHAUSTED"),
    ErrorKind.REQUEST_TIMEOUT: (408, 408, 408, "DEADLINE_EXCEEDED"),
    ErrorKind.OVERLOADED: (429, 503, 429, "RESOURCE_EXHAUSTED"),
    ErrorKind.TIMEOUT: (503, 503, 503, "DEADLINE_EXCEEDED"),
    ErrorKind.UNAVAILABLE: (503, 503, 503, "UNAVAILABLE"),
    ErrorKind.UNSUPPORTED: (400, 501, 422, "UNIMPLEMENTED"),
    ErrorKind.INTERNAL: (500, 500, 500, "INTERNAL"),
}

# TEI's `error_type` values.
TEI_TYPE: dict[ErrorKind, str] = {
    ErrorKind.INVALID_INPUT: "Validation",
    ErrorKind.UNAUTHORIZED: "Unauthorized",
    ErrorKind.NOT_FOUND: "NotFound",
    ErrorKind.METHOD_NOT_ALLOWED: "Validation",
    ErrorKind.PAYLOAD_TOO_LARGE: "Validation",
    ErrorKind.REQUEST_TIMEOUT: "Validation",
    ErrorKind.OVERLOADED: "Overloaded",
    ErrorKind.TIMEOUT: "Overloaded",
    ErrorKind.UNAVAILABLE: "Unhealthy",
    ErrorKind.UNSUPPORTED: "Validation",
    ErrorKind.INTERNAL: "Backend",
}


def status_for(kind: ErrorKind, protocol: Protocol) -> int:
    openai, kserve, tei, _ = STATUS[kind]
    return {Protocol.OPENAI: openai, Protocol.KSERVE: kserve, Protocol.TEI: tei}[protocol]


def grpc_status_name(kind: ErrorKind) -> str:
    """The gRPC status code (a `grpc.StatusCode` member name) of KServe v2 over gRPC for this kind."""
    return STATUS[kind][3]


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


def invalid(message: str, param: str | None = None) -> ServerError:
    return ServerError(ErrorKind.INVALID_INPUT, message, param=param)

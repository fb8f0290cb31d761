"""The response-size bound (--max-response-bytes), checked from a count of what a response holds (numbers, or
TEI tokens) before anything is built."""

from __future__ import annotations

from .errors import invalid

# Bytes per number of a response: JSON text (orjson writes a float32 in at most 15 characters and a comma),
# and binary, base64 or protobuf raw contents.
JSON_BYTES_PER_FLOAT = 16
BINARY_BYTES_PER_FLOAT = 6
RESPONSE_OVERHEAD_BYTES = 4096


def check_response_floats(floats: int, *, binary: bool, limit: int) -> None:
    """Refuse a response of about `floats` numbers that would exceed `limit` bytes (an invalid-input error)."""
    check_response_bytes(floats * (BINARY_BYTES_PER_FLOAT if binary else JSON_BYTES_PER_FLOAT), limit=limit,
                         advice="send fewer inputs per request, or ask for binary output")


def check_response_bytes(body_bytes: int, *, limit: int, advice: str = "send fewer inputs per request") -> None:
    """Refuse a response whose body would be about `body_bytes` that would exceed `limit` bytes."""
    estimate = body_bytes + RESPONSE_OVERHEAD_BYTES
    if estimate > limit:
        raise invalid(f"the response would be about {estimate} bytes, more than the server's limit of {limit} "
                      f"(--max-response-bytes): {advice}")

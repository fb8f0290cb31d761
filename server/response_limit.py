"""The response-size bound (--max-response-bytes), checked from a count of numbers before anything is built."""

from __future__ import annotations

from .errors import invalid

# Bytes per number of a response: JSON text (orjson writes a float32 in at most 15 characters and a comma),
# and binary, base64 or protobuf raw contents.
JSON_BYTES_PER_FLOAT = 16
BINARY_BYTES_PER_FLOAT = 6
RESPONSE_OVERHEAD_BYTES = 4096


def check_response_floats(floats: int, *, binary: bool, limit: int) -> None:
    """Refuse a response of about `floats` numbers that would exceed `limit` bytes (an invalid-input error)."""
    estimate = floats * (BINARY_BYTES_PER_FLOAT if binary else JSON_BYTES_PER_FLOAT) + RESPONSE_OVERHEAD_BYTES
    if estimate > limit:
        raise invalid(f"the response would be about {estimate} bytes, more than the server's limit of {limit} "
                      "(--max-response-bytes): send fewer inputs per request, or ask for binary output")

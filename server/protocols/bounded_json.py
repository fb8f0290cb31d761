"""JSON parsing with a bound on the work: a body's arrays, objects and values are counted before it is parsed.

Parsing holds the GIL for its whole length, and its cost follows the number of values, not the bytes: 16 MB of
`[],` is 5.6 million lists and seconds of parsing. The count is a byte scan in numpy (which releases the GIL);
brackets and commas inside strings are not counted. No I/O.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from ..errors import invalid

# Bodies up to this size cannot hold enough values to matter and are parsed without a scan.
SCAN_BYTES = 64 * 1024
# Per allowed input: arrays and objects (a KServe [N, 1] BYTES tensor has N + 1 arrays), and values
# (token ids of pre-tokenized input, as nested JSON lists, in KServe's input_ids and attention_mask).
CONTAINERS_PER_INPUT = 8
VALUES_PER_INPUT = 1024
_SLACK = 1024
SCAN_CHUNK_BYTES = 1 << 20


def limits(max_inputs: int) -> tuple[int, int]:
    """(most arrays and objects, most values) a request body may hold."""
    return CONTAINERS_PER_INPUT * max_inputs + _SLACK, VALUES_PER_INPUT * max_inputs + _SLACK


def loads(raw: bytes | memoryview, *, max_inputs: int, what: str = "the request body",
          not_json: str = "the request body is not valid JSON") -> Any:
    """Parse `raw` unless it holds more arrays, objects or values than `max_inputs` inputs need (400 then)."""
    if len(raw) > SCAN_BYTES:
        max_containers, max_values = limits(max_inputs)
        containers, values = structure(raw, max_containers=max_containers, max_values=max_values)
        if containers > max_containers or values > max_values:
            raise invalid(f"{what} holds {containers} JSON arrays and objects and {values} values; at most "
                          f"{max_containers} and {max_values} are allowed (--max-inputs {max_inputs})")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid(f"{not_json}: {exc}") from None


def structure(raw: bytes | memoryview, *, max_containers: int = 0, max_values: int = 0) -> tuple[int, int]:
    """(arrays and objects opened, values separated by commas) outside the strings of a JSON text.

    When both plain byte counts are within the given maxima they are returned as they are (upper bounds).
    """
    data = np.frombuffer(raw, dtype=np.uint8)
    opens = (data == 0x5B) | (data == 0x7B)
    commas = data == 0x2C
    counts = int(np.count_nonzero(opens)), int(np.count_nonzero(commas))
    if counts[0] <= max_containers and counts[1] <= max_values:
        return counts
    delimiters = _string_delimiters(data)
    containers = values = 0
    inside = 0  # whether the current chunk starts inside a string
    for start in range(0, len(data), SCAN_CHUNK_BYTES):  # numpy's cumsum holds the GIL: a chunk at a time
        end = start + SCAN_CHUNK_BYTES
        parity = (np.cumsum(delimiters[start:end], dtype=np.uint8) + inside) & 1  # survives the uint8 wrap
        outside = parity == 0
        containers += int(np.count_nonzero(opens[start:end] & outside))
        values += int(np.count_nonzero(commas[start:end] & outside))
        inside = int(parity[-1])
    return containers, values


def _string_delimiters(data: np.ndarray) -> np.ndarray:
    """A mask of the quotes that open or close a string (not the escaped ones)."""
    quotes = data == 0x22
    escaped = np.flatnonzero(quotes[1:] & (data[:-1] == 0x5C)) + 1
    for position in escaped.tolist():  # rare: count the backslashes before this quote
        start = position - 1
        while start >= 0 and data[start] == 0x5C:
            start -= 1
        if (position - 1 - start) % 2:
            quotes[position] = False
    return quotes

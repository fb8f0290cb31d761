"""The response-size bound both KServe transports share (--max-response-bytes)."""

from __future__ import annotations

import pytest

from server.errors import ErrorKind, ServerError
from server.response_limit import BINARY_BYTES_PER_FLOAT, JSON_BYTES_PER_FLOAT, RESPONSE_OVERHEAD_BYTES, \
    check_response_floats


def test_binary_responses_may_hold_more_numbers_than_json_ones():
    limit = RESPONSE_OVERHEAD_BYTES + 1000 * BINARY_BYTES_PER_FLOAT
    check_response_floats(1000, binary=True, limit=limit)
    with pytest.raises(ServerError) as refused:
        check_response_floats(1000, binary=False, limit=limit)
    assert refused.value.kind is ErrorKind.INVALID_INPUT and "--max-response-bytes" in refused.value.message
    assert 1000 * JSON_BYTES_PER_FLOAT > limit

import base64

import numpy as np
import orjson
import pytest

from server.errors import ErrorKind, Protocol, ServerError, error_body
from server.protocols.openai import (
    build_embeddings_response,
    parse_embeddings_request,
    check_dimensions,
)
from server.config import ServerConfig

MAX_CHARS = ServerConfig().max_input_chars  # the server's default --max-input-chars


def parse(body, max_inputs=2048):
    return parse_embeddings_request(body, max_inputs=max_inputs, max_input_chars=MAX_CHARS)


def test_input_forms():
    assert parse({"input": "hi"}).texts == ["hi"]
    assert parse({"input": ["a", "b"]}).texts == ["a", "b"]
    assert parse({"input": [1, 2, 3]}).token_ids == [[1, 2, 3]]
    assert parse({"input": [[1], [2, 3]]}).token_ids == [[1], [2, 3]]
    request = parse({"input": "x", "model": "m", "encoding_format": "base64", "dimensions": 8})
    assert (request.model, request.encoding_format, request.dimensions) == ("m", "base64", 8)


# Empty and NUL-holding texts are refused for every protocol in server/embedding.py (check_texts).
@pytest.mark.parametrize("body, param", [
    ([], None), ({"model": "m"}, "input"), ({"input": []}, "input"),
    ({"input": ["a", 1]}, "input"), ({"input": [[1], []]}, "input"),
    ({"input": [True]}, "input"), ({"input": [[1.5]]}, "input"), ({"input": {"a": 1}}, "input"),
    ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
    ({"input": "x", "dimensions": 0}, "dimensions"), ({"input": "x", "dimensions": -3}, "dimensions"),
    ({"input": "x", "dimensions": "8"}, "dimensions"), ({"input": "x", "model": 3}, "model"),
    ({"input": "x", "user": 1}, "user"),
])
def test_invalid_requests_are_rejected_with_the_param_named(body, param):
    with pytest.raises(ServerError) as info:
        parse(body)
    assert info.value.kind is ErrorKind.INVALID_INPUT and info.value.param == param


def test_too_many_inputs():
    with pytest.raises(ServerError) as info:
        parse({"input": ["x"] * 5}, max_inputs=4)
    assert "at most 4" in info.value.message


def test_float_and_base64_responses_carry_the_same_vectors():
    vectors = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    as_float = orjson.loads(build_embeddings_response("m", vectors, 12, "float"))
    as_b64 = orjson.loads(build_embeddings_response("m", vectors, 12, "base64"))
    assert as_float["usage"] == {"prompt_tokens": 12, "total_tokens": 12} and as_float["model"] == "m"
    for i in range(3):
        np.testing.assert_allclose(as_float["data"][i]["embedding"], vectors[i], rtol=1e-6)
        decoded = np.frombuffer(base64.b64decode(as_b64["data"][i]["embedding"]), dtype="<f4")
        np.testing.assert_array_equal(decoded, vectors[i])
        assert as_b64["data"][i]["index"] == i


def test_dimensions_are_bounded_by_the_chosen_model():
    check_dimensions(None, 3, "m")
    check_dimensions(3, 3, "m")
    with pytest.raises(ServerError) as refused:
        check_dimensions(4, 3, "m")
    assert refused.value.param == "dimensions" and "at most 3" in refused.value.message


def test_error_body_has_openai_shape():
    body = orjson.loads(error_body(ServerError(ErrorKind.INVALID_INPUT, "bad", param="input"), Protocol.OPENAI))
    assert body == {"error": {"message": "bad", "type": "invalid_request_error", "param": "input", "code": None}}

"""protocols/tei.py: TEI request parsing, post-processing and response shapes (no server, no model)."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from server.errors import ErrorKind, ServerError
from server.protocols import tei
from server.config import ServerConfig

MAX_CHARS = ServerConfig().max_input_chars  # the server's default --max-input-chars


def parse(body, max_inputs=32, dimension=384):
    return tei.parse_embed_request(body, max_inputs=max_inputs, dimension=dimension, max_input_chars=MAX_CHARS)


def rejected(call, kind=ErrorKind.INVALID_INPUT) -> str:
    with pytest.raises(ServerError) as info:
        call()
    assert info.value.kind is kind
    return info.value.message


def test_embed_defaults_follow_tei():
    request = parse({"inputs": "hello"})
    assert request.texts == ["hello"] and request.token_ids is None and request.count == 1
    assert request.normalize is True and request.truncate is None and request.dimensions is None


def test_embed_input_forms_and_options():
    assert parse({"inputs": ["a", "b"]}).texts == ["a", "b"]
    assert parse({"inputs": [7, 8]}).token_ids == [[7, 8]]
    assert parse({"inputs": [[7], [8, 9]]}).token_ids == [[7], [8, 9]]
    request = parse({"inputs": "x", "normalize": False, "truncate": False, "truncation_direction": "Right",
                     "dimensions": 128})
    assert (request.normalize, request.truncate, request.dimensions) == (False, False, 128)
    assert parse({"inputs": "x", "truncate": None, "normalize": None}).normalize is True


def test_the_tokenize_response_is_built_a_text_at_a_time():
    """The SimpleTokens of every text at once, then their JSON, peaked at ~5x the response; one buffer grown text by
    text holds the response and one text's tokens."""
    import tracemalloc

    text = "héllox " * 40
    tokens = [(101, "[CLS]", 0, 0, True)] + [(1000 + k, "w", 7 * (k % 40), 7 * (k % 40) + 6, False)
                                            for k in range(254)] + [(102, "[SEP]", 0, 0, True)]
    texts, token_lists = [text] * 256, [tokens] * 256
    tracemalloc.start()
    try:
        body = tei.build_tokenize_response(texts, token_lists, True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert orjson.loads(body) == [tei.simple_tokens(text, tokens, True)] * 256
    assert orjson.loads(tei.build_tokenize_response(texts[:1], token_lists[:1], False)) == [
        tei.simple_tokens(text, tokens, False)]
    print(f"response {len(body) / 2**20:.1f} MB, peak {peak / 2**20:.1f} MB")
    assert peak < 1.5 * len(body) + 2**20, (peak, len(body))


@pytest.mark.parametrize("body, words", [
    ({"inputs": []}, "`inputs` cannot be empty"),
    ({"inputs": ["a"] * 33}, "batch size 33 > maximum allowed batch size 32"),
    ({}, "`inputs` is required"),
    ([], "must be a JSON object"),
    ({"inputs": 3}, "`inputs` must be a string"),
    ({"inputs": ["a", 1]}, "all strings, all token ids"),
    ({"inputs": [[1], []]}, "all strings, all token ids"),
    ({"inputs": [True]}, "all strings, all token ids"),
    ({"inputs": "x", "normalize": "no"}, "`normalize` must be a boolean"),
    ({"inputs": "x", "truncate": 1}, "`truncate` must be a boolean"),
    ({"inputs": "x", "dimensions": 0}, "`dimensions` must be an integer from 1 to 384"),
    ({"inputs": "x", "dimensions": 385}, "from 1 to 384"),
    ({"inputs": "x", "truncation_direction": "up"}, "must be 'Right' or 'Left'"),
])
def test_invalid_embed_requests(body, words):
    assert words in rejected(lambda: parse(body))


def test_left_truncation_prompt_name_and_chunking_are_parsed():
    request = parse({"inputs": "x", "truncation_direction": "Left", "prompt_name": "query",
                     "chunking": {"mode": "chunks", "overlap": 8}})
    assert request.options.truncation_direction == "left" and request.options.prompt_name == "query"
    assert (request.options.chunking.mode, request.options.chunking.overlap) == ("chunks", 8)
    assert "'chunking' needs a 'mode'" in rejected(lambda: parse({"inputs": "x", "chunking": {"overlap": 8}}))


def test_embed_response_is_a_list_of_lists_of_float32_values():
    vectors = np.array([[0.1, 0.2], [0.3, 0.4]], dtype=np.float32)
    parsed = np.array(orjson.loads(tei.build_embed_response(vectors)), dtype=np.float32)
    assert parsed.tolist() == vectors.tolist()


def test_tokenize_request_and_simple_tokens():
    request = tei.parse_tokenize_request({"inputs": "héllo wörld"}, max_inputs=4, max_input_chars=MAX_CHARS)
    assert request.texts == ["héllo wörld"] and request.add_special_tokens is True
    assert tei.parse_tokenize_request({"inputs": ["a", "b"], "add_special_tokens": False},
                                      max_inputs=4, max_input_chars=MAX_CHARS).add_special_tokens is False
    tokens = [(101, "[CLS]", 0, 0, True), (1, "hello", 0, 5, False), (2, "##x", 5, 6, False),
              (102, "[SEP]", 0, 0, True)]
    text = "héllox"
    assert tei.simple_tokens(text, tokens, True) == [
        {"id": 101, "text": "[CLS]", "special": True, "start": None, "stop": None},
        {"id": 1, "text": "héllo", "special": False, "start": 0, "stop": 5},
        {"id": 2, "text": "x", "special": False, "start": 5, "stop": 6},
        {"id": 102, "text": "[SEP]", "special": True, "start": None, "stop": None},
    ]
    assert [t["id"] for t in tei.simple_tokens(text, tokens, False)] == [1, 2]


@pytest.mark.parametrize("body, words", [
    ({"inputs": []}, "`inputs` cannot be empty"),
    ({"inputs": [1]}, "a string or a list of strings"),
    ({"inputs": "x", "add_special_tokens": "yes"}, "must be a boolean"),
    ({"inputs": ["a"] * 5}, "batch size 5 > maximum allowed batch size 4"),
])
def test_invalid_tokenize_requests(body, words):
    assert words in rejected(lambda: tei.parse_tokenize_request(body, max_inputs=4, max_input_chars=MAX_CHARS))


def test_info_has_tei_fields():
    fields = tei.InfoFields(model_id="m", precision="fp32", pooling="mean", max_concurrent_requests=512,
                            max_input_length=256, max_batch_tokens=8192, max_batch_requests=64,
                            max_client_batch_size=32, auto_truncate=True, version="1.0")
    info = orjson.loads(tei.build_info(fields))
    assert info["model_dtype"] == "float32" and info["model_type"] == {"embedding": {"pooling": "mean"}}
    assert {"model_id", "max_concurrent_requests", "max_input_length", "max_batch_tokens",
            "max_client_batch_size", "tokenization_workers", "version", "auto_truncate"} <= set(info)
    assert info["max_input_length"] == 256 and info["max_client_batch_size"] == 32


def test_too_long_error_is_a_validation_error():
    error = tei.too_long(2, 256)
    assert error.kind is ErrorKind.INVALID_INPUT and "256 tokens" in error.message

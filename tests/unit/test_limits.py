"""Pure limits: bounded decoding of compressed bodies, bounded JSON, input counting, the configuration's guards."""

from __future__ import annotations

import gzip
import inspect
import zlib

import brotli
import orjson
import pytest

from server.config import ServerConfig, binds_loopback_only, parse_config
from server.decoding import decode
from server.errors import ErrorKind, ServerError
from server.protocols import bounded_json, kserve, openai, tei

MAX_CHARS = ServerConfig().max_input_chars  # the server's default --max-input-chars

BODY = orjson.dumps({"input": ["some text"] * 50})


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize("encoding, data", [
    ("gzip", gzip.compress(BODY)), ("x-gzip", gzip.compress(BODY)), ("deflate", zlib.compress(BODY)),
    ("deflate", raw_deflate(BODY)), ("br", brotli.compress(BODY)), ("identity", BODY),
], ids=["gzip", "x-gzip", "deflate", "raw-deflate", "br", "identity"])
def test_every_encoding_decodes(encoding, data):
    assert decode(data, encoding, 1 << 20) == BODY


def test_gzip_members_and_stacked_encodings():
    assert decode(gzip.compress(b"ab") + gzip.compress(b"cd"), "gzip", 100) == b"abcd"
    assert decode(brotli.compress(gzip.compress(BODY)), "gzip, br", 1 << 20) == BODY


@pytest.mark.parametrize("encoding, bomb", [
    ("gzip", gzip.compress(b"[]," * 5_600_000)), ("deflate", zlib.compress(b"\0" * 50_000_000)),
    ("br", brotli.compress(b"\0" * 50_000_000)),
], ids=["gzip", "deflate", "br"])
def test_a_small_body_that_expands_past_the_limit_stops_at_the_limit(encoding, bomb):
    assert len(bomb) < 200_000
    with pytest.raises(ServerError) as info:
        decode(bomb, encoding, 16 * 1024 * 1024)
    assert info.value.kind is ErrorKind.PAYLOAD_TOO_LARGE


@pytest.mark.parametrize("data, encoding, words", [
    (BODY, "gzip", "not valid gzip"), (gzip.compress(BODY)[:20], "gzip", "cut short"),
    (b"garbage", "deflate", "not valid deflate"), (b"garbage!", "br", "not valid br"),
])
def test_corrupt_or_cut_streams_are_invalid_input(data, encoding, words):
    with pytest.raises(ServerError) as info:
        decode(data, encoding, 1 << 20)
    assert info.value.kind is ErrorKind.INVALID_INPUT and words in info.value.message


def test_unknown_encodings_are_unsupported():
    with pytest.raises(ServerError) as info:
        decode(BODY, "zstd", 1 << 20)
    assert info.value.kind is ErrorKind.UNSUPPORTED


def test_json_structure_is_counted_outside_strings_only():
    text = orjson.dumps({"a": ["x[,{", 'q\\"[,', [1, 2, {"b": 3}]], "c": "\\\\"})
    assert bounded_json.structure(text) == (4, 5)
    brackets_in_text = orjson.dumps({"input": ["[{," * 100_000]})
    assert bounded_json.structure(brackets_in_text) == (2, 0)
    assert bounded_json.loads(brackets_in_text, max_inputs=1)["input"][0].startswith("[{,")


@pytest.mark.parametrize("body", [
    b'{"input":[' + b",".join([b"[]"] * 2_000_000) + b"]}",
    b'{"input":[' + b",".join([b"1"] * 3_000_000) + b"]}",
])
def test_json_with_more_values_than_the_inputs_need_is_refused_before_parsing(body):
    with pytest.raises(ServerError) as info:
        bounded_json.loads(body, max_inputs=2048)
    assert info.value.kind is ErrorKind.INVALID_INPUT and "at most" in info.value.message


def test_the_largest_legitimate_token_id_body_parses():
    ids = orjson.dumps({"input": [[1000] * 512] * 2048})
    assert len(bounded_json.loads(ids, max_inputs=2048)["input"]) == 2048


def test_one_pre_tokenized_input_is_one_input_however_long():
    ids = list(range(1, 2050))
    assert openai.parse_embeddings_request({"input": ids}, max_inputs=2048, max_input_chars=MAX_CHARS).count == 1
    assert tei.parse_embed_request({"inputs": ids}, max_inputs=2048, dimension=384,
                                   max_input_chars=MAX_CHARS).count == 1
    with pytest.raises(ServerError):
        openai.parse_embeddings_request({"input": [[1]] * 2049}, max_inputs=2048, max_input_chars=MAX_CHARS)
    with pytest.raises(ServerError):
        openai.parse_embeddings_request({"input": [1, "x"]}, max_inputs=2048, max_input_chars=MAX_CHARS)


def test_texts_over_the_character_cap_are_refused():
    for parse in (lambda t: openai.parse_embeddings_request({"input": t}, max_inputs=8, max_input_chars=10),
                  lambda t: tei.parse_embed_request({"inputs": t}, max_inputs=8, dimension=4, max_input_chars=10),
                  lambda t: tei.parse_tokenize_request({"inputs": t}, max_inputs=8, max_input_chars=10)):
        parse("x" * 10)
        with pytest.raises(ServerError) as info:
            parse("x" * 11)
        assert "characters" in info.value.message


def test_binary_bytes_elements_are_counted_before_they_are_copied():
    header = orjson.dumps({"inputs": [{"name": "TEXT", "shape": [2], "datatype": "BYTES",
                                       "parameters": {"binary_data_size": 4 * 1_000_000}}]})
    body = header + b"\0\0\0\0" * 1_000_000  # a million empty strings for a shape of 2
    with pytest.raises(ServerError) as info:
        kserve.parse_infer_request(body, str(len(header)), model="m", max_inputs=2048, max_input_chars=MAX_CHARS)
    assert "more than the 2 elements" in info.value.message
    long_item = (41).to_bytes(4, "little") + b"y" * 41
    header = orjson.dumps({"inputs": [{"name": "TEXT", "shape": [1], "datatype": "BYTES",
                                       "parameters": {"binary_data_size": len(long_item)}}]})
    with pytest.raises(ServerError) as info:
        kserve.parse_infer_request(header + long_item, str(len(header)), model="m", max_inputs=8,
                                   max_input_chars=10)
    assert "41 bytes" in info.value.message


def test_json_bytes_elements_stop_at_the_shape():
    body = orjson.dumps({"inputs": [{"name": "TEXT", "shape": [2], "datatype": "BYTES", "data": [[]] * 5000}]})
    with pytest.raises(ServerError):
        kserve.parse_infer_request(body, None, model="m", max_inputs=2048, max_input_chars=MAX_CHARS)


def test_model_control_needs_a_key_or_loopback():
    assert parse_config([], {}).model_control is False
    assert parse_config(["--model-control", "true"], {}).model_control is True  # 127.0.0.1
    assert parse_config(["--model-control", "true", "--host", "0.0.0.0", "--api-key", "k"], {}).model_control
    with pytest.raises(ValueError):
        ServerConfig(host="0.0.0.0", model_control=True)
    assert binds_loopback_only("::1") and binds_loopback_only("localhost") and not binds_loopback_only("::")


def test_bad_limit_values_are_refused(capsys):
    for argv in (["--max-input-chars", "0"], ["--body-timeout-s", "0"], ["--max-connections", "0"],
                 ["--model-control", "true", "--host", "0.0.0.0"]):
        with pytest.raises(SystemExit):
            parse_config(argv, {})
    assert "model-control" in capsys.readouterr().err


@pytest.mark.parametrize("parse", [openai.parse_embeddings_request, tei.parse_embed_request,
                                   tei.parse_tokenize_request, kserve.parse_infer_request, kserve.assemble_request])
def test_the_character_cap_is_passed_from_config_not_defaulted(parse):
    """--max-input-chars has one default, the config's: no parser carries its own copy."""
    assert inspect.signature(parse).parameters["max_input_chars"].default is inspect.Parameter.empty

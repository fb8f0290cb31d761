"""protocols/kserve.py against the wire format tritonclient writes and reads (no server, no model)."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

from server.errors import ErrorKind, ServerError
from server.protocols import kserve
from server.registry import ModelState
from server.repository import ModelConfig, conform_inputs, model_config_pb2
from server.config import ServerConfig

MAX_CHARS = ServerConfig().max_input_chars  # the server's default --max-input-chars

MODEL = "m"
STRINGS = [b"hello", b"hi", b"", "Grüße ✓ 東京".encode(), b"nul\x00inside", b"x" * 70000]


def text_input(texts, shape=None, binary=True):
    array = np.array(texts, dtype=object)
    array = array.reshape(shape) if shape else array
    tensor = httpclient.InferInput("TEXT", list(array.shape), "BYTES")
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def int64_input(name, array, binary=True):
    tensor = httpclient.InferInput(name, list(array.shape), "INT64")
    tensor.set_data_from_numpy(np.asarray(array, dtype=np.int64), binary_data=binary)
    return tensor


def client_body(inputs, outputs=None, **kwargs):
    body, json_size = httpclient.InferenceServerClient.generate_request_body(inputs, outputs=outputs, **kwargs)
    return body, None if json_size is None else str(json_size)


def parse(body, header=None, max_inputs=2048):
    return kserve.parse_infer_request(body, header, model=MODEL, max_inputs=max_inputs, max_input_chars=MAX_CHARS)


def parse_json(obj, max_inputs=2048):
    return parse(orjson.dumps(obj), None, max_inputs)


def rejected(call, kind=ErrorKind.INVALID_INPUT) -> str:
    with pytest.raises(ServerError) as info:
        call()
    assert info.value.kind is kind
    return info.value.message


def test_bytes_serialization_matches_tritonclient_both_ways():
    reference = serialize_byte_tensor(np.array(STRINGS, dtype=object)).item()
    assert kserve.serialize_bytes(STRINGS) == reference
    assert kserve.deserialize_bytes(reference) == STRINGS
    decoded = deserialize_bytes_tensor(kserve.serialize_bytes(STRINGS))
    assert list(decoded) == STRINGS


def test_worked_example_from_the_binary_extension():
    assert kserve.serialize_bytes([b"hello", b"hi"]) == bytes.fromhex("0500000068656c6c6f020000006869")


@pytest.mark.parametrize("buffer, words", [
    (b"\x06\x00\x00\x00hello", "declares 6 bytes but only 5 remain"),
    (b"\x02\x00\x00\x00hi\x05\x00", "cut short at byte 6"),
    (b"\xff\xff\xff\xffabc", "declares 4294967295 bytes"),
])
def test_length_prefix_overruns_are_rejected(buffer, words):
    assert words in rejected(lambda: kserve.deserialize_bytes(buffer))


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("shape", [None, (-1, 1)])
def test_text_input_from_tritonclient_is_parsed(binary, shape):
    texts = ["hello world", "Grüße ✓", ""]
    request = parse(*client_body([text_input(texts, shape, binary)], request_id="req-7", timeout=2500))
    assert request.texts == texts and request.input_ids is None
    assert request.id == "req-7" and request.timeout_us == 2500 and request.count == 3
    assert request.outputs == [kserve.RequestedOutput("sentence_embedding", True)]


@pytest.mark.parametrize("binary_output", [True, False])
def test_requested_output_binary_flag_is_honoured(binary_output):
    output = httpclient.InferRequestedOutput("sentence_embedding", binary_data=binary_output)
    request = parse(*client_body([text_input(["a"])], outputs=[output]))
    assert request.outputs == [kserve.RequestedOutput("sentence_embedding", binary_output)]
    assert request.id is None and request.timeout_us is None


def test_pure_json_defaults_to_json_output_and_accepts_nested_data():
    request = parse_json({"inputs": [_text(shape=[2, 1], data=[["a"], ["b"]])]})
    assert request.texts == ["a", "b"]
    assert request.outputs == [kserve.RequestedOutput("sentence_embedding", False)]


def test_int64_inputs_mixed_binary_and_json():
    ids = np.array([[101, 7592, 102, 0], [101, 7592, 2088, 102]])
    mask = (ids != 0).astype(np.int64)
    inputs = [int64_input("input_ids", ids), int64_input("attention_mask", mask, binary=False),
              int64_input("token_type_ids", np.zeros_like(ids))]
    request = parse(*client_body(inputs))
    assert request.texts is None and request.count == 2
    assert request.input_ids.dtype == np.int64 and (request.input_ids == ids).all()
    assert (request.attention_mask == mask).all()


def test_sequences_from_ids_strip_padding_on_either_side():
    ids = np.array([[101, 5, 102, 0, 0], [0, 0, 101, 6, 102], [101, 7, 8, 9, 102]])
    sequences = kserve.sequences_from_ids(ids, (ids != 0).astype(np.int64), vocab_size=200, max_seq_length=5)
    assert [s.tolist() for s in sequences] == [[101, 5, 102], [101, 6, 102], [101, 7, 8, 9, 102]]
    assert all(s.dtype == np.int64 and s.flags.c_contiguous for s in sequences)


@pytest.mark.parametrize("ids, mask, words", [
    ([[1, 2, 300]], [[1, 1, 1]], "outside this model's vocabulary [0, 200)"),
    ([[1, -2, 3]], [[1, 1, 1]], "outside this model's vocabulary"),
    ([[1, 2, 3, 4]], [[1, 1, 1, 1]], "has 4 tokens, more than this model's max_seq_length 3"),
    ([[1, 2, 3]], [[1, 2, 1]], "only 0 and 1"),
    ([[1, 2, 3], [4, 5, 6]], [[1, 1, 1], [0, 0, 0]], "row 1 of 'attention_mask' has no 1"),
])
def test_sequences_from_ids_validate(ids, mask, words):
    call = lambda: kserve.sequences_from_ids(np.array(ids), np.array(mask), vocab_size=200, max_seq_length=3)
    assert words in rejected(call)


def test_padding_beyond_max_seq_length_is_fine_when_the_mask_excludes_it():
    ids = np.array([[101, 5, 102, 0, 0, 0]])
    sequences = kserve.sequences_from_ids(ids, (ids != 0).astype(np.int64), vocab_size=200, max_seq_length=3)
    assert sequences[0].tolist() == [101, 5, 102]


def _text(**overrides):
    tensor = {"name": "TEXT", "shape": [1], "datatype": "BYTES", "data": ["x"]}
    tensor.update(overrides)
    return tensor


IDS = {"name": "input_ids", "shape": [1, 2], "datatype": "INT64", "data": [1, 2]}
MASK = {"name": "attention_mask", "shape": [1, 2], "datatype": "INT64", "data": [1, 1]}


@pytest.mark.parametrize("body, words", [
    ({"inputs": [_text(datatype="FP32")]}, "data-type is 'FP32', but model 'm' expects 'BYTES'"),
    ({"inputs": [_text(shape=[1, 2])]},
     "unexpected shape for input 'TEXT' for model 'm'. Expected [-1] or [-1,1], got [1, 2]"),
    ({"inputs": [_text(shape=[0], data=[])]}, "input 'TEXT' holds no text: send at least one"),
    ({"inputs": [_text(shape=[0, 1], data=[])]}, "input 'TEXT' holds no text: send at least one"),
    ({"inputs": [{**IDS, "shape": [0, 2], "data": []}, MASK]}, "input 'input_ids' holds no sequence"),
    ({"inputs": [{**IDS, "shape": [1, 0], "data": []}, MASK]}, "input 'input_ids' holds no token"),
    ({"inputs": [_text(shape=[2])]}, "has 1 elements but its shape [2] needs 2"),
    ({"inputs": [_text(shape=["1"])]}, "'shape' must be a list of non-negative integers"),
    ({"inputs": [_text(data=[1])]}, "BYTES data in JSON must be strings"),
    ({"inputs": [_text(name="text")]}, "unexpected inference input 'text' for model 'm'"),
    ({"inputs": [_text(), _text()]}, "given more than once"),
    ({"inputs": [{"name": "TEXT", "shape": [1], "datatype": "BYTES"}]},
     "neither 'data' nor 'binary_data_size'"),
    ({"inputs": []}, "'inputs' must be a non-empty list"),
    ({"inputs": [_text()], "outputs": [{"name": "EMBEDDING"}]},
     "unexpected inference output 'EMBEDDING' for model 'm'"),
    ({"inputs": [_text()], "id": 5}, "'id' must be a string"),
    ({"inputs": [_text()], "parameters": {"timeout": -1}}, "'timeout' must be a non-negative integer"),
    ({"inputs": [_text()], "parameters": {"binary_data_output": "yes"}},
     "'binary_data_output' must be a boolean"),
    ({"inputs": [_text(), IDS, MASK]}, "not both"),
    ({"inputs": [IDS]}, "needs input 'TEXT' (BYTES), or inputs 'input_ids' and 'attention_mask'"),
    ({"inputs": [IDS, {**MASK, "shape": [2, 1]}]}, "'attention_mask' has shape [2, 1], 'input_ids' has [1, 2]"),
    ({"inputs": [{**IDS, "shape": [2]}, MASK]},
     "unexpected shape for input 'input_ids' for model 'm'. Expected [-1,-1]"),
    ({"inputs": [{**IDS, "data": [1.5, 2]}, MASK]}, "'data' must hold 2 integers"),
    ({"inputs": [{**IDS, "data": [True, False]}, MASK]}, "'data' must hold 2 integers"),
    ({"inputs": [{**IDS, "data": [1, 2, 3]}, MASK]}, "'data' must hold 2 integers"),
    ({"inputs": [{**IDS, "data": [[1], [2, 3]]}, MASK]}, "nested) list of integers"),
    ({"inputs": [{**IDS, "datatype": "INT32"}, MASK]}, "data-type is 'INT32', but model 'm' expects 'INT64'"),
    ({"inputs": [IDS, MASK, {**IDS, "name": "token_type_ids", "data": [0, 1]}]}, "must be all zeros"),
    ([1, 2], "must be a JSON object"),
])
def test_invalid_requests_are_rejected_with_a_clear_message(body, words):
    assert words in rejected(lambda: parse_json(body))


def test_too_many_texts_are_rejected():
    assert "at most 2 are allowed" in rejected(lambda: parse(*client_body([text_input(["a", "b", "c"])]),
                                                             max_inputs=2))


@pytest.mark.parametrize("where", ["input", "output"])
def test_shared_memory_is_unsupported(where):
    body = {"inputs": [_text()], "outputs": [{"name": "sentence_embedding"}]}
    target = body["inputs"][0] if where == "input" else body["outputs"][0]
    target["parameters"] = {"shared_memory_region": "r0", "shared_memory_byte_size": 8}
    assert "shared memory is not supported" in rejected(lambda: parse_json(body), ErrorKind.UNSUPPORTED)


def test_binary_body_errors():
    body, header = client_body([text_input(["hello", "hi"])])
    json_size = int(header)
    assert "request body has 3 bytes after" in rejected(lambda: parse(body + b"xyz", header))
    assert "declares 15 bytes of binary data but only 10 remain" in rejected(lambda: parse(body[:-5], header))
    assert "is 999999 but the request body has" in rejected(lambda: parse(body, "999999"))
    assert "must be an integer" in rejected(lambda: parse(body, "12a"))
    assert "raw binary requests" in rejected(lambda: parse(body, "0"))
    assert "failed to parse the request JSON" in rejected(lambda: parse(body, str(json_size - 3)))
    assert "failed to parse the request JSON" in rejected(lambda: parse(body, None))
    assert "the request body is empty" in rejected(lambda: parse(b"", None))


def test_a_length_prefix_overrun_inside_a_request_is_a_clear_error():
    header = orjson.dumps({"inputs": [{"name": "TEXT", "shape": [1], "datatype": "BYTES",
                                       "parameters": {"binary_data_size": 9}}]})
    body = header + b"\x09\x00\x00\x00hello"
    assert "declares 9 bytes but only 5 remain" in rejected(lambda: parse(body, str(len(header))))


def test_invalid_utf8_is_rejected():
    header = orjson.dumps({"inputs": [{"name": "TEXT", "shape": [1], "datatype": "BYTES",
                                       "parameters": {"binary_data_size": 6}}]})
    body = header + kserve.serialize_bytes([b"\xff\xfe"])
    assert "not valid UTF-8" in rejected(lambda: parse(body, str(len(header))))


def test_classification_and_config_overrides_are_unsupported():
    output = {"name": "sentence_embedding", "parameters": {"classification": 3}}
    body = {"inputs": [_text()], "outputs": [output]}
    rejected(lambda: parse_json(body), ErrorKind.UNSUPPORTED)
    rejected(lambda: kserve.check_load_request({"parameters": {"config": "{}"}}), ErrorKind.UNSUPPORTED)
    rejected(lambda: kserve.check_load_request({"parameters": {"file:1/model.onnx": "AA=="}}),
             ErrorKind.UNSUPPORTED)
    rejected(lambda: kserve.check_load_request([1]))
    kserve.check_load_request(None)
    kserve.check_load_request({"parameters": {"unload_dependents": False}})


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("request_id", [None, "abc"])
def test_response_is_read_back_exactly_by_tritonclient(binary, request_id):
    vectors = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    outputs = [kserve.RequestedOutput("sentence_embedding", binary)]
    body, header_length = kserve.build_infer_response(model=MODEL, version="1", request_id=request_id,
                                                      vectors=vectors, outputs=outputs)
    assert (header_length is not None) == binary
    if binary:
        assert len(body) == header_length + vectors.nbytes
    result = httpclient.InferenceServerClient.parse_response_body(body, header_length=header_length)
    got = result.as_numpy("sentence_embedding")
    assert got.dtype == np.float32 and got.shape == (3, 8) and (got == vectors).all()
    response = result.get_response()
    assert response["model_name"] == MODEL and response["model_version"] == "1"
    assert response.get("id") == request_id


def test_timeout_only_shortens_the_server_deadline():
    assert kserve.timeout_ms(None, None) is None
    assert kserve.timeout_ms(None, 500) == 500
    assert kserve.timeout_ms(2500, None) == 3
    assert kserve.timeout_ms(1, None) == 1
    assert kserve.timeout_ms(2_000_000, 500) == 500
    assert kserve.timeout_ms(100_000, 500) == 100


def test_metadata_and_repository_index_shapes():
    metadata = orjson.loads(kserve.model_metadata("m", ["1"], legacy_config(max_batch_size=64)))
    assert metadata["platform"] == "onnxruntime_onnx" and metadata["versions"] == ["1"]
    assert [(i["name"], i["datatype"], i["shape"]) for i in metadata["inputs"]] == [
        ("TEXT", "BYTES", [-1, 1]), ("input_ids", "INT64", [-1, -1]), ("attention_mask", "INT64", [-1, -1])]
    assert metadata["outputs"] == [{"name": "sentence_embedding", "datatype": "FP32", "shape": [-1, 384]}]
    rows = [{"name": "a", "version": "1", "state": "READY", "reason": ""},
            {"name": "b", "state": "UNAVAILABLE", "reason": "unloaded"}]
    entries = [ModelState("a", 1, True, ""), ModelState("b", None, False, "unloaded")]
    assert orjson.loads(kserve.repository_index(entries, None)) == rows
    assert orjson.loads(kserve.repository_index(entries, {"ready": True})) == rows[:1]
    rejected(lambda: kserve.repository_index(entries, {"ready": "yes"}))


def legacy_config(max_batch_size):
    """A config.pbtxt as exports wrote it before TEXT was listed: two required id inputs, no TEXT."""
    config = ModelConfig(name="m", platform="onnxruntime_onnx", max_batch_size=max_batch_size)
    for name in ("input_ids", "attention_mask"):
        config.input.add(name=name, data_type=model_config_pb2.TYPE_INT64, dims=[-1])
    config.output.add(name="sentence_embedding", data_type=model_config_pb2.TYPE_FP32, dims=[384])
    return conform_inputs(config)


@pytest.mark.parametrize("max_batch_size, text_shape, ids_shape", [(64, [-1, 1], [-1, -1]), (0, [-1], [-1, -1])])
def test_metadata_follows_tritons_batching_rule_from_the_config(max_batch_size, text_shape, ids_shape):
    config = legacy_config(max_batch_size)
    assert [(i.name, i.optional) for i in config.input] == [
        ("TEXT", False), ("input_ids", True), ("attention_mask", True)]
    assert conform_inputs(legacy_config(max_batch_size)) == config, "conforming twice changes nothing"
    metadata = kserve.model_metadata_dict("m", ["1"], config)
    batch = [-1] if max_batch_size else []
    for tensor, entry in zip(config.input, metadata["inputs"]):
        assert entry["shape"] == batch + list(tensor.dims)
    assert [i["shape"] for i in metadata["inputs"]] == [text_shape, ids_shape, ids_shape]
    assert metadata["inputs"][0]["datatype"] == "BYTES" and config.input[0].data_type == model_config_pb2.TYPE_STRING


def test_config_json_is_tritons_with_64_bit_integers_as_numbers():
    config = legacy_config(64)
    config.parameters["max_seq_length"].string_value = "256"
    shown = orjson.loads(kserve.model_config(config))
    assert shown["max_batch_size"] == 64 and shown["input"][1]["dims"] == [-1]
    assert shown["output"][0] == {**shown["output"][0], "name": "sentence_embedding", "data_type": "TYPE_FP32",
                                  "dims": [384]}
    assert shown["parameters"]["max_seq_length"] == {"string_value": "256"}

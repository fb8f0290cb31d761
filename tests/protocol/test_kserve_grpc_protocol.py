"""protocols/kserve_grpc.py against the messages tritonclient.grpc builds and reads (no server, no model)."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2
from tritonclient.grpc._utils import _get_inference_request

from server.embedding import ChunkSet, chunk_tensors
from server.errors import ErrorKind, ServerError
from server.options import Chunking
from server.protocols import kserve, kserve_grpc
from server.registry import ModelState
from server.statistics import ModelStatistics

MODEL = "m"
TEXTS = ["hello", "", "Grüße ✓ 東京", "nul\x00inside", "x" * 70000]


def client_request(inputs, outputs=None, request_id="", timeout=None, parameters=None):
    return _get_inference_request(model_name=MODEL, inputs=inputs, model_version="", request_id=request_id,
                                  outputs=outputs, sequence_id=0, sequence_start=False, sequence_end=False,
                                  priority=0, timeout=timeout, parameters=parameters)


def text_input(texts, shape=None):
    array = np.array(texts, dtype=object)
    array = array.reshape(shape) if shape else array
    tensor = grpcclient.InferInput("TEXT", list(array.shape), "BYTES")
    tensor.set_data_from_numpy(array)
    return tensor


def parse(request, max_inputs=2048):
    return kserve_grpc.parse_infer_request(request, max_inputs=max_inputs, max_input_chars=2_000_000)


def rejected(request, words, kind=ErrorKind.INVALID_INPUT, max_inputs=2048):
    with pytest.raises(ServerError) as info:
        parse(request, max_inputs)
    assert info.value.kind is kind and words in info.value.message, info.value.message


@pytest.mark.parametrize("shape", [None, (len(TEXTS), 1)])
def test_raw_text_from_tritonclient_parses_like_http(shape):
    parsed = parse(client_request([text_input(TEXTS, shape)], request_id="r1", timeout=2500))
    assert parsed.texts == TEXTS and parsed.id == "r1" and parsed.timeout_us == 2500
    assert parsed.outputs == [kserve.RequestedOutput(kserve.OUTPUT, True)]


def test_text_as_bytes_contents():
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="TEXT", datatype="BYTES", shape=[2, 1]).contents.bytes_contents.extend([b"a", b"b"])
    assert parse(request).texts == ["a", "b"]


def test_ids_raw_and_as_int64_contents():
    ids = np.array([[101, 7, 102, 0], [101, 8, 9, 102]], dtype=np.int64)
    mask = (ids != 0).astype(np.int64)
    raw = []
    for name, array in (("input_ids", ids), ("attention_mask", mask)):
        tensor = grpcclient.InferInput(name, list(array.shape), "INT64")
        tensor.set_data_from_numpy(array)
        raw.append(tensor)
    parsed = parse(client_request(raw))
    assert (parsed.input_ids == ids).all() and (parsed.attention_mask == mask).all()
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    for name, array in (("input_ids", ids), ("attention_mask", mask)):
        request.inputs.add(name=name, datatype="INT64", shape=[2, 4]).contents.int64_contents.extend(
            array.ravel().tolist())
    parsed = parse(request)
    assert (parsed.input_ids == ids).all() and (parsed.attention_mask == mask).all()


def test_bad_requests_get_the_http_messages():
    rejected(client_request([text_input(["a", "b"], (1, 2))]), "Expected [-1] or [-1,1], got [1, 2]")
    rejected(client_request([text_input(["a"] * 3)]), "at most 2", max_inputs=2)
    empty = service_pb2.ModelInferRequest(model_name=MODEL)
    empty.inputs.add(name="TEXT", datatype="BYTES", shape=[0, 1])
    rejected(empty, "input 'TEXT' holds no text: send at least one")
    wrong = grpcclient.InferInput("TEXT", [1], "FP32")
    wrong.set_data_from_numpy(np.zeros(1, np.float32))
    rejected(client_request([wrong]), "data-type is 'FP32'")
    rejected(client_request([text_input(["a"])], outputs=[grpcclient.InferRequestedOutput("x")]),
             "unexpected inference output 'x'")
    shared = text_input(["a"])
    shared.set_shared_memory("region", 8)
    rejected(client_request([shared]), "shared memory is not supported", ErrorKind.UNSUPPORTED)
    rejected(client_request([text_input([b"\xff"])]), "not valid UTF-8")
    request = client_request([text_input(["a"])])
    request.raw_input_contents.append(b"extra")
    rejected(request, "expected 1 raw_input_contents")
    request = client_request([text_input(["a"])])
    request.raw_input_contents[0] = b"\x05\x00\x00\x00ab"
    rejected(request, "declares 5 bytes")
    rejected(service_pb2.ModelInferRequest(model_name=MODEL), "'inputs' must be a non-empty list")
    request = client_request([text_input(["a"])])
    request.parameters["timeout"].string_param = "soon"
    rejected(request, "'timeout' must be a non-negative integer")


def test_response_is_read_back_exactly_by_tritonclient():
    vectors = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    response = kserve_grpc.infer_response(model=MODEL, version="1", request_id="id-7",
                                          tensors={kserve.OUTPUT: vectors},
                                          outputs=[kserve.RequestedOutput(kserve.OUTPUT, True)])
    result = grpcclient.InferResult(response)
    got = result.as_numpy(kserve.OUTPUT)
    assert got.dtype == np.float32 and got.shape == (3, 8) and (got == vectors).all()
    assert response.id == "id-7" and response.model_version == "1"


def test_chunk_outputs_are_read_back_exactly_by_tritonclient():
    chunks = [ChunkSet(np.ones((2, 4), np.float32), np.array([[0, 5], [3, 9]])),
              ChunkSet(np.full((1, 4), 2, np.float32), np.array([[0, 2]]))]
    tensors = {kserve.OUTPUT: np.zeros((2, 4), np.float32), **chunk_tensors(chunks, 4)}
    outputs = [kserve.RequestedOutput(name, True) for name in (kserve.OUTPUT, *kserve.CHUNK_OUTPUTS)]
    result = grpcclient.InferResult(kserve_grpc.infer_response(model=MODEL, version="1", request_id=None,
                                                               tensors=tensors, outputs=outputs))
    assert result.as_numpy("chunk_count").dtype == np.int64 and result.as_numpy("chunk_count").tolist() == [[2], [1]]
    assert result.as_numpy("chunk_embedding").shape == (2, 2, 4)
    assert result.as_numpy("chunk_embedding")[1].tolist() == [[2] * 4, [0] * 4]
    assert result.as_numpy("chunk_span")[0].tolist() == [[0, 5], [3, 9]]


def test_request_parameters_become_the_same_options_as_over_http():
    request = client_request([text_input(["a"])])
    for key, value in (("prompt_name", "query"), ("truncation_direction", "Left"), ("chunking", "chunks")):
        request.parameters[key].string_param = value
    request.parameters["chunk_overlap"].int64_param = 4
    parsed = kserve_grpc.parse_infer_request(request, max_inputs=8, max_input_chars=2_000_000)
    assert parsed.options.prompt_name == "query" and parsed.options.truncation_direction == "left"
    assert parsed.options.chunking == Chunking("chunks", 4) and not parsed.outputs_given
    request.parameters["input_type"].string_param = "query"
    rejected(request, "'input_type' must be one of")


def test_statistics_json_becomes_the_grpc_message():
    stats = ModelStatistics(MODEL, 1)
    stats.record_execution(4, 10, 20, 30)
    stats.record_success(100, 5, 10, 20, 30)
    message = kserve_grpc.statistics([stats.as_json()])
    (entry,) = message.model_stats
    assert entry.name == MODEL and entry.version == "1" and entry.inference_count == 4
    assert entry.inference_stats.success.count == 1 and entry.inference_stats.success.ns == 100
    assert [(b.batch_size, b.compute_infer.ns) for b in entry.batch_stats] == [(4, 20)]


def test_repository_index_and_load_parameters():
    rows = [{"name": "a", "version": "1", "state": "READY", "reason": ""},
            {"name": "b", "state": "UNAVAILABLE", "reason": "unloaded"}]
    entries = [ModelState("a", 1, True, ""), ModelState("b", None, False, "unloaded")]
    assert [m.name for m in kserve_grpc.repository_index(entries, False).models] == ["a", "b"]
    assert [m.name for m in kserve_grpc.repository_index(entries, True).models] == ["a"]
    request = service_pb2.RepositoryModelLoadRequest(model_name="a")
    assert kserve_grpc.load_parameters(request) is None
    request.parameters["config"].string_param = "{}"
    with pytest.raises(ServerError) as info:
        kserve.check_load_request(kserve_grpc.load_parameters(request))
    assert info.value.kind is ErrorKind.UNSUPPORTED


def test_element_counts_are_checked_against_the_shape_before_any_element_is_converted(monkeypatch):
    """Issue 14: the parse runs on the event loop, so a message of millions of tiny elements is refused from its
    counts (shape, then elements, then --max-inputs), never by converting them first."""
    converted: list[int] = []
    decode = kserve.decode_texts
    monkeypatch.setattr(kserve, "decode_texts", lambda items: converted.append(len(items)) or decode(items))
    many = 1_000_000
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="TEXT", datatype="BYTES", shape=[1]).contents.bytes_contents.extend([b""] * many)
    rejected(request, f"has {many} elements but its shape [1] needs 1")
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="TEXT", datatype="BYTES", shape=[many]).contents.bytes_contents.extend([b""] * many)
    rejected(request, f"holds {many} texts; at most 2048 are allowed")
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="TEXT", datatype="BYTES", shape=[2, 2]).contents.bytes_contents.extend([b"a"] * 4)
    rejected(request, "Expected [-1] or [-1,1], got [2, 2]")
    assert converted == [4]  # only the request whose counts were right got as far as converting its elements
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="TEXT", datatype="BYTES", shape=[1] * 1000)
    rejected(request, "1000 dimensions")
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="input_ids", datatype="INT64", shape=[1, 4]).contents.int64_contents.extend([1] * many)
    request.inputs.add(name="attention_mask", datatype="INT64", shape=[1, 4]).contents.int64_contents.extend([1] * 4)
    rejected(request, f"has {many} elements but its shape [1, 4] needs 4")


def test_int64_contents_become_arrays_without_a_python_int_per_element():
    """A list of Python ints first cost ~40 bytes per element (+555 MB for a 15 MB message); an int64 array costs 8."""
    import tracemalloc

    count = 1_000_000
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    for name, value in (("input_ids", 1000), ("attention_mask", 1)):
        request.inputs.add(name=name, datatype="INT64", shape=[1, count]).contents.int64_contents.extend(
            np.full(count, value, dtype=np.int64).tolist())
    tracemalloc.start()
    try:
        parsed = parse(request)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert parsed.input_ids.shape == parsed.attention_mask.shape == (1, count)
    assert int(parsed.input_ids.sum()) == 1000 * count and parsed.attention_mask.dtype == np.int64
    assert peak < 3 * count * 8, peak  # the two arrays and some temporaries (a list of Python ints: ~5x)


def test_which_requests_are_parsed_on_the_event_loop():
    """`is_small`: a request within 16 parts, 4096 elements and 64 KiB of data is parsed inline; anything more goes
    to a thread (counts only; nothing is converted to decide)."""
    assert kserve_grpc.is_small(client_request([text_input(["hello", "world"])]))
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="TEXT", datatype="BYTES", shape=[2]).contents.bytes_contents.extend([b"a", b"b"])
    assert kserve_grpc.is_small(request)

    def parameters(params, count):
        for k in range(count):
            params[f"p{k}"].bool_param = True

    cases = {
        "17 inputs": lambda r: [r.inputs.add(name=f"i{k}") for k in range(17)],
        "17 raw contents": lambda r: r.raw_input_contents.extend([b""] * 17),
        "17 outputs": lambda r: [r.outputs.add(name=f"o{k}") for k in range(17)],
        "17 request parameters": lambda r: parameters(r.parameters, 17),
        "4097 elements": lambda r: r.inputs.add(name="input_ids").contents.int64_contents.extend([1] * 4097),
        "4097 tensor parameters": lambda r: parameters(r.inputs.add(name="TEXT").parameters, 4097),
        "4097 output parameters": lambda r: parameters(r.outputs.add(name="o").parameters, 4097),
        "4097 dimensions": lambda r: r.inputs.add(name="TEXT").shape.extend([1] * 4097),
        "64 KiB of text": lambda r: r.inputs.add(name="TEXT").contents.bytes_contents.append(b"a" * (64 * 1024 + 1)),
        "64 KiB of raw data": lambda r: (r.inputs.add(name="TEXT"), r.raw_input_contents.append(b"a" * (64 * 1024 + 1))),
    }
    for name, build in cases.items():
        request = service_pb2.ModelInferRequest(model_name=MODEL)
        build(request)
        assert not kserve_grpc.is_small(request), name


def test_a_repeated_output_is_refused_when_it_is_met():
    request = client_request([text_input(["a"])], outputs=[grpcclient.InferRequestedOutput(kserve.OUTPUT)] * 3)
    rejected(request, "requested more than once")


def test_outputs_without_parameters_and_empty_parameters_take_the_fast_path_to_the_same_result():
    """What a Triton client sends per request (every output named, no parameters) parses as the general path
    does, and a refused output name is refused on every request, not only the first."""
    names = [kserve.OUTPUT, *kserve.CHUNK_OUTPUTS]
    plain = parse(client_request([text_input(["a"])], outputs=[grpcclient.InferRequestedOutput(n) for n in names]))
    assert plain.outputs == [kserve.RequestedOutput(name, True) for name in names]
    assert plain.options == kserve_grpc.options_from_parameters({})
    with_params = parse(client_request([text_input(["a"])], outputs=[
        grpcclient.InferRequestedOutput(n, class_count=0) for n in names], parameters={"unused": 1}))
    assert with_params.outputs == plain.outputs and with_params.options == plain.options
    for _ in range(2):
        rejected(client_request([text_input(["a"])], outputs=[grpcclient.InferRequestedOutput("x")]),
                 "unexpected inference output 'x'")

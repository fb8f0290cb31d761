"""tritonclient (sync and aio) against a real server process serving the exported MiniLM over KServe v2."""

from __future__ import annotations

import asyncio

import numpy as np
import orjson
import pytest
import requests
import tritonclient.http as httpclient
import tritonclient.http.aio as aioclient
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from .repo_copy import link_model
from .serverproc import eventually, start_server

MODEL = "all-MiniLM-L6-v2"
INT8 = MODEL + "-int8"
OUTPUT = "sentence_embedding"
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Grüße aus Köln: naïve café, 東京タワー, emoji ✓",
    "short",
    "A long text that goes past the model's max_seq_length of 256 tokens. " * 40,
]
LONG = "a long sentence that keeps the model busy for a while " * 30


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def host(server) -> str:
    return f"127.0.0.1:{server.port}"


def text_input(texts, shape=None, binary=True) -> httpclient.InferInput:
    array = np.array(texts, dtype=object).reshape(shape or (len(texts), 1))
    tensor = httpclient.InferInput("TEXT", list(array.shape), "BYTES")
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def token_inputs(tokenizer, texts, binary=True) -> list[httpclient.InferInput]:
    encoded = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="np")
    tensors = []
    for name in ("input_ids", "attention_mask", "token_type_ids"):
        array = encoded[name].astype(np.int64)
        tensor = httpclient.InferInput(name, list(array.shape), "INT64")
        tensor.set_data_from_numpy(array, binary_data=binary)
        tensors.append(tensor)
    return tensors


@pytest.fixture(scope="module")
def client(minilm_server):
    with httpclient.InferenceServerClient(host(minilm_server)) as client:
        yield client


@pytest.fixture(scope="module")
def reference(st_minilm):
    return st_minilm.encode(TEXTS, convert_to_numpy=True)


def stats(client, model=MODEL) -> dict:
    (entry,) = client.get_inference_statistics(model)["model_stats"]
    return entry


def test_health_and_readiness(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL) and client.is_model_ready(MODEL, "1") and client.is_model_ready(INT8)
    assert not client.is_model_ready("no-such-model") and not client.is_model_ready(MODEL, "2")


def assert_metadata_matches_config(metadata: dict, config: dict) -> None:
    """Triton's rule: metadata lists the config's inputs and outputs, shape = [-1] + dims when batching."""
    batch = [-1] if config["max_batch_size"] > 0 else []
    for key, config_key in (("inputs", "input"), ("outputs", "output")):
        expected = [(t["name"], "BYTES" if t["data_type"] == "TYPE_STRING" else t["data_type"][5:],
                     batch + t["dims"]) for t in config[config_key]]
        assert [(t["name"], t["datatype"], t["shape"]) for t in metadata[key]] == expected


def test_server_and_model_metadata(client):
    server = client.get_server_metadata()
    assert server["name"] == "onnx-embedding-server" and server["version"]
    extensions = set(server["extensions"])
    assert {"binary_tensor_data", "statistics", "model_repository", "model_configuration"} <= extensions
    for version in ("", "1"):
        metadata = client.get_model_metadata(MODEL, version)
        assert metadata["name"] == MODEL and metadata["versions"] == ["1"]
        assert metadata["platform"] == "onnxruntime_onnx"
        inputs = {i["name"]: (i["datatype"], i["shape"]) for i in metadata["inputs"]}
        assert inputs == {"TEXT": ("BYTES", [-1, 1]), "input_ids": ("INT64", [-1, -1]),
                          "attention_mask": ("INT64", [-1, -1])}
        assert metadata["outputs"] == [{"name": OUTPUT, "datatype": "FP32", "shape": [-1, 384]},
                                       {"name": "chunk_embedding", "datatype": "FP32", "shape": [-1, -1, 384]},
                                       {"name": "chunk_count", "datatype": "INT64", "shape": [-1, 1]},
                                       {"name": "chunk_span", "datatype": "INT64", "shape": [-1, -1, 2]}]
        assert_metadata_matches_config(metadata, client.get_model_config(MODEL, version))
    with pytest.raises(InferenceServerException) as info:
        client.get_model_metadata("no-such-model")
    assert info.value.status() == "404" and "no-such-model" in info.value.message()


def test_model_config_is_the_repository_config(client, minilm_repository):
    config = client.get_model_config(MODEL)
    assert config["name"] == MODEL and config["platform"] == "onnxruntime_onnx"
    assert config["max_batch_size"] > 0
    assert [(i["name"], i["optional"]) for i in config["input"]] == [
        ("TEXT", False), ("input_ids", True), ("attention_mask", True)]
    assert [o["name"] for o in config["output"]] == [OUTPUT, "chunk_embedding", "chunk_count", "chunk_span"]
    assert config["parameters"]["max_seq_length"] == {"string_value": "256"}
    assert client.get_model_config(MODEL, "1") == config


def test_model_config_dims_are_numbers(client):
    config = client.get_model_config(MODEL)
    assert config["output"][0]["dims"] == [384] and config["input"][0]["dims"] == [1]
    assert config["input"][1]["dims"] == [-1] and config["input"][0]["data_type"] == "TYPE_STRING"


LEGACY_INPUTS = """input {
  name: "input_ids"
  data_type: TYPE_INT64
  dims: -1
}
input {
  name: "attention_mask"
  data_type: TYPE_INT64
  dims: -1
}
"""


def test_a_repository_exported_before_text_was_listed_is_served_conforming(tmp_path, minilm_repository):
    target = link_model(minilm_repository, tmp_path, MODEL)
    text = (target / "config.pbtxt").read_text()
    start, end = text.index("input {"), text.index("output {")
    (target / "config.pbtxt").write_text(text[:start] + LEGACY_INPUTS + text[end:])
    assert "TEXT" not in (target / "config.pbtxt").read_text()
    server = start_server(tmp_path)
    try:
        with httpclient.InferenceServerClient(host(server)) as legacy:
            config = legacy.get_model_config(MODEL)
            assert [(i["name"], i["optional"]) for i in config["input"]] == [
                ("TEXT", False), ("input_ids", True), ("attention_mask", True)]
            assert_metadata_matches_config(legacy.get_model_metadata(MODEL), config)
            result = legacy.infer(MODEL, [text_input(["hello"], shape=(1, 1))])
            assert result.as_numpy(OUTPUT).shape == (1, 384)
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("binary_in", [True, False])
@pytest.mark.parametrize("binary_out", [True, False])
def test_text_infer_matches_sentence_transformers(client, reference, binary_in, binary_out):
    outputs = [httpclient.InferRequestedOutput(OUTPUT, binary_data=binary_out)]
    result = client.infer(MODEL, [text_input(TEXTS, binary=binary_in)], outputs=outputs, request_id="req-1")
    vectors = result.as_numpy(OUTPUT)
    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), 384)
    assert cosines(vectors, reference).min() >= 0.99999
    response = result.get_response()
    assert response["id"] == "req-1" and response["model_name"] == MODEL and response["model_version"] == "1"
    assert ("data" in response["outputs"][0]) != binary_out


def test_flat_shape_default_outputs_and_versioned_path(client, reference):
    result = client.infer(MODEL, [text_input(TEXTS[:2], shape=(2,))], model_version="1")
    assert result.get_output(OUTPUT)["parameters"]["binary_data_size"] == 2 * 384 * 4
    assert cosines(result.as_numpy(OUTPUT), reference[:2]).min() >= 0.99999


@pytest.mark.parametrize("binary", [True, False])
def test_token_id_infer_matches_sentence_transformers(client, reference, st_minilm, binary):
    result = client.infer(MODEL, token_inputs(st_minilm.tokenizer, TEXTS, binary))
    assert cosines(result.as_numpy(OUTPUT), reference).min() >= 0.99999


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_request_bodies_are_accepted(client, reference, algorithm):
    result = client.infer(MODEL, [text_input(TEXTS)], request_compression_algorithm=algorithm)
    assert cosines(result.as_numpy(OUTPUT), reference).min() >= 0.99999


def test_statistics_move_by_exactly_the_requests_made(client):
    before, int8_before = stats(client), stats(client, INT8)
    sizes = [1, 3, 2]
    for size in sizes:
        client.infer(MODEL, [text_input(TEXTS[:size])])
    with pytest.raises(InferenceServerException):
        client.infer(MODEL, [text_input(["x"])], outputs=[httpclient.InferRequestedOutput("nope")])
    after = stats(client)
    success = after["inference_stats"]["success"]["count"] - before["inference_stats"]["success"]["count"]
    queue = after["inference_stats"]["queue"]["count"] - before["inference_stats"]["queue"]["count"]
    assert success == queue == len(sizes)
    assert after["inference_count"] - before["inference_count"] == sum(sizes)
    assert after["inference_stats"]["fail"] == before["inference_stats"]["fail"]
    assert 1 <= after["execution_count"] - before["execution_count"] <= sum(sizes)
    assert after["last_inference"] >= before["last_inference"] > 0
    assert sum(b["compute_infer"]["count"] for b in after["batch_stats"]) == after["execution_count"]
    assert after["version"] == "1" and stats(client, INT8) == int8_before
    everything = client.get_inference_statistics()["model_stats"]
    assert {entry["name"] for entry in everything} == {MODEL, INT8}


def test_repository_index_lists_every_model_ready(client):
    index = client.get_model_repository_index()
    assert {(row["name"], row["state"]) for row in index} == {(MODEL, "READY"), (INT8, "READY")}
    assert all(row["version"] == "1" for row in index)


async def test_aio_client_end_to_end(minilm_server, reference, st_minilm):
    async with aioclient.InferenceServerClient(host(minilm_server)) as client:
        assert await client.is_server_live() and await client.is_server_ready()
        assert await client.is_model_ready(MODEL) and not await client.is_model_ready("no-such-model")
        assert (await client.get_model_metadata(MODEL))["outputs"][0]["shape"] == [-1, 384]
        assert (await client.get_model_config(MODEL))["name"] == MODEL
        before = (await client.get_inference_statistics(MODEL))["model_stats"][0]["inference_count"]
        results = await asyncio.gather(
            client.infer(MODEL, [text_input(TEXTS, binary=False)],
                         outputs=[httpclient.InferRequestedOutput(OUTPUT, binary_data=False)], request_id="a"),
            client.infer(MODEL, [text_input(TEXTS)]),
            client.infer(MODEL, token_inputs(st_minilm.tokenizer, TEXTS)),
        )
        for result in results:
            assert cosines(result.as_numpy(OUTPUT), reference).min() >= 0.99999
        assert results[0].get_response()["id"] == "a"
        after = (await client.get_inference_statistics(MODEL))["model_stats"][0]["inference_count"]
        assert after - before == 3 * len(TEXTS)
        assert {row["name"] for row in await client.get_model_repository_index()} == {MODEL, INT8}
        with pytest.raises(InferenceServerException) as info:
            await client.infer(MODEL, [text_input(["x"])],
                               outputs=[httpclient.InferRequestedOutput("EMBEDDING")])
        assert info.value.status() == "400"
        assert info.value.message() == f"unexpected inference output 'EMBEDDING' for model '{MODEL}'"


def raw_infer(server, body: bytes, header_length: int | None = None, model: str = MODEL) -> requests.Response:
    headers = {} if header_length is None else {"Inference-Header-Content-Length": str(header_length)}
    return requests.post(f"{server.url}/v2/models/{model}/infer", data=body, headers=headers, timeout=30)


def binary_text_request(payload: bytes, declared: int) -> tuple[bytes, int]:
    header = orjson.dumps({"inputs": [{"name": "TEXT", "shape": [1], "datatype": "BYTES",
                                       "parameters": {"binary_data_size": declared}}]})
    return header + payload, len(header)


TEXT_JSON = {"name": "TEXT", "shape": [1], "datatype": "BYTES", "data": ["hello"]}


@pytest.mark.parametrize("case, status, words", [
    ("prefix overrun", 400, "declares 50 bytes but only 5 remain"),
    ("header longer than body", 400, "Inference-Header-Content-Length is 100000"),
    ("bytes after the tensors", 400, "bytes after the inputs' binary data"),
    ("wrong datatype", 400, "data-type is 'FP32', but model"),
    ("wrong shape", 400, "unexpected shape for input 'TEXT'"),
    ("unknown output", 400, f"unexpected inference output 'EMBEDDING' for model '{MODEL}'"),
    ("unknown model", 404, "Request for unknown model: 'no-such-model'"),
    ("unknown version", 404, "version 7"),
    ("not json", 400, "failed to parse the request JSON"),
    ("shared memory", 501, "shared memory is not supported"),
])
def test_bad_requests_get_triton_errors_and_the_server_keeps_serving(minilm_server, case, status, words):
    model = MODEL
    if case == "prefix overrun":
        body, length = binary_text_request(b"\x32\x00\x00\x00hello", 9)
    elif case == "header longer than body":
        body, length = orjson.dumps({"inputs": [TEXT_JSON]}), 100000
    elif case == "bytes after the tensors":
        body, length = binary_text_request(b"\x02\x00\x00\x00hiEXTRA", 6)
    elif case == "not json":
        body, length = b"{inputs: nope}", None
    else:
        request = {"inputs": [TEXT_JSON]}
        if case == "wrong datatype":
            request["inputs"] = [{**TEXT_JSON, "datatype": "FP32"}]
        elif case == "wrong shape":
            request["inputs"] = [{**TEXT_JSON, "shape": [1, 2]}]
        elif case == "unknown output":
            request["outputs"] = [{"name": "EMBEDDING"}]
        elif case == "shared memory":
            shared = {"shared_memory_region": "r", "shared_memory_byte_size": 9}
            request["inputs"] = [{**TEXT_JSON, "parameters": shared}]
        model = {"unknown model": "no-such-model", "unknown version": f"{MODEL}/versions/7"}.get(case, MODEL)
        body, length = orjson.dumps(request), None
    response = raw_infer(minilm_server, body, length, model)
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    assert set(response.json()) == {"error"} and words in response.json()["error"]
    ok = raw_infer(minilm_server, orjson.dumps({"inputs": [TEXT_JSON]}))
    assert ok.status_code == 200 and len(ok.json()["outputs"][0]["data"]) == 384


def test_unsupported_and_wrong_method_routes(client, minilm_server):
    with pytest.raises(InferenceServerException) as info:
        client.get_system_shared_memory_status()
    assert info.value.status() == "501"
    response = requests.get(f"{minilm_server.url}/v2/models/{MODEL}/infer", timeout=10)
    assert response.status_code == 405 and response.json() == {"error": "Method Not Allowed"}
    response = requests.post(f"{minilm_server.url}/v2/repository/other/index", timeout=10)
    assert response.status_code == 501 and "repository_name" in response.json()["error"]


@pytest.fixture(scope="module")
def control_server(tmp_path_factory, minilm_repository):
    repository = tmp_path_factory.mktemp("control-repo")
    link_model(minilm_repository, repository, MODEL)
    server = start_server(repository, "--max-batch-size", "8", "--model-control", "true")
    yield server
    assert server.stop() == 0


async def pending(session_url: str) -> float:
    text = await asyncio.to_thread(lambda: requests.get(session_url + "/metrics", timeout=10).text)
    for family in text_string_to_metric_families(text):
        if family.name == "nv_inference_pending_request_count":
            return sum(s.value for s in family.samples if s.labels["model"] == MODEL)
    return 0.0


async def test_unload_lets_in_flight_requests_finish_then_load_restores_the_model(control_server, st_minilm):
    expected = st_minilm.encode([LONG], convert_to_numpy=True)
    async with aioclient.InferenceServerClient(host(control_server)) as client:
        in_flight = asyncio.create_task(client.infer(MODEL, [text_input([LONG] * 64)]))
        await eventually(lambda: pending(control_server.url), "the request to be in flight", 30)
        assert not in_flight.done()
        await client.unload_model(MODEL)
        vectors = (await in_flight).as_numpy(OUTPUT)
        assert vectors.shape == (64, 384) and cosines(vectors, np.repeat(expected, 64, 0)).min() >= 0.99999

        assert not await client.is_model_ready(MODEL)
        with pytest.raises(InferenceServerException) as info:
            await client.infer(MODEL, [text_input(["after unload"])])
        assert info.value.status().startswith("4")
        assert await client.get_model_repository_index() == [
            {"name": MODEL, "state": "UNAVAILABLE", "reason": "unloaded"}]

        await client.load_model(MODEL)
        assert await client.is_model_ready(MODEL)
        result = await client.infer(MODEL, [text_input([LONG])])
        assert cosines(result.as_numpy(OUTPUT), expected).min() >= 0.99999
        assert (await client.get_model_repository_index())[0]["state"] == "READY"


def test_load_rejects_unknown_and_traversing_names(control_server):
    with httpclient.InferenceServerClient(host(control_server)) as client:
        with pytest.raises(InferenceServerException) as info:
            client.load_model("no-such-model")
        assert info.value.status() == "404"
        with pytest.raises(InferenceServerException) as info:
            client.load_model("..")
        assert info.value.status() == "400" and "invalid model name" in info.value.message()
        with pytest.raises(InferenceServerException) as info:
            client.load_model(MODEL, config='{"max_batch_size": 1}')
        assert info.value.status() == "501"
        assert client.is_model_ready(MODEL)
    response = requests.post(f"{control_server.url}/v2/repository/models/..%2F..%2Fetc/load", timeout=10)
    assert 400 <= response.status_code < 500 and "error" in response.json()


def test_model_control_can_be_disabled(tmp_path, minilm_repository):
    link_model(minilm_repository, tmp_path, MODEL)
    server = start_server(tmp_path, "--model-control", "false")
    try:
        with httpclient.InferenceServerClient(host(server)) as client:
            for call in (client.unload_model, client.load_model):
                with pytest.raises(InferenceServerException) as info:
                    call(MODEL)
                assert info.value.status() == "400" and "not allowed" in info.value.message()
            assert client.is_model_ready(MODEL)
            assert client.get_model_repository_index()[0]["state"] == "READY"
    finally:
        assert server.stop() == 0

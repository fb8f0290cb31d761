"""tritonclient.grpc (sync, aio, streaming) and grpc.health.v1 against a real server process, beside HTTP."""

from __future__ import annotations

import asyncio
import queue
import signal

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
import tritonclient.http as httpclient
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from .repo_copy import link_model
from .serverproc import http_status, start_server
from .test_kserve import LONG, MODEL, OUTPUT, TEXTS, assert_metadata_matches_config, cosines, pending

KEY = "s3cret"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def grpc_url(server) -> str:
    return f"127.0.0.1:{server.grpc_port}"


def text_input(texts, shape=None) -> grpcclient.InferInput:
    array = np.array(texts, dtype=object).reshape(shape or (len(texts), 1))
    tensor = grpcclient.InferInput("TEXT", list(array.shape), "BYTES")
    tensor.set_data_from_numpy(array)
    return tensor


def http_vectors(server, texts) -> np.ndarray:
    tensor = httpclient.InferInput("TEXT", [len(texts), 1], "BYTES")
    tensor.set_data_from_numpy(np.array(texts, dtype=object).reshape(-1, 1))
    with httpclient.InferenceServerClient(f"127.0.0.1:{server.port}") as client:
        return client.infer(MODEL, [tensor]).as_numpy(OUTPUT)


@pytest.fixture(scope="module")
def client(minilm_server):
    with grpcclient.InferenceServerClient(grpc_url(minilm_server)) as client:
        yield client


@pytest.fixture(scope="module")
def stub(minilm_server):
    with grpc.insecure_channel(grpc_url(minilm_server)) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture(scope="module")
def reference(st_minilm):
    return st_minilm.encode(TEXTS, convert_to_numpy=True)


def test_server_rpcs(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL) and client.is_model_ready(MODEL, "1")
    assert not client.is_model_ready("no-such-model") and not client.is_model_ready(MODEL, "7")
    metadata = client.get_server_metadata(as_json=True)
    assert metadata["name"] == "onnx-embedding-server" and "binary_tensor_data" in metadata["extensions"]


def test_metadata_and_config_equal_http_and_agree(client, minilm_server):
    with httpclient.InferenceServerClient(f"127.0.0.1:{minilm_server.port}") as http:
        for version in ("", "1"):
            metadata = client.get_model_metadata(MODEL, version)
            assert metadata == json_format.ParseDict(http.get_model_metadata(MODEL, version),
                                                     service_pb2.ModelMetadataResponse())
            config = client.get_model_config(MODEL, version).config
            assert config == json_format.ParseDict(http.get_model_config(MODEL, version),
                                                   service_pb2.ModelConfigResponse().config)
            assert_metadata_matches_config(http.get_model_metadata(MODEL, version),
                                           http.get_model_config(MODEL, version))
    assert [(i.name, i.datatype, list(i.shape)) for i in metadata.inputs][0] == ("TEXT", "BYTES", [-1, 1])
    assert [(i.name, i.optional) for i in config.input] == [
        ("TEXT", False), ("input_ids", True), ("attention_mask", True)]


@pytest.mark.parametrize("shape", [None, (len(TEXTS),)])
def test_text_infer_equals_http_bit_for_bit(client, minilm_server, reference, shape):
    result = client.infer(MODEL, [text_input(TEXTS, shape)], request_id="g-1")
    vectors = result.as_numpy(OUTPUT)
    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), 384)
    assert np.array_equal(vectors, http_vectors(minilm_server, TEXTS))
    assert cosines(vectors, reference).min() >= 0.99999
    response = result.get_response()
    assert response.id == "g-1" and response.model_name == MODEL and response.model_version == "1"
    assert len(response.raw_output_contents) == 1 and not response.outputs[0].HasField("contents")


def test_text_as_bytes_contents_and_ids_as_int64_contents(stub, minilm_server, st_minilm):
    request = service_pb2.ModelInferRequest(model_name=MODEL, id="contents")
    tensor = request.inputs.add(name="TEXT", datatype="BYTES", shape=[len(TEXTS), 1])
    tensor.contents.bytes_contents.extend(text.encode() for text in TEXTS)
    response = stub.ModelInfer(request)
    vectors = np.frombuffer(response.raw_output_contents[0], "<f4").reshape(list(response.outputs[0].shape))
    assert response.id == "contents" and np.array_equal(vectors, http_vectors(minilm_server, TEXTS))

    encoded = st_minilm.tokenizer(TEXTS[:2], padding=True, return_tensors="np")
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    for name in ("input_ids", "attention_mask"):
        array = encoded[name].astype(np.int64)
        request.inputs.add(name=name, datatype="INT64", shape=list(array.shape)).contents.int64_contents.extend(
            array.ravel().tolist())
    ids = np.frombuffer(stub.ModelInfer(request).raw_output_contents[0], "<f4").reshape(2, 384)
    assert cosines(ids, st_minilm.encode(TEXTS[:2])).min() >= 0.99999


def test_raw_int64_ids_from_tritonclient(client, st_minilm):
    encoded = st_minilm.tokenizer(TEXTS, padding=True, truncation=True, max_length=256, return_tensors="np")
    inputs = []
    for name in ("input_ids", "attention_mask", "token_type_ids"):
        tensor = grpcclient.InferInput(name, list(encoded[name].shape), "INT64")
        tensor.set_data_from_numpy(encoded[name].astype(np.int64))
        inputs.append(tensor)
    vectors = client.infer(MODEL, inputs).as_numpy(OUTPUT)
    assert cosines(vectors, st_minilm.encode(TEXTS)).min() >= 0.99999


def test_statistics_and_repository_index(client):
    before = client.get_inference_statistics(MODEL).model_stats[0].inference_stats.success.count
    client.infer(MODEL, [text_input(["count me"])])
    stats = client.get_inference_statistics(MODEL, as_json=True)["model_stats"]
    assert len(stats) == 1 and int(stats[0]["inference_stats"]["success"]["count"]) == before + 1
    assert {s.name for s in client.get_inference_statistics().model_stats} >= {MODEL}
    index = client.get_model_repository_index(as_json=True)["models"]
    assert {"name": MODEL, "version": "1", "state": "READY"} in index


def grpc_error(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        call()
    return info.value


@pytest.mark.parametrize("case, status, words", [
    ("unknown model", "StatusCode.NOT_FOUND", "Request for unknown model: 'no-such-model'"),
    ("unknown version", "StatusCode.NOT_FOUND", "version 7"),
    ("wrong datatype", "StatusCode.INVALID_ARGUMENT", "data-type is 'FP32'"),
    ("wrong shape", "StatusCode.INVALID_ARGUMENT", "unexpected shape for input 'TEXT'"),
    ("unknown output", "StatusCode.INVALID_ARGUMENT", "unexpected inference output 'EMBEDDING'"),
    ("bad utf-8", "StatusCode.INVALID_ARGUMENT", "not valid UTF-8"),
    ("shared memory", "StatusCode.UNIMPLEMENTED", "shared memory is not supported"),
])
def test_error_table(client, case, status, words):
    model, version, outputs = MODEL, "", None
    tensor = text_input(["fine"])
    if case == "unknown model":
        model = "no-such-model"
    elif case == "unknown version":
        version = "7"
    elif case == "wrong datatype":
        tensor = grpcclient.InferInput("TEXT", [1], "FP32")
        tensor.set_data_from_numpy(np.zeros(1, np.float32))
    elif case == "wrong shape":
        tensor = text_input(["a", "b"], (1, 2))
    elif case == "unknown output":
        outputs = [grpcclient.InferRequestedOutput("EMBEDDING")]
    elif case == "bad utf-8":
        tensor = text_input([b"\xff\xfe"])
    elif case == "shared memory":
        tensor.set_shared_memory("region", 16)
    error = grpc_error(lambda: client.infer(model, [tensor], model_version=version, outputs=outputs))
    assert error.status() == status and words in error.message()
    assert client.infer(MODEL, [text_input(["still serving"])]).as_numpy(OUTPUT).shape == (1, 384)


def test_shared_memory_rpcs_are_unimplemented_with_a_reason(client):
    for call in (client.get_system_shared_memory_status, client.get_cuda_shared_memory_status,
                 lambda: client.unregister_system_shared_memory("r")):
        error = grpc_error(call)
        assert error.status() == "StatusCode.UNIMPLEMENTED" and "shared memory is not supported" in error.message()


def test_trace_and_log_setting_rpcs_are_unimplemented_without_shared_memory_advice(client):
    for call, words in ((client.get_trace_settings, "trace setting is not supported"),
                        (client.get_log_settings, "--log-level")):
        error = grpc_error(call)
        assert error.status() == "StatusCode.UNIMPLEMENTED" and words in error.message()
        assert "send tensors" not in error.message()


def test_stream_answers_every_request_with_its_id_and_errors_in_band(client, minilm_server):
    responses: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: responses.put((result, error)))
    try:
        for index, text in enumerate(TEXTS):
            client.async_stream_infer(MODEL, [text_input([text])], request_id=f"s-{index}")
        client.async_stream_infer("no-such-model", [text_input(["x"])], request_id="s-bad")
        answers = [responses.get(timeout=60) for _ in range(len(TEXTS) + 1)]
    finally:
        client.stop_stream()
    errors = [error for result, error in answers if error is not None]
    assert len(errors) == 1 and "no-such-model" in errors[0].message()
    vectors = {result.get_response().id: result.as_numpy(OUTPUT) for result, error in answers if error is None}
    assert sorted(vectors) == [f"s-{index}" for index in range(len(TEXTS))]
    # stream requests share batches (so padding, so the last bits may differ from a lone request's)
    streamed = np.concatenate([vectors[f"s-{index}"] for index in range(len(TEXTS))])
    assert cosines(streamed, http_vectors(minilm_server, TEXTS)).min() >= 0.99999


async def test_aio_client_and_aio_stream(minilm_server, reference):
    async with grpcaio.InferenceServerClient(grpc_url(minilm_server)) as client:
        assert await client.is_server_ready()
        assert (await client.get_model_metadata(MODEL, as_json=True))["outputs"][0]["shape"] == ["-1", "384"]
        results = await asyncio.gather(*(client.infer(MODEL, [text_input([text])]) for text in TEXTS))
        vectors = np.concatenate([result.as_numpy(OUTPUT) for result in results])
        assert cosines(vectors, reference).min() >= 0.99999

        async def requests():
            for index, text in enumerate(TEXTS):
                yield {"model_name": MODEL, "inputs": [text_input([text])], "request_id": f"a-{index}"}

        ids = []
        async for result, error in client.stream_infer(requests()):
            assert error is None
            ids.append(result.get_response().id)
            if len(ids) == len(TEXTS):
                break
        assert sorted(ids) == [f"a-{index}" for index in range(len(TEXTS))]


def health_check(channel, service: str) -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                     timeout=10).status


def test_health_service_names(minilm_server):
    with grpc.insecure_channel(grpc_url(minilm_server)) as channel:
        for service in ("", "inference.GRPCInferenceService", MODEL, MODEL + "-int8"):
            assert health_check(channel, service) == SERVING, service
        with pytest.raises(grpc.RpcError) as info:
            health_check(channel, "no-such-model")
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.fixture(scope="module")
def guarded_server(tmp_path_factory, minilm_repository):
    """API key, a small message limit and few inputs per request; model control on."""
    repository = tmp_path_factory.mktemp("grpc-repo")
    link_model(minilm_repository, repository, MODEL)
    server = start_server(repository, "--max-request-bytes", "65536", "--max-inputs", "8",
                          "--model-control", "true", env={"OES_API_KEY": KEY})
    yield server
    assert server.stop() == 0


AUTH = {"authorization": f"Bearer {KEY}"}


def test_api_key_guards_every_rpc_but_liveness_readiness_and_health(guarded_server):
    with grpcclient.InferenceServerClient(grpc_url(guarded_server)) as client:
        assert client.is_server_live() and client.is_server_ready()
        for call in (lambda h: client.get_model_metadata(MODEL, headers=h),
                     lambda h: client.infer(MODEL, [text_input(["x"])], headers=h),
                     lambda h: client.get_model_repository_index(headers=h)):
            error = grpc_error(lambda: call(None))
            assert error.status() == "StatusCode.UNAUTHENTICATED" and "API key" in error.message()
            error = grpc_error(lambda: call({"authorization": "Bearer wrong"}))
            assert error.status() == "StatusCode.UNAUTHENTICATED"
            call(AUTH)
    with grpc.insecure_channel(grpc_url(guarded_server)) as channel:
        assert health_check(channel, "") == SERVING


def test_limits_are_the_http_limits(guarded_server):
    with grpcclient.InferenceServerClient(grpc_url(guarded_server)) as client:
        error = grpc_error(lambda: client.infer(MODEL, [text_input(["x"] * 9)], headers=AUTH))
        assert error.status() == "StatusCode.INVALID_ARGUMENT" and "at most 8" in error.message()
        error = grpc_error(lambda: client.infer(MODEL, [text_input(["x" * 70000])], headers=AUTH))
        assert error.status() == "StatusCode.RESOURCE_EXHAUSTED"
        assert client.infer(MODEL, [text_input(["x"] * 8)], headers=AUTH).as_numpy(OUTPUT).shape == (8, 384)


def test_unload_and_load_follow_model_control_and_health(guarded_server):
    with grpcclient.InferenceServerClient(grpc_url(guarded_server)) as client, \
            grpc.insecure_channel(grpc_url(guarded_server)) as channel:
        client.unload_model(MODEL, headers=AUTH)
        assert not client.is_model_ready(MODEL, headers=AUTH)
        assert health_check(channel, MODEL) == NOT_SERVING
        rows = client.get_model_repository_index(headers=AUTH, as_json=True)["models"]
        assert {"name": MODEL, "state": "UNAVAILABLE", "reason": "unloaded"} in rows
        error = grpc_error(lambda: client.infer(MODEL, [text_input(["x"])], headers=AUTH))
        assert error.status() == "StatusCode.NOT_FOUND"
        error = grpc_error(lambda: client.load_model("../etc", headers=AUTH))
        assert error.status() == "StatusCode.INVALID_ARGUMENT"
        error = grpc_error(lambda: client.load_model(MODEL, headers=AUTH, config='{"max_batch_size": 1}'))
        assert error.status() == "StatusCode.UNIMPLEMENTED"
        client.load_model(MODEL, headers=AUTH)
        assert client.is_model_ready(MODEL, headers=AUTH) and health_check(channel, MODEL) == SERVING


def success_count(server) -> float:
    text = requests.get(server.url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}, timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("nv_inference_request_success{") and f'model="{MODEL}"' in line)


def test_a_grpc_reload_keeps_the_metrics_counting_as_over_http(guarded_server):
    """Issue 14: gRPC's RepositoryModelLoad retires the replaced instance's statistics like HTTP's /load."""
    with grpcclient.InferenceServerClient(grpc_url(guarded_server)) as client:
        for _ in range(3):
            client.infer(MODEL, [text_input(["counted before the reload"])], headers=AUTH)
        before = success_count(guarded_server)
        assert before >= 3
        client.load_model(MODEL, headers=AUTH)
        assert success_count(guarded_server) == before
        client.infer(MODEL, [text_input(["and after it"])], headers=AUTH)
        assert success_count(guarded_server) == before + 1


def test_model_control_off_refuses_load_and_unload_and_grpc_can_be_off(tmp_path, minilm_repository):
    link_model(minilm_repository, tmp_path, MODEL)
    server = start_server(tmp_path, "--model-control", "false", "--grpc-port", "0")
    try:
        with grpcclient.InferenceServerClient(grpc_url(server)) as client:
            for call in (client.unload_model, client.load_model):
                error = grpc_error(lambda: call(MODEL))
                assert error.status() == "StatusCode.INVALID_ARGUMENT" and "--model-control" in error.message()
            assert client.is_model_ready(MODEL)
    finally:
        assert server.stop() == 0
    off = start_server(tmp_path, "--grpc", "false")
    try:
        assert "gRPC: listening" not in off.log()
    finally:
        assert off.stop() == 0


async def test_sigterm_drains_grpc_calls_in_flight(tmp_path, minilm_repository, st_minilm):
    link_model(minilm_repository, tmp_path, MODEL)
    server = start_server(tmp_path)
    try:
        expected = st_minilm.encode([LONG], convert_to_numpy=True)
        async with grpcaio.InferenceServerClient(grpc_url(server)) as client:
            channel = grpc.aio.insecure_channel(grpc_url(server))
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
            assert (await watch.read()).status == SERVING
            calls = [asyncio.create_task(client.infer(MODEL, [text_input([LONG] * 16)])) for _ in range(6)]
            deadline = asyncio.get_running_loop().time() + 60
            while await pending(server.url) < 2:
                assert asyncio.get_running_loop().time() < deadline, "the calls never reached the queue"
                await asyncio.sleep(0.05)
            server.process.send_signal(signal.SIGTERM)
            # one drain for both protocols: with only gRPC calls in flight, HTTP's listener stays open
            # (readiness 503)
            ready = f"{server.url}/v2/health/ready"
            while (status := await asyncio.to_thread(http_status, ready)) == 200:
                assert asyncio.get_running_loop().time() < deadline, "SIGTERM never turned readiness 503"
                await asyncio.sleep(0.02)
            assert status == 503 and not all(call.done() for call in calls)
            assert (await asyncio.wait_for(watch.read(), 30)).status == NOT_SERVING
            results = await asyncio.wait_for(asyncio.gather(*calls), 120)
            await channel.close()
        for result in results:
            assert cosines(result.as_numpy(OUTPUT), np.repeat(expected, 16, axis=0)).min() >= 0.9999
        assert server.process.wait(60) == 0
        assert "cutting them" not in server.log()
    finally:
        if server.process.poll() is None:  # an assertion failed before the drain ended
            server.stop(signal.SIGKILL)


async def test_a_client_that_leaves_a_stream_mid_flight_costs_the_server_nothing(minilm_server):
    keep_open = asyncio.Event()
    log_start = len(minilm_server.log())

    async def requests():
        for index in range(6):
            yield {"model_name": MODEL, "inputs": [text_input([LONG] * 16)], "request_id": f"c-{index}"}
        await keep_open.wait()

    async with grpcaio.InferenceServerClient(grpc_url(minilm_server)) as client:
        responses = client.stream_infer(requests())
        reader = asyncio.create_task(anext(responses))
        deadline = asyncio.get_running_loop().time() + 60
        while await pending(minilm_server.url) < 1:
            assert asyncio.get_running_loop().time() < deadline, "the stream's requests never reached the queue"
            await asyncio.sleep(0.05)
        reader.cancel()
    # the channel is closed with requests queued or running: they are dropped, the server goes on
    deadline = asyncio.get_running_loop().time() + 120
    while await pending(minilm_server.url) > 0:
        assert asyncio.get_running_loop().time() < deadline, "abandoned stream requests stayed pending"
        await asyncio.sleep(0.1)
    async with grpcaio.InferenceServerClient(grpc_url(minilm_server)) as client:
        result = await client.infer(MODEL, [text_input(["after the stream"])])
        assert result.as_numpy(OUTPUT).shape == (1, 384) and await client.is_server_live()
    assert "Traceback" not in minilm_server.log()[log_start:]


def test_the_response_bound_holds_over_grpc_before_the_chunk_tensors_are_built(minilm_repository, tmp_path):
    """--max-response-bytes applies to gRPC as to HTTP, and to the zero-padded chunk outputs before they are
    allocated: 100 inputs, one of ~20 windows, would be 100 x ~20 x 386 numbers."""
    link_model(minilm_repository, tmp_path, MODEL)
    server = start_server(tmp_path, "--max-response-bytes", str(1024 * 1024))
    try:
        with grpcclient.InferenceServerClient(grpc_url(server)) as client:
            texts = ["hi"] * 99 + ["word " * 5000]
            wanted = [grpcclient.InferRequestedOutput(name) for name in ("chunk_embedding", "chunk_count")]
            with pytest.raises(InferenceServerException) as refused:
                client.infer(MODEL, [text_input(texts)], outputs=wanted, parameters={"chunking": "chunks"})
            assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
            assert "--max-response-bytes" in refused.value.message()
            small = client.infer(MODEL, [text_input(["hi", "word " * 600])], outputs=wanted,
                                 parameters={"chunking": "chunks"})
            assert small.as_numpy("chunk_count").ravel().tolist() == [1, 3]
    finally:
        assert server.stop() == 0


def test_a_prompt_longer_than_a_window_could_hold_is_refused(minilm_server):
    response = requests.post(minilm_server.url + "/v1/embeddings", timeout=30,
                             json={"model": MODEL, "input": ["a"] * 2048, "prompt": "p" * 1_000_000})
    assert response.status_code == 400 and "prompt" in response.json()["error"]["message"]


GARBAGE = b"\x0a\xff\xff\xff\xff\x0f"  # field 1 (model_name), a length far past the message's end


def garbage_model_infer_error(channel: grpc.Channel) -> grpc.RpcError:
    """The error of a ModelInfer call whose message is GARBAGE (sent as raw bytes)."""
    infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer", request_serializer=lambda raw: raw,
                                response_deserializer=service_pb2.ModelInferResponse.FromString)
    with pytest.raises(grpc.RpcError) as info:
        infer(GARBAGE, timeout=30)
    return info.value


def test_an_undecodable_message_is_invalid_argument_and_a_stream_reads_on(minilm_server):
    """grpc's own deserializer answered UNKNOWN, and on a stream ended it with the requests it was running."""
    with grpc.insecure_channel(grpc_url(minilm_server)) as channel:
        error = garbage_model_infer_error(channel)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "ModelInfer request message could not be parsed" in error.details()
        stream = channel.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer",
                                       request_serializer=lambda raw: raw,
                                       response_deserializer=service_pb2.ModelStreamInferResponse.FromString)

        def good(request_id: str) -> bytes:
            request = service_pb2.ModelInferRequest(model_name=MODEL, id=request_id)
            tensor = request.inputs.add(name="TEXT", datatype="BYTES", shape=[1])
            tensor.contents.bytes_contents.append(b"hello")
            return request.SerializeToString()

        responses = list(stream(iter([good("a"), GARBAGE, good("b")]), timeout=60))
    assert len(responses) == 3
    errors = [r for r in responses if r.error_message]
    assert len(errors) == 1 and "could not be parsed" in errors[0].error_message
    assert sorted(r.infer_response.id for r in responses if not r.error_message) == ["a", "b"]


@pytest.mark.parametrize("method", ["Check", "Watch"])
def test_an_undecodable_health_request_is_invalid_argument_and_health_answers_on(minilm_server, method):
    """grpcio-health-checking's own deserializer answered UNKNOWN ("Exception deserializing request!")."""
    with grpc.insecure_channel(grpc_url(minilm_server)) as channel:
        call = (channel.unary_unary if method == "Check" else channel.unary_stream)(
            f"/grpc.health.v1.Health/{method}", request_serializer=lambda raw: raw,
            response_deserializer=health_pb2.HealthCheckResponse.FromString)
        with pytest.raises(grpc.RpcError) as info:
            answer = call(GARBAGE, timeout=30)
            if method == "Watch":
                list(answer)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
        assert f"{method} request message could not be parsed" in info.value.details()
        assert health_check(channel, "") == SERVING


def test_an_undecodable_message_without_the_key_is_unauthenticated(guarded_server):
    with grpc.insecure_channel(grpc_url(guarded_server)) as channel:
        assert garbage_model_infer_error(channel).code() == grpc.StatusCode.UNAUTHENTICATED

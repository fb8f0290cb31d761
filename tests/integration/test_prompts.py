"""Prompts, left truncation and chunking on every API, against sentence-transformers on the same model.

The models: the bundled MiniLM with prompts added to a copy of its sentence-transformers folder (default
prompt `query`), and a tiny random MPNet (mean + Dense + Normalize) with prompts, both exported for real and
served by a real server process.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import openai
import pytest
import requests
import torch
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from sentence_transformers import SentenceTransformer
from tritonclient.utils import InferenceServerException

from export.config import ExportConfig
from export.pipeline import run
from server.repository import FP32
from tests.export import tiny_models

from .serverproc import ServerProcess, start_server, wait_until

MODEL = "minilm-prompted"
TINY = "tiny-prompted"
PROMPTS = {"query": "query: ", "passage": "passage: "}
TINY_PROMPTS = {"query": "Represent this question for retrieval: ", "document": "doc: "}
TEXTS = ["How do I bake sourdough bread?", "Grüße aus Köln: naïve café, 東京タワー", "short"]
# Words the MiniLM WordPiece vocabulary holds whole, so every window starts and ends at a word.
WORDS = ("the cat sat on a mat and the dog ran to the park while birds sang in old trees near a river "
         "where children played with red balls under blue sky ").split()
LONG = " ".join(WORDS[i % len(WORDS)] for i in range(700))
MIXED = "Grüße aus Köln! Unbelievably extraordinary hyperparameterization, naïve café. " * 60


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("prompted-sources")
    tiny = tiny_models.mpnet_mean_dense(root / "tiny-mpnet")
    return {
        MODEL: tiny_models.with_prompts(tiny_models.minilm_path(), root / MODEL, PROMPTS, "query"),
        TINY: tiny_models.with_prompts(tiny, root / TINY, TINY_PROMPTS),
    }


@pytest.fixture(scope="module")
def repository(sources, tmp_path_factory):
    repository = tmp_path_factory.mktemp("prompted-models")
    for name, path in sources.items():
        run(ExportConfig(source=str(path), name=name, repository=repository, precisions=(FP32,)))
    return repository


@pytest.fixture(scope="module")
def server(repository):
    process = start_server(repository, "--max-inputs", "64", "--max-input-chars", "20000")
    yield process
    assert process.stop() == 0


@pytest.fixture(scope="module")
def st(sources) -> SentenceTransformer:
    return SentenceTransformer(str(sources[MODEL]), device="cpu", local_files_only=True)


@pytest.fixture(scope="module")
def st_tiny(sources) -> SentenceTransformer:
    return SentenceTransformer(str(sources[TINY]), device="cpu", local_files_only=True)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def post(server, path: str, body: dict) -> requests.Response:
    return requests.post(server.url + path, json=body, timeout=60)


def st_forward(model: SentenceTransformer, sequences: list[list[int]]) -> np.ndarray:
    """sentence-transformers' own modules on exactly these token ids (one sequence at a time, no padding)."""
    rows = []
    for ids in sequences:
        tensor = torch.tensor([ids])
        features = {"input_ids": tensor, "attention_mask": torch.ones_like(tensor),
                    "token_type_ids": torch.zeros_like(tensor)}
        with torch.no_grad():
            rows.append(model.forward(features)["sentence_embedding"][0].numpy())
    return np.stack(rows)


def windows(count: int, room: int, overlap: int) -> list[tuple[int, int]]:
    starts = [0]
    while starts[-1] + room < count:
        starts.append(starts[-1] + room - overlap)
    return [(start, min(start + room, count)) for start in starts]


def text_tokens(model: SentenceTransformer, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    encoded = model.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return encoded["input_ids"], encoded["offset_mapping"]


def windowed_reference(model: SentenceTransformer, text: str, prompt: str, overlap: int):
    """What chunking must compute, done with sentence-transformers: windows, their vectors, spans, mean."""
    tokenizer = model.tokenizer
    ids, offsets = text_tokens(model, text)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    room = model.max_seq_length - 2 - len(prompt_ids)
    cuts = windows(len(ids), room, overlap)
    sequences = [[tokenizer.cls_token_id, *prompt_ids, *ids[lo:hi], tokenizer.sep_token_id] for lo, hi in cuts]
    vectors = st_forward(model, sequences)
    weights = np.array([hi - lo for lo, hi in cuts], dtype=np.float64)
    mean = (vectors * weights[:, None]).sum(0) / weights.sum()
    spans = [(offsets[lo][0], offsets[hi - 1][1]) for lo, hi in cuts]
    return vectors, spans, mean / np.linalg.norm(mean), sum(len(s) for s in sequences)


# --- prompts -----------------------------------------------------------------------------------------------


def test_openai_prompt_names_match_sentence_transformers(client, st):
    for prompt_name in PROMPTS:
        response = client.embeddings.create(model=MODEL, input=TEXTS, extra_body={"prompt_name": prompt_name})
        expected = st.encode(TEXTS, prompt_name=prompt_name)
        assert cosines(np.array([d.embedding for d in response.data]), expected).min() >= 0.99999
        tokens = sum(len(st.tokenizer(PROMPTS[prompt_name] + t)["input_ids"]) for t in TEXTS)
        assert response.usage.prompt_tokens == tokens


def test_precedence_prompt_then_name_then_input_type_then_default(client, st):
    def embed(**fields) -> np.ndarray:
        response = client.embeddings.create(model=MODEL, input=TEXTS[0], encoding_format="float", extra_body=fields)
        return np.array(response.data[0].embedding)

    default = st.encode(TEXTS[0])  # sentence-transformers applies default_prompt_name "query" too
    assert cosines(embed(), st.encode(TEXTS[0], prompt_name="query")).min() >= 0.99999
    assert cosines(embed(), default).min() >= 0.99999
    passage = st.encode(TEXTS[0], prompt_name="passage")
    assert cosines(embed(input_type="search_document"), passage).min() >= 0.99999
    assert cosines(embed(input_type="search_query", prompt_name="passage"), passage).min() >= 0.99999
    literal = st.encode(TEXTS[0], prompt="Instruct: find the recipe\nQuery: ")
    assert cosines(embed(prompt="Instruct: find the recipe\nQuery: ", prompt_name="passage"), literal).min() >= 0.99999
    bare = st.encode(TEXTS[0], prompt="")
    assert cosines(embed(prompt=""), bare).min() >= 0.99999
    assert cosines(embed(input_type="clustering"), bare).min() >= 0.99999  # no matching prompt: none
    assert cosines(bare, default).min() < 0.999  # the prompt makes a difference worth testing


def test_unknown_prompt_name_lists_the_valid_names(server):
    openai_error = post(server, "/v1/embeddings", {"model": MODEL, "input": "x", "prompt_name": "qeury"})
    assert openai_error.status_code == 400 and openai_error.json()["error"]["param"] == "prompt_name"
    assert "'passage', 'query'" in openai_error.json()["error"]["message"]
    tei_error = post(server, "/embed", {"inputs": "x", "prompt_name": "qeury"})
    assert tei_error.status_code == 422 and "'passage', 'query'" in tei_error.json()["error"]
    kserve_error = post(server, f"/v2/models/{MODEL}/infer", {
        "parameters": {"prompt_name": "qeury"},
        "inputs": [{"name": "TEXT", "shape": [1], "datatype": "BYTES", "data": ["x"]}]})
    assert kserve_error.status_code == 400 and "'passage', 'query'" in kserve_error.json()["error"]
    bad_type = post(server, "/v1/embeddings", {"model": MODEL, "input": "x", "input_type": "search"})
    assert bad_type.status_code == 400 and "search_query" in bad_type.json()["error"]["message"]


def test_tei_prompt_name_matches_sentence_transformers(server, st):
    # TEI routes serve the default model: the first by name (minilm-prompted sorts before tiny-prompted).
    response = post(server, "/embed", {"inputs": TEXTS, "prompt_name": "passage"})
    assert response.status_code == 200
    assert cosines(np.array(response.json()), st.encode(TEXTS, prompt_name="passage")).min() >= 0.99999


def test_kserve_parameters_choose_the_prompt(server, st):
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.port}")
    text = httpclient.InferInput("TEXT", [len(TEXTS)], "BYTES")
    text.set_data_from_numpy(np.array([t.encode() for t in TEXTS], dtype=object))
    for parameters, expected in (({"prompt_name": "passage"}, st.encode(TEXTS, prompt_name="passage")),
                                 ({"input_type": "search_query"}, st.encode(TEXTS, prompt_name="query")),
                                 ({"prompt": ""}, st.encode(TEXTS, prompt=""))):
        result = client.infer(MODEL, [text], parameters=parameters)
        assert cosines(result.as_numpy("sentence_embedding"), expected).min() >= 0.99999


def test_tiny_model_prompts_match_sentence_transformers(client, st_tiny):
    for prompt_name in TINY_PROMPTS:
        response = client.embeddings.create(model=TINY, input=TEXTS, extra_body={"prompt_name": prompt_name})
        expected = st_tiny.encode(TEXTS, prompt_name=prompt_name)
        assert cosines(np.array([d.embedding for d in response.data]), expected).min() >= 0.99999
    response = client.embeddings.create(model=TINY, input=TEXTS[:1], encoding_format="float")
    assert cosines(np.array(response.data[0].embedding), st_tiny.encode(TEXTS[:1])).min() >= 0.99999


def test_listings_show_the_prompts(server):
    models = {m["id"]: m for m in requests.get(server.url + "/v1/models", timeout=10).json()["data"]}
    assert models[MODEL]["prompts"] == PROMPTS and models[MODEL]["default_prompt_name"] == "query"
    assert models[TINY]["prompts"] == TINY_PROMPTS and models[TINY]["default_prompt_name"] is None
    info = requests.get(server.url + "/info", timeout=10).json()
    assert info["prompts"] == PROMPTS and info["default_prompt_name"] == "query"
    config = requests.get(server.url + f"/v2/models/{MODEL}/config", timeout=10).json()
    assert config["parameters"]["prompt:query"] == {"string_value": "query: "}
    assert config["parameters"]["default_prompt_name"] == {"string_value": "query"}
    assert {"chunk_embedding", "chunk_count", "chunk_span"} <= {o["name"] for o in config["output"]}


def test_token_id_inputs_refuse_prompts(server, st):
    ids = st.tokenizer(TEXTS[0], add_special_tokens=False)["input_ids"]
    response = post(server, "/v1/embeddings", {"model": MODEL, "input": [ids], "prompt_name": "query"})
    assert response.status_code == 400 and "text inputs" in response.json()["error"]["message"]
    plain = post(server, "/v1/embeddings", {"model": MODEL, "input": [ids], "encoding_format": "float"})
    bare = st.encode(TEXTS[0], prompt="")  # the default prompt does not apply to token ids
    assert cosines(np.array(plain.json()["data"][0]["embedding"]), bare).min() >= 0.99999


# --- left truncation -----------------------------------------------------------------------------------------


def test_left_truncation_keeps_special_tokens_and_prompt(server, client, st):
    tokenizer = st.tokenizer
    ids, offsets = text_tokens(st, LONG)
    prompt_ids = tokenizer(PROMPTS["query"], add_special_tokens=False)["input_ids"]
    room = st.max_seq_length - 2 - len(prompt_ids)
    sequence = [tokenizer.cls_token_id, *prompt_ids, *ids[-room:], tokenizer.sep_token_id]
    expected = st_forward(st, [sequence])
    tail = LONG[offsets[len(ids) - room][0]:]
    assert cosines(expected, st.encode(tail, prompt_name="query")).min() >= 0.99999  # the same, from text

    response = client.embeddings.create(model=MODEL, input=[LONG, TEXTS[0]], encoding_format="float",
                                        extra_body={"truncation_direction": "left"})
    got = np.array([d.embedding for d in response.data])
    assert cosines(got[:1], expected).min() >= 0.99999
    assert cosines(got[1:], st.encode(TEXTS[:1])).min() >= 0.99999
    assert response.usage.prompt_tokens == st.max_seq_length + len(tokenizer("query: " + TEXTS[0])["input_ids"])
    right = client.embeddings.create(model=MODEL, input=LONG, encoding_format="float")
    assert cosines(np.array(right.data[0].embedding), st.encode(LONG)).min() >= 0.99999

    tei = post(server, "/embed", {"inputs": LONG, "truncation_direction": "Left"})
    assert tei.status_code == 200 and tei.headers["X-Truncated-Inputs"] == "1"
    assert cosines(np.array(tei.json()), expected).min() >= 0.99999
    refused = post(server, "/embed", {"inputs": LONG, "truncation_direction": "Left", "truncate": False})
    assert refused.status_code == 422

    kserve = httpclient.InferenceServerClient(f"127.0.0.1:{server.port}")
    text = httpclient.InferInput("TEXT", [1], "BYTES")
    text.set_data_from_numpy(np.array([LONG.encode()], dtype=object))
    result = kserve.infer(MODEL, [text], parameters={"truncation_direction": "left"})
    assert cosines(result.as_numpy("sentence_embedding"), expected).min() >= 0.99999


def test_left_truncation_of_token_ids_keeps_the_last_tokens(server, st):
    ids, _ = text_tokens(st, LONG)
    room = st.max_seq_length - 2
    expected = st_forward(st, [[st.tokenizer.cls_token_id, *ids[-room:], st.tokenizer.sep_token_id]])
    response = post(server, "/v1/embeddings", {"model": MODEL, "input": [ids], "encoding_format": "float",
                                               "truncation_direction": "left"})
    assert response.status_code == 200 and response.headers["X-Truncated-Inputs"] == "1"
    assert cosines(np.array(response.json()["data"][0]["embedding"]), expected).min() >= 0.99999


# --- chunking ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [LONG, MIXED], ids=["words", "mixed"])
def test_mean_chunking_equals_sentence_transformers_on_the_same_windows(client, st, text):
    _, _, mean, tokens = windowed_reference(st, text, PROMPTS["query"], 32)
    response = client.embeddings.create(model=MODEL, input=[text, TEXTS[0]], encoding_format="float",
                                        extra_body={"chunking": {"mode": "mean"}})
    got = np.array([d.embedding for d in response.data])
    assert cosines(got[:1], mean).min() >= 0.99999
    assert cosines(got[1:], st.encode(TEXTS[:1])).min() >= 0.99999  # a short input is one plain window
    assert response.usage.prompt_tokens == tokens + len(st.tokenizer("query: " + TEXTS[0])["input_ids"])


def test_chunks_on_openai_give_window_vectors_and_exact_spans(server, client, st):
    vectors, spans, mean, _ = windowed_reference(st, LONG, PROMPTS["passage"], 16)
    assert len(spans) >= 3
    response = post(server, "/v1/embeddings", {"model": MODEL, "input": [LONG, "short"], "encoding_format": "float",
                                               "prompt_name": "passage",
                                               "chunking": {"mode": "chunks", "overlap": 16}})
    assert response.status_code == 200
    first, second = response.json()["data"]
    assert [(c["start"], c["end"]) for c in first["chunks"]] == spans
    assert cosines(np.array([c["embedding"] for c in first["chunks"]]), vectors).min() >= 0.99999
    assert cosines(np.array(first["embedding"]), mean).min() >= 0.99999
    for chunk in first["chunks"]:  # each span is the text its window embeds
        piece = LONG[chunk["start"]:chunk["end"]]
        assert piece == piece.strip() and piece.split()[0] in WORDS
        assert cosines(np.array(chunk["embedding"]), st.encode(piece, prompt_name="passage")).min() >= 0.99999
    assert [(c["start"], c["end"]) for c in second["chunks"]] == [(0, 5)]
    sdk = client.embeddings.create(model=MODEL, input=LONG, encoding_format="float", extra_body={
        "prompt_name": "passage", "chunking": {"mode": "chunks", "overlap": 16}})
    assert [(c["start"], c["end"]) for c in sdk.data[0].model_extra["chunks"]] == spans

    encoded = post(server, "/v1/embeddings", {"model": MODEL, "input": LONG, "encoding_format": "base64",
                                              "chunking": {"mode": "chunks"}}).json()["data"][0]
    decoded = np.frombuffer(base64.b64decode(encoded["chunks"][0]["embedding"]), dtype="<f4")
    assert decoded.shape == (384,) and abs(float(np.linalg.norm(decoded)) - 1) < 1e-4


def test_chunk_spans_slice_a_text_with_multi_token_words_exactly(server, st):
    ids, offsets = text_tokens(st, MIXED)
    response = post(server, "/embed", {"inputs": [MIXED], "chunking": {"mode": "chunks", "overlap": 8}})
    assert response.status_code == 200
    (chunks,) = response.json()
    prompt_ids = st.tokenizer(PROMPTS["query"], add_special_tokens=False)["input_ids"]
    cuts = windows(len(ids), st.max_seq_length - 2 - len(prompt_ids), 8)
    assert [(c["start"], c["end"]) for c in chunks] == [(offsets[lo][0], offsets[hi - 1][1]) for lo, hi in cuts]
    assert chunks[0]["start"] == 0 and chunks[-1]["end"] == len(MIXED.rstrip())


def test_kserve_chunk_outputs_follow_the_batch_rule(server, st):
    vectors, spans, mean, _ = windowed_reference(st, LONG, PROMPTS["query"], 32)
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.port}")
    text = httpclient.InferInput("TEXT", [2], "BYTES")
    text.set_data_from_numpy(np.array([LONG.encode(), b"short"], dtype=object))
    outputs = [httpclient.InferRequestedOutput(name, binary_data=binary) for name, binary in (
        ("sentence_embedding", True), ("chunk_embedding", True), ("chunk_count", False), ("chunk_span", True))]
    result = client.infer(MODEL, [text], outputs=outputs, parameters={"chunking": "chunks", "chunk_overlap": 32})
    counts = result.as_numpy("chunk_count")
    assert counts.dtype == np.int64 and counts.tolist() == [[len(spans)], [1]]  # dims [1]: [n, 1]
    chunk_vectors, chunk_spans = result.as_numpy("chunk_embedding"), result.as_numpy("chunk_span")
    assert chunk_vectors.shape == (2, len(spans), 384) and chunk_spans.shape == (2, len(spans), 2)
    assert cosines(chunk_vectors[0], vectors).min() >= 0.99999
    assert chunk_spans[0].tolist() == [list(s) for s in spans] and chunk_spans[1, 0].tolist() == [0, 5]
    assert not chunk_vectors[1, 1:].any() and not chunk_spans[1, 1:].any()
    assert cosines(result.as_numpy("sentence_embedding")[:1], mean).min() >= 0.99999

    defaults = client.infer(MODEL, [text], parameters={"chunking": "chunks"})  # no outputs named: all of them
    assert defaults.as_numpy("chunk_count").tolist() == [[len(spans)], [1]]
    mean_only = client.infer(MODEL, [text], parameters={"chunking": "mean"})
    assert mean_only.as_numpy("chunk_count") is None
    assert cosines(mean_only.as_numpy("sentence_embedding")[:1], mean).min() >= 0.99999


def test_kserve_grpc_takes_the_same_parameters_and_returns_chunk_outputs_raw(server):
    """KServe over gRPC: request parameters -> the same options as HTTP; chunk outputs in raw_output_contents."""
    texts = np.array([LONG.encode(), b"short"], dtype=object)
    http_client = httpclient.InferenceServerClient(f"127.0.0.1:{server.port}")
    http_text = httpclient.InferInput("TEXT", [2], "BYTES")
    http_text.set_data_from_numpy(texts)
    parameters = {"prompt_name": "passage", "chunking": "chunks", "chunk_overlap": 16}
    over_http = http_client.infer(MODEL, [http_text], parameters=parameters)
    with grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}") as client:
        grpc_text = grpcclient.InferInput("TEXT", [2], "BYTES")
        grpc_text.set_data_from_numpy(texts)
        over_grpc = client.infer(MODEL, [grpc_text], parameters=parameters)  # no outputs named: all four
        assert {o.name for o in over_grpc.get_response().outputs} == {
            "sentence_embedding", "chunk_embedding", "chunk_count", "chunk_span"}
        assert not any(o.HasField("contents") for o in over_grpc.get_response().outputs)
        for name in ("chunk_count", "chunk_span"):
            assert over_grpc.as_numpy(name).tolist() == over_http.as_numpy(name).tolist()
        assert over_grpc.as_numpy("chunk_count")[0, 0] > 1
        for name in ("sentence_embedding", "chunk_embedding"):
            assert np.allclose(over_grpc.as_numpy(name), over_http.as_numpy(name), atol=1e-6)
        with pytest.raises(InferenceServerException, match="'chunking' must be a string"):
            client.infer(MODEL, [grpc_text], parameters={"chunking": 3})


@contextlib.contextmanager
def budget_held(repository) -> Iterator[tuple[ServerProcess, Future]]:
    """A server with --max-queue-tokens 4096 and a chunked request of 120 long texts in flight, which holds all
    of it: yields the server and that request's future; stops the server after."""
    process = start_server(repository, "--max-queue-tokens", "4096", "--max-inputs", "2048", "--models", MODEL)
    try:
        body = {"model": MODEL, "input": [LONG + f" {i}" for i in range(120)], "chunking": {"mode": "mean"}}
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(requests.post, process.url + "/v1/embeddings", json=body, timeout=600)
            wait_until(lambda: pending(process) or first.done(), "the chunked request to be in flight")
            assert not first.done(), "the chunked request finished before it could be observed in flight"
            yield process, first
    finally:
        assert process.stop() == 0


def test_a_chunked_request_holds_its_windows_in_the_token_budget(repository):
    """Chunk windows go through the model's admission: while a chunked request is queued or computing, its
    windows' tokens are reserved (--max-queue-tokens), so even a tiny request is refused; after, admitted."""
    with budget_held(repository) as (process, first):
        small = post(process, "/v1/embeddings", {"model": MODEL, "input": "hi"})
        assert small.status_code == 429 and small.headers["Retry-After"] == "1", small.text
        assert first.result().status_code == 200 and len(first.result().json()["data"]) == 120
        assert post(process, "/v1/embeddings", {"model": MODEL, "input": "hi"}).status_code == 200  # released


def test_tei_tokenize_is_admitted_against_the_token_budget(repository):
    """TEI /tokenize reserves its texts' tokens like an embedding request (its tokenizer work is bounded the same
    way): while a chunked request holds the budget (--max-queue-tokens), /tokenize is refused in TEI's shape
    (429, error_type Overloaded, Retry-After); once that request is answered, /tokenize is answered."""
    with budget_held(repository) as (process, first):
        refused = post(process, "/tokenize", {"inputs": "hi"})
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "1", refused.text
        assert refused.json()["error_type"] == "Overloaded", "TEI's error shape"
        assert first.result().status_code == 200
        answered = post(process, "/tokenize", {"inputs": "hi"})
        assert answered.status_code == 200 and [t["text"] for t in answered.json()[0]][1:-1] == ["hi"]


def test_a_chunks_response_is_bounded_by_max_response_bytes(repository, st):
    """The response-size check counts every window's vector and span: estimated low before embedding, then
    exactly before serializing. Limit: room for ~1300 floats (16 JSON bytes each, 4096 of overhead)."""
    process = start_server(repository, "--max-response-bytes", str(1300 * 16 + 4096), "--models", MODEL)
    try:
        windows = len(windowed_reference(st, LONG, PROMPTS["query"], 32)[1])
        assert 384 + windows * 386 > 1300 > 384 + 386  # over the limit only once the windows are known
        refused = post(process, "/v1/embeddings", {"model": MODEL, "input": LONG, "encoding_format": "float",
                                                   "chunking": {"mode": "chunks"}})
        assert refused.status_code == 400 and "--max-response-bytes" in refused.json()["error"]["message"]
        tei = post(process, "/embed", {"inputs": LONG, "chunking": {"mode": "chunks"}})
        assert tei.status_code == 422 and "--max-response-bytes" in tei.json()["error"]
        mean = post(process, "/v1/embeddings", {"model": MODEL, "input": LONG, "chunking": {"mode": "mean"}})
        assert mean.status_code == 200
    finally:
        assert process.stop() == 0


def pending(process) -> float:
    text = requests.get(process.url + "/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("nv_inference_pending_request_count{"))


def test_chunking_counts_windows_against_max_inputs(server):
    many = post(server, "/v1/embeddings", {"model": MODEL, "input": [LONG] * 30, "chunking": {"mode": "mean"}})
    assert many.status_code == 400 and "windows" in many.json()["error"]["message"]
    overlap = post(server, "/v1/embeddings", {"model": MODEL, "input": LONG,
                                              "chunking": {"mode": "mean", "overlap": 400}})
    assert overlap.status_code == 400 and "overlap" in overlap.json()["error"]["message"]
    assert requests.get(server.url + "/v2/health/ready", timeout=10).status_code == 200


def test_chunk_outputs_without_chunking_describe_each_input_as_one_chunk(server):
    """A generic Triton client (perf_analyzer) names every output the metadata lists, without chunking."""
    answer = post(server, f"/v2/models/{MODEL}/infer", {
        "inputs": [{"name": "TEXT", "shape": [2], "datatype": "BYTES", "data": ["x", "hello"]}],
        "outputs": [{"name": "sentence_embedding"}, {"name": "chunk_count"}, {"name": "chunk_span"},
                    {"name": "chunk_embedding"}]})
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    assert outputs["chunk_count"]["shape"] == [2, 1] and outputs["chunk_count"]["data"] == [1, 1]
    assert outputs["chunk_span"]["shape"] == [2, 1, 2] and outputs["chunk_span"]["data"] == [0, 1, 0, 5]
    assert outputs["chunk_embedding"]["data"] == outputs["sentence_embedding"]["data"]
    assert requests.get(server.url + "/v2/health/ready", timeout=10).status_code == 200


def test_the_character_cap_is_checked_on_every_api(server):
    text = "x" * 20001  # the server runs with --max-input-chars 20000
    openai_error = post(server, "/v1/embeddings", {"model": MODEL, "input": ["ok", text]})
    assert openai_error.status_code == 400 and "at most 20000 are allowed" in openai_error.json()["error"]["message"]
    assert post(server, "/embed", {"inputs": text, "chunking": "mean"}).status_code == 422
    kserve_error = post(server, f"/v2/models/{MODEL}/infer", {
        "inputs": [{"name": "TEXT", "shape": [1], "datatype": "BYTES", "data": [text]}]})
    assert kserve_error.status_code == 400 and "20001 characters" in kserve_error.json()["error"]
    prompt_error = post(server, "/v1/embeddings", {"model": MODEL, "input": "ok", "prompt": text})
    assert prompt_error.status_code == 400 and prompt_error.json()["error"]["param"] == "prompt"


def test_server_default_chunking_applies_unless_the_request_says_otherwise(repository, st):
    process = start_server(repository, "--chunking", "chunks", "--chunk-overlap", "16", "--models", MODEL)
    try:
        vectors, spans, mean, _ = windowed_reference(st, LONG, PROMPTS["query"], 16)
        default = post(process, "/v1/embeddings", {"input": LONG, "encoding_format": "float"}).json()["data"][0]
        assert [(c["start"], c["end"]) for c in default["chunks"]] == spans
        assert cosines(np.array(default["embedding"]), mean).min() >= 0.99999
        plain = post(process, "/v1/embeddings", {"input": LONG, "encoding_format": "float",
                                                 "chunking": {"mode": "none"}}).json()["data"][0]
        assert "chunks" not in plain and cosines(np.array(plain["embedding"]), st.encode(LONG)).min() >= 0.99999
        tei = post(process, "/embed", {"inputs": [LONG]}).json()
        assert [(c["start"], c["end"]) for c in tei[0]] == spans
    finally:
        assert process.stop() == 0

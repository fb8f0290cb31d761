"""The official openai client against a real server process serving the exported MiniLM."""

from __future__ import annotations

import base64
import json
import urllib.request

import numpy as np
import openai
import pytest

MODEL = "all-MiniLM-L6-v2"
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Grüße aus Köln: naïve café, 東京タワー, emoji ✓",
    "short",
    "A long text that goes past the model's max_seq_length of 256 tokens. " * 40,
]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def client(minilm_server):
    return openai.OpenAI(base_url=minilm_server.url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def reference(st_minilm):
    return st_minilm.encode(TEXTS, convert_to_numpy=True)


def test_string_input_matches_sentence_transformers(client, reference):
    response = client.embeddings.create(model=MODEL, input=TEXTS[1], encoding_format="float")
    assert len(response.data) == 1 and response.model == MODEL
    assert cosines(np.array([response.data[0].embedding]), reference[1:2]).min() >= 0.99999


def test_list_input_default_base64_matches_and_counts_tokens(client, reference, st_minilm):
    response = client.embeddings.create(model=MODEL, input=TEXTS)  # the SDK asks for base64 and decodes it
    got = np.array([d.embedding for d in response.data])
    assert [d.index for d in response.data] == list(range(len(TEXTS)))
    assert cosines(got, reference).min() >= 0.99999
    expected_tokens = sum(min(len(st_minilm.tokenizer(t)["input_ids"]), 256) for t in TEXTS)
    assert response.usage.prompt_tokens == response.usage.total_tokens == expected_tokens


def test_token_id_inputs_match_text_inputs(client, reference, st_minilm):
    ids = [st_minilm.tokenizer(t, add_special_tokens=False)["input_ids"] for t in TEXTS[:2]]
    single = client.embeddings.create(model=MODEL, input=ids[0], encoding_format="float")
    batch = client.embeddings.create(model=MODEL, input=ids, encoding_format="float")
    assert cosines(np.array([single.data[0].embedding]), reference[:1]).min() >= 0.99999
    assert cosines(np.array([d.embedding for d in batch.data]), reference[:2]).min() >= 0.99999


def test_raw_base64_is_little_endian_float32(minilm_server, reference):
    body = json.dumps({"model": MODEL, "input": [TEXTS[0]], "encoding_format": "base64"}).encode()
    request = urllib.request.Request(minilm_server.url + "/v1/embeddings", body,
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = json.loads(response.read())
    vector = np.frombuffer(base64.b64decode(payload["data"][0]["embedding"]), dtype="<f4")
    assert vector.shape == (384,) and cosines(vector[None], reference[:1]).min() >= 0.99999


def test_truncation_is_counted_in_a_header(minilm_server):
    body = json.dumps({"model": MODEL, "input": [TEXTS[3], TEXTS[2]]}).encode()
    request = urllib.request.Request(minilm_server.url + "/v1/embeddings", body)
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.headers["X-Truncated-Inputs"] == "1"
        assert response.headers["X-Request-Id"]


def test_dimensions_truncate_and_renormalize(client, reference):
    response = client.embeddings.create(model=MODEL, input=TEXTS[0], dimensions=64, encoding_format="float")
    vector = np.array(response.data[0].embedding)
    assert vector.shape == (64,)
    assert abs(np.linalg.norm(vector) - 1.0) < 1e-5
    expected = reference[0, :64] / np.linalg.norm(reference[0, :64])
    assert cosines(vector[None], expected[None]).min() >= 0.99999


def test_dimensions_out_of_range_is_a_400(client):
    for dimensions in (0, 385):
        with pytest.raises(openai.BadRequestError) as info:
            client.embeddings.create(model=MODEL, input="x", dimensions=dimensions)
        assert info.value.body["param"] == "dimensions" or "dimensions" in info.value.body["message"]


def test_unknown_model_is_a_404_in_openai_shape(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.embeddings.create(model="no-such-model", input="x")
    assert info.value.body["code"] == "model_not_found" and "no-such-model" in info.value.body["message"]


def test_models_lists_every_served_model(client):
    ids = {m.id for m in client.models.list()}
    assert {MODEL, MODEL + "-int8"} <= ids


def test_int8_variant_is_served_by_name_and_close_to_fp32(client, reference):
    response = client.embeddings.create(model=MODEL + "-int8", input=TEXTS, encoding_format="float")
    assert cosines(np.array([d.embedding for d in response.data]), reference).min() >= 0.95

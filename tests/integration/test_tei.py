"""TEI-compatible /embed, /tokenize and /info against a real server process serving the exported MiniLM."""

from __future__ import annotations

import numpy as np
import pytest
import requests

MODEL = "all-MiniLM-L6-v2"
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Grüße aus Köln: naïve café, 東京タワー, emoji ✓",
    "short",
]
LONG = "A long text that goes past the model's max_seq_length of 256 tokens. " * 40


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def post(minilm_server):
    def post(path: str, body) -> requests.Response:
        return requests.post(minilm_server.url + path, json=body, timeout=60)
    return post


@pytest.fixture(scope="module")
def reference(st_minilm):
    return st_minilm.encode(TEXTS + [LONG], convert_to_numpy=True)


def test_embed_a_string_and_a_list_match_sentence_transformers(post, reference):
    single = post("/embed", {"inputs": TEXTS[1]})
    assert single.status_code == 200
    assert np.array(single.json()).shape == (1, 384)
    assert cosines(np.array(single.json()), reference[1:2]).min() >= 0.99999
    batch = post("/embed", {"inputs": TEXTS})
    vectors = np.array(batch.json())
    assert vectors.shape == (3, 384) and cosines(vectors, reference[:3]).min() >= 0.99999
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert int(batch.headers["x-compute-tokens"]) > 3


def test_embed_token_ids_match_text(post, reference, st_minilm):
    ids = [st_minilm.tokenizer(t, add_special_tokens=False)["input_ids"] for t in TEXTS]
    response = post("/embed", {"inputs": ids})
    assert response.status_code == 200 and cosines(np.array(response.json()), reference[:3]).min() >= 0.99999


def test_normalize_false_on_an_in_graph_normalized_model_returns_its_unit_output(post, reference):
    vectors = np.array(post("/embed", {"inputs": TEXTS, "normalize": False}).json())
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert cosines(vectors, reference[:3]).min() >= 0.99999


def test_dimensions_truncate_then_renormalize(post, reference):
    vectors = np.array(post("/embed", {"inputs": TEXTS, "dimensions": 128}).json())
    assert vectors.shape == (3, 128)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert cosines(vectors, reference[:3, :128]).min() >= 0.99999
    raw = np.array(post("/embed", {"inputs": TEXTS, "dimensions": 128, "normalize": False}).json())
    unit = reference[:3] / np.linalg.norm(reference[:3], axis=1, keepdims=True)
    assert np.allclose(raw, unit[:, :128], atol=1e-5)


def test_truncation_follows_the_server_unless_the_request_forbids_it(post, reference):
    default = post("/embed", {"inputs": [LONG, "short"]})
    assert default.status_code == 200 and default.headers["X-Truncated-Inputs"] == "1"
    assert cosines(np.array(default.json())[:1], reference[3:4]).min() >= 0.99999
    assert post("/embed", {"inputs": LONG, "truncate": True}).status_code == 200
    refused = post("/embed", {"inputs": ["short", LONG], "truncate": False})
    assert refused.status_code == 422
    assert refused.json()["error_type"] == "Validation" and "256 tokens" in refused.json()["error"]
    assert post("/embed", {"inputs": "short", "truncate": False}).status_code == 200


@pytest.mark.parametrize("body, words", [
    ({"inputs": []}, "`inputs` cannot be empty"),
    ({"inputs": ["x"] * 2049}, "batch size 2049 > maximum allowed batch size 2048"),
    ({"inputs": "x", "truncation_direction": "Middle"}, "must be 'Right' or 'Left'"),
    ({"inputs": "x", "prompt_name": "query"}, "unknown prompt_name 'query'"),
    ({"inputs": "x", "dimensions": 385}, "from 1 to 384"),
    ({"inputs": 42}, "`inputs` must be"),
    ({"inputs": [[1, 999999]]}, "vocabulary"),
])
def test_bad_embed_requests_are_422_in_tei_shape(post, body, words):
    response = post("/embed", body)
    assert response.status_code == 422
    assert set(response.json()) == {"error", "error_type"} and words in response.json()["error"]


def test_model_field_picks_a_loaded_model_and_an_unknown_one_is_a_404(post, minilm_server):
    default = np.array(post("/embed", {"inputs": TEXTS}).json())
    named = np.array(post("/embed", {"inputs": TEXTS, "model": MODEL}).json())
    int8 = post("/embed", {"inputs": TEXTS, "model": MODEL + "-int8"})
    openai_int8 = requests.post(minilm_server.url + "/v1/embeddings", timeout=60, json={
        "model": MODEL + "-int8", "input": TEXTS, "encoding_format": "float"}).json()["data"]
    assert int8.status_code == 200 and np.array_equal(named, default)
    assert np.array_equal(np.array(int8.json(), np.float32),
                          np.array([row["embedding"] for row in openai_int8], np.float32))
    assert not np.array_equal(np.array(int8.json()), default)
    for path in ("/embed", "/tokenize"):
        unknown = post(path, {"inputs": "x", "model": "no-such-model"})
        assert unknown.status_code == 404 and unknown.json()["error_type"] == "NotFound"
        assert "no-such-model" in unknown.json()["error"]
        wrong = post(path, {"inputs": "x", "model": 7})
        assert wrong.status_code == 422 and "`model` must be a string" in wrong.json()["error"]
    assert post("/tokenize", {"inputs": "x", "model": MODEL + "-int8"}).status_code == 200


@pytest.mark.parametrize("path", ["/embed_all", "/embed_sparse", "/decode", "/rerank", "/predict", "/similarity"])
def test_tei_routes_not_served_are_404_in_tei_shape(post, path):
    response = post(path, {"inputs": "x"})
    assert response.status_code == 404 and set(response.json()) == {"error", "error_type"}
    assert response.json()["error_type"] == "NotFound"


def test_malformed_json_is_a_tei_error(minilm_server):
    response = requests.post(minilm_server.url + "/embed", data=b"{nope", timeout=10)
    assert response.status_code == 422 and response.json()["error_type"] == "Validation"


def test_tokenize_gives_tei_tokens_matching_the_model_tokenizer(post, st_minilm):
    response = post("/tokenize", {"inputs": TEXTS[:2]})
    assert response.status_code == 200
    token_lists = response.json()
    assert len(token_lists) == 2
    for text, tokens in zip(TEXTS[:2], token_lists):
        assert [t["id"] for t in tokens] == st_minilm.tokenizer(text)["input_ids"]
        assert tokens[0] == {"id": 101, "text": "[CLS]", "special": True, "start": None, "stop": None}
        assert tokens[-1]["text"] == "[SEP]" and tokens[-1]["special"]
        for token in tokens[1:-1]:
            assert not token["special"] and token["text"] == text[token["start"]:token["stop"]]
    plain = post("/tokenize", {"inputs": "Grüße", "add_special_tokens": False}).json()
    assert len(plain) == 1 and not any(t["special"] for t in plain[0])
    assert "".join(t["text"] for t in plain[0]) == "Grüße"


def test_info_describes_the_default_model(minilm_server):
    info = requests.get(minilm_server.url + "/info", timeout=10).json()
    assert info["model_id"] == MODEL and info["model_dtype"] == "float32"
    assert info["model_type"] == {"embedding": {"pooling": "mean"}}
    assert info["max_input_length"] == 256 and info["max_client_batch_size"] == 2048
    assert info["auto_truncate"] is True and info["tokenization_workers"] >= 1
    assert info["max_batch_tokens"] > 0 and isinstance(info["max_concurrent_requests"], int) and info["version"]

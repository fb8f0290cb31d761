"""Every kind of bad input on every route family gets a 4xx in its protocol's error shape; then the server serves."""

from __future__ import annotations

import json
import struct
import urllib.error
import urllib.request

import pytest

MODEL = "all-MiniLM-L6-v2"
V2_INFER = f"/v2/models/{MODEL}/infer"


def call(base: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    request = urllib.request.Request(base + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def js(value) -> bytes:
    return json.dumps(value).encode()


def bytes_tensor_request(payload: bytes, declared_size: int, shape=(1,)) -> tuple[bytes, dict]:
    header = js({"inputs": [{"name": "TEXT", "shape": list(shape), "datatype": "BYTES",
                             "parameters": {"binary_data_size": declared_size}}]})
    return header + payload, {"Inference-Header-Content-Length": str(len(header))}


OVERRUN, OVERRUN_HEADERS = bytes_tensor_request(struct.pack("<I", 1000) + b"short", 9)
MISMATCH, MISMATCH_HEADERS = bytes_tensor_request(struct.pack("<I", 2) + b"hi", 99)
TOO_MANY = ["x"] * 2049
HUGE = b'{"input": "' + b"a" * (17 * 1024 * 1024) + b'"}'

# (route family, method, path, body, headers)
CASES = [
    ("openai", "POST", "/v1/embeddings", b"{not json", None),
    ("openai", "POST", "/v1/embeddings", js({"input": 42, "model": MODEL}), None),
    ("openai", "POST", "/v1/embeddings", js({"model": MODEL}), None),
    ("openai", "POST", "/v1/embeddings", js({"input": [], "model": MODEL}), None),
    ("openai", "POST", "/v1/embeddings", js({"input": "", "model": MODEL}), None),
    ("openai", "POST", "/v1/embeddings", js({"input": TOO_MANY, "model": MODEL}), None),
    ("openai", "POST", "/v1/embeddings", HUGE, None),
    ("openai", "POST", "/v1/embeddings", b'{"input": "\xff\xfe bad utf-8"}', None),
    ("openai", "POST", "/v1/embeddings", js({"input": "nul\u0000byte", "model": MODEL}), None),
    ("openai", "POST", "/v1/embeddings", js({"input": [[10 ** 9]], "model": MODEL}), None),
    ("openai", "POST", "/v1/embeddings", js({"input": [[-5, 3]], "model": MODEL}), None),
    ("openai", "POST", "/v1/embeddings", js({"input": "x", "model": MODEL, "dimensions": -1}), None),
    ("openai", "POST", "/v1/embeddings", js({"input": "x", "model": MODEL, "dimensions": 10 ** 12}), None),
    ("openai", "POST", "/v1/embeddings", js({"input": "x", "model": "no-such-model"}), None),
    ("openai", "GET", "/v1/embeddings", None, None),
    ("openai", "GET", "/no/such/route", None, None),
    ("kserve", "POST", V2_INFER, b"{not json", None),
    ("kserve", "POST", V2_INFER, js({"inputs": [{"name": "TEXT", "shape": [1], "datatype": "FP32",
                                                 "data": [1.0]}]}), None),
    ("kserve", "POST", V2_INFER, js({"inputs": [{"name": "TEXT", "shape": [2], "datatype": "BYTES",
                                                 "data": ["only one"]}]}), None),
    ("kserve", "POST", V2_INFER, js({"inputs": []}), None),
    ("kserve", "POST", V2_INFER, js({"inputs": [{"name": "TEXT", "shape": [1], "datatype": "BYTES",
                                                 "data": [""]}]}), None),
    ("kserve", "POST", V2_INFER, OVERRUN, OVERRUN_HEADERS),
    ("kserve", "POST", V2_INFER, MISMATCH, MISMATCH_HEADERS),
    ("kserve", "POST", "/v2/models/no-such-model/infer", js({"inputs": []}), None),
    ("kserve", "POST", V2_INFER, HUGE, None),
    ("kserve", "GET", V2_INFER, None, None),
    ("tei", "POST", "/embed", b"{not json", None),
    ("tei", "POST", "/embed", js({"inputs": 7}), None),
    ("tei", "POST", "/embed", js({}), None),
    ("tei", "POST", "/embed", js({"inputs": []}), None),
    ("tei", "POST", "/embed", js({"inputs": ""}), None),
    ("tei", "POST", "/embed", js({"inputs": TOO_MANY}), None),
    ("tei", "POST", "/embed", js({"inputs": "x", "dimensions": -3}), None),
    ("tei", "POST", "/embed", HUGE, None),
    ("tei", "GET", "/embed", None, None),
]


def check_shape(family: str, payload: dict) -> None:
    if family == "openai":
        assert set(payload["error"]) == {"message", "type", "param", "code"}
    elif family == "kserve":
        assert isinstance(payload["error"], str) and payload["error"]
    else:
        assert isinstance(payload["error"], str) and isinstance(payload["error_type"], str)


def test_every_bad_input_gets_a_4xx_in_its_protocol_shape_then_a_valid_request_succeeds(minilm_server):
    failures = []
    for family, method, path, body, headers in CASES:
        status, raw = call(minilm_server.url, method, path, body, headers)
        try:
            assert 400 <= status < 500, f"status {status}"
            check_shape(family, json.loads(raw))
            assert b"Traceback" not in raw
        except (AssertionError, ValueError, KeyError) as exc:
            failures.append(f"{family} {method} {path} {(body or b'')[:60]!r}: {exc}: {raw[:200]!r}")
    assert not failures, "\n".join(failures)
    status, raw = call(minilm_server.url, "POST", "/v1/embeddings", js({"input": "still fine", "model": MODEL}))
    assert status == 200 and len(json.loads(raw)["data"][0]["embedding"]) == 384


@pytest.mark.parametrize("path", ["/v1/embeddings", V2_INFER, "/embed"])
def test_status_codes_follow_each_protocol(minilm_server, path):
    body = {"/v1/embeddings": {"input": ""}, "/embed": {"inputs": ""}}.get(
        path, {"inputs": [{"name": "TEXT", "shape": [1], "datatype": "FP32", "data": [1.0]}]})
    status, _ = call(minilm_server.url, "POST", path, js(body))
    assert status == {"/v1/embeddings": 400, V2_INFER: 400, "/embed": 422}[path]

"""Hostile or unlucky bodies on the shared server: each gets its protocol's 4xx, in its shape, and no traceback."""

from __future__ import annotations

import gzip
import json
import zlib

import brotli
import pytest
import requests

MODEL = "all-MiniLM-L6-v2"
V2_INFER = f"/v2/models/{MODEL}/infer"
BIG_ID = 2**63 + 5

ROUTES = {  # protocol -> (path, a valid body)
    "openai": ("/v1/embeddings", {"model": MODEL, "input": "a body"}),
    "kserve": (V2_INFER, {"inputs": [{"name": "TEXT", "shape": [1], "datatype": "BYTES", "data": ["a body"]}]}),
    "tei": ("/embed", {"inputs": "a body"}),
}
STATUS = {"openai": 400, "kserve": 400, "tei": 422}


def assert_shape(protocol: str, response: requests.Response) -> None:
    body = response.json()
    if protocol == "openai":
        assert set(body["error"]) == {"message", "type", "param", "code"}
    elif protocol == "tei":
        assert set(body) == {"error", "error_type"}
    else:
        assert set(body) == {"error"}


def corrupt_bodies(raw: bytes) -> dict[str, tuple[bytes, str]]:
    good_gzip = gzip.compress(raw)
    return {
        "plain labelled gzip": (raw, "gzip"),
        "cut gzip": (good_gzip[: len(good_gzip) // 2], "gzip"),
        "gzip with a bad checksum": (good_gzip[:-8] + b"\0" * 8, "gzip"),
        "garbage deflate": (b"\x00\x01garbage" * 10, "deflate"),
        "cut deflate": (zlib.compress(raw)[:5], "deflate"),
        "garbage brotli": (b"\xff\xffnot brotli at all" * 4, "br"),
        "cut brotli": (brotli.compress(raw)[:4], "br"),
    }


@pytest.mark.parametrize("protocol", sorted(ROUTES))
def test_corrupt_compressed_bodies_are_refused_in_each_protocols_shape(minilm_server, protocol):
    path, valid = ROUTES[protocol]
    log_before = len(minilm_server.log())
    for name, (body, encoding) in corrupt_bodies(json.dumps(valid).encode()).items():
        response = requests.post(minilm_server.url + path, data=body, timeout=30,
                                 headers={"Content-Encoding": encoding, "Content-Type": "application/json"})
        assert response.status_code == STATUS[protocol], (name, response.status_code, response.text)
        assert_shape(protocol, response)
    good = requests.post(minilm_server.url + path, data=gzip.compress(json.dumps(valid).encode()), timeout=30,
                         headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert good.status_code == 200
    new_log = minilm_server.log()[log_before:]
    assert "Traceback" not in new_log and "Unhandled exception" not in new_log


@pytest.mark.parametrize("body, path", [
    ({"model": MODEL, "input": [[101, BIG_ID]]}, "/v1/embeddings"),
    ({"model": MODEL, "input": [BIG_ID, 7]}, "/v1/embeddings"),
    ({"model": MODEL, "input": [[-BIG_ID]]}, "/v1/embeddings"),
    ({"inputs": [[101, BIG_ID]]}, "/embed"),
    ({"inputs": [BIG_ID]}, "/embed"),
])
def test_token_ids_beyond_int64_are_refused_as_outside_the_vocabulary(minilm_server, body, path):
    response = requests.post(minilm_server.url + path, json=body, timeout=30)
    assert response.status_code == (422 if path == "/embed" else 400), response.text
    assert "vocabulary" in response.text or "integer token ids" in response.text  # JSON reads -2**63-5 as a float


def test_kserve_refuses_an_output_named_twice(minilm_server):
    body = dict(ROUTES["kserve"][1], outputs=[{"name": "sentence_embedding"}] * 3)
    response = requests.post(minilm_server.url + V2_INFER, json=body, timeout=30)
    assert response.status_code == 400 and "more than once" in response.json()["error"]


def test_one_pre_tokenized_input_longer_than_max_inputs_is_one_input(minilm_server):
    ids = [2000 + i % 500 for i in range(2049)]
    for path, body in (("/v1/embeddings", {"model": MODEL, "input": ids}), ("/embed", {"inputs": ids})):
        response = requests.post(minilm_server.url + path, json=body, timeout=60)
        assert response.status_code == 200, response.text
        assert response.headers["X-Truncated-Inputs"] == "1"


@pytest.mark.parametrize("protocol", sorted(ROUTES))
def test_a_text_over_max_input_chars_is_refused_before_tokenizing(minilm_server, protocol):
    path, _ = ROUTES[protocol]
    text = "word " * 400_001  # 2,000,005 characters, over the default --max-input-chars
    body = {"openai": {"model": MODEL, "input": text}, "tei": {"inputs": [text]},
            "kserve": {"inputs": [{"name": "TEXT", "shape": [1], "datatype": "BYTES", "data": [text]}]}}[protocol]
    response = requests.post(minilm_server.url + path, json=body, timeout=60)
    assert response.status_code == STATUS[protocol] and "characters" in response.text
    assert_shape(protocol, response)


@pytest.mark.parametrize("protocol", sorted(ROUTES))
def test_content_codings_stack_at_most_two_deep(minilm_server, protocol):
    """Each layer may expand to --max-request-bytes: 150 stacked gzip layers in 50 KB cost 0.75 s of the loop."""
    path, valid = ROUTES[protocol]
    raw = json.dumps(valid).encode()
    two = requests.post(minilm_server.url + path, data=gzip.compress(gzip.compress(raw)), timeout=30,
                        headers={"Content-Encoding": "gzip, gzip", "Content-Type": "application/json"})
    assert two.status_code == 200, two.text
    body = raw
    for _ in range(3):
        body = gzip.compress(body)
    three = requests.post(minilm_server.url + path, data=body, timeout=30,
                          headers={"Content-Encoding": "gzip, identity, gzip, gzip"})
    assert three.status_code == STATUS[protocol] and "at most 2" in three.text
    assert_shape(protocol, three)


@pytest.mark.parametrize("value", ["1_0", "+10", "١٠", "0x10", "9" * 5000])
def test_the_binary_header_length_takes_ascii_digits_only(minilm_server, value):
    response = requests.post(minilm_server.url + V2_INFER, data=b'{"inputs":[]}' + b"\0" * 8, timeout=30,
                             headers={"Inference-Header-Content-Length": value.encode()})
    assert response.status_code == 400 and "must be an integer" in response.json()["error"]


def test_an_unparsable_request_is_one_warning_line_that_quotes_nothing(minilm_server):
    """aiohttp logged the raw header (an API key with it) in a traceback."""
    import socket

    log_before = len(minilm_server.log())
    with socket.create_connection(("127.0.0.1", minilm_server.port), timeout=10) as connection:
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret-key\x00\r\n\r\n")
        answer = connection.recv(4096)
    assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n")[0]
    new_log = wait_for_log(minilm_server, log_before, "unparsable HTTP request")
    assert "s3cret-key" not in new_log and "Traceback" not in new_log
    assert requests.get(minilm_server.url + "/health", timeout=10).status_code == 200


def wait_for_log(server, start: int, words: str) -> str:
    from .serverproc import wait_until

    return wait_until(lambda: words in server.log()[start:] and server.log()[start:], f"{words!r} in the log",
                      timeout=10)


def test_a_client_that_resets_mid_body_is_no_internal_error(minilm_server):
    """The reset surfaced as ConnectionResetError from the body read and was logged as a failed request."""
    import socket
    import struct

    log_before = len(minilm_server.log())
    for _ in range(10):
        connection = socket.create_connection(("127.0.0.1", minilm_server.port), timeout=10)
        connection.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: 100000\r\n\r\n" + b"{" * 5000)
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.close()  # an RST, with the body cut short
    assert requests.post(minilm_server.url + "/v1/embeddings", json={"model": MODEL, "input": "after"},
                         timeout=30).status_code == 200
    new_log = minilm_server.log()[log_before:]
    assert "Traceback" not in new_log and " failed" not in new_log, new_log[-2000:]


@pytest.mark.parametrize("protocol", sorted(ROUTES))
def test_expect_continue_refuses_an_oversized_body_before_it_is_sent(minilm_server, protocol):
    """aiohttp answered 100 Continue to any Content-Length: the client uploaded all of it to get a 413."""
    import socket

    path, valid = ROUTES[protocol]
    with socket.create_connection(("127.0.0.1", minilm_server.port), timeout=10) as connection:
        connection.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           "Content-Length: 17000000\r\nExpect: 100-continue\r\n\r\n".encode())
        head, _, body = connection.recv(65536).partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 413 Request Entity Too Large", head
    assert b"larger than the server accepts" in body
    raw = json.dumps(valid).encode()
    with socket.create_connection(("127.0.0.1", minilm_server.port), timeout=30) as connection:
        connection.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           f"Content-Length: {len(raw)}\r\nExpect: 100-continue\r\n\r\n".encode())
        assert connection.recv(65536).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        connection.sendall(raw)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += connection.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200 OK"), answer[:200]

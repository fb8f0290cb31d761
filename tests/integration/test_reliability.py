"""Faults, overload, disconnects, shutdown and auth against real server processes."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys

import aiohttp
import psutil
import pytest

from .faulty_server import DIE_ID, FAIL_ID
from .repo_copy import copy_model, link_model
from .serverproc import ROOT, free_port, http_status, start_server

MODEL = "all-MiniLM-L6-v2"
LONG = "a long sentence that keeps the model busy for a while " * 30  # > 256 tokens: truncated to 256


@pytest.fixture
def repo(tmp_path, minilm_repository):
    link_model(minilm_repository, tmp_path, MODEL)
    return tmp_path


async def post(session, url, body, timeout=120):
    async with session.post(url, json=body, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
        return response.status, await response.json(content_type=None), response.headers.copy()


async def metric(session, url, name) -> float:
    async with session.get(url + "/metrics") as response:
        text = await response.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


async def test_a_failing_batch_fails_only_its_requests_without_leaking_internals(repo):
    server = start_server(repo, module="tests.integration.faulty_server")
    try:
        async with aiohttp.ClientSession() as session:
            url = server.url + "/v1/embeddings"
            status, body, headers = await post(session, url, {"model": MODEL, "input": [[FAIL_ID, 2000]]})
            assert status == 500
            assert set(body["error"]) == {"message", "type", "param", "code"}
            assert "secret" not in body["error"]["message"] and "Traceback" not in str(body)
            assert headers["X-Request-Id"]
            status, body, _ = await post(session, url, {"model": MODEL, "input": "still serving"})
            assert status == 200 and len(body["data"][0]["embedding"]) == 384
            assert http_status(server.url + "/v2/health/ready") == 200
    finally:
        assert server.stop() == 0


async def test_a_dead_inference_thread_turns_readiness_off_and_exits_non_zero(repo):
    server = start_server(repo, module="tests.integration.faulty_server")
    async with aiohttp.ClientSession() as session:
        status, body, _ = await post(session, server.url + "/v1/embeddings",
                                     {"model": MODEL, "input": [[DIE_ID, 2000]]}, timeout=30)
    assert status in (500, 503) and "error" in body
    assert server.process.wait(60) != 0
    assert "inference thread" in server.log()


async def test_overload_is_refused_honestly_with_retry_after(repo):
    server = start_server(repo, "--max-queue-size", "2")
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            body = {"model": MODEL, "input": [LONG] * 16}
            results = await asyncio.gather(*(post(session, server.url + "/v1/embeddings", body) for _ in range(12)))
            statuses = [status for status, _, _ in results]
            assert set(statuses) <= {200, 429} and statuses.count(200) >= 2 and 429 in statuses
            for status, payload, headers in results:
                if status == 429:
                    assert headers["Retry-After"] == "1" and payload["error"]["code"] == "rate_limit_exceeded"
            failures = await metric(session, server.url, "nv_inference_request_failure")
            assert failures == statuses.count(429)
    finally:
        assert server.stop() == 0


async def test_a_request_queued_past_its_deadline_is_answered_503_without_compute(repo):
    server = start_server(repo, "--request-timeout-ms", "300", "--max-batch-tokens", "2048")
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            body = {"model": MODEL, "input": [LONG] * 8}  # one batch of 8 x 256 tokens each
            results = await asyncio.gather(*(post(session, server.url + "/v1/embeddings", body) for _ in range(6)))
            statuses = [status for status, _, _ in results]
            assert 200 in statuses and 503 in statuses and set(statuses) <= {200, 503}
            computed = await metric(session, server.url, "nv_inference_count")
            assert computed == 8 * statuses.count(200)
    finally:
        assert server.stop() == 0


async def test_a_client_that_goes_away_costs_no_inference_and_frees_its_slot(repo):
    server = start_server(repo, "--max-queue-size", "1")
    try:
        async with aiohttp.ClientSession() as session:
            busy = asyncio.create_task(post(session, server.url + "/v1/embeddings",
                                            {"model": MODEL, "input": [LONG] * 64}))
            await asyncio.sleep(0.3)
            async with aiohttp.ClientSession() as leaving:
                with pytest.raises(asyncio.TimeoutError):
                    await post(leaving, server.url + "/v1/embeddings", {"model": MODEL, "input": ["bye"] * 7},
                               timeout=0.3)
            await asyncio.sleep(0.2)
            status, _, _ = await post(session, server.url + "/v1/embeddings", {"model": MODEL, "input": "next"})
            assert status == 200  # the departed request's queue slot was freed
            assert (await busy)[0] == 200
            assert await metric(session, server.url, "nv_inference_count") == 64 + 1
            assert await metric(session, server.url, "nv_inference_pending_request_count") == 0
    finally:
        assert server.stop() == 0


async def test_a_burst_far_above_capacity_gets_only_answers_and_memory_returns(repo):
    server = start_server(repo, "--max-queue-size", "32")
    process = psutil.Process(server.process.pid)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            warm = await post(session, server.url + "/v1/embeddings", {"model": MODEL, "input": [LONG] * 32})
            assert warm[0] == 200
            before = process.memory_info().rss
            texts = [f"burst text {i} " * (1 + i % 40) for i in range(400)]
            results = await asyncio.wait_for(asyncio.gather(*(
                post(session, server.url + "/v1/embeddings", {"model": MODEL, "input": t}) for t in texts)), 300)
            statuses = [status for status, _, _ in results]
            assert set(statuses) <= {200, 429} and statuses.count(200) >= 32
            await asyncio.sleep(1.0)
            after = process.memory_info().rss
            assert after < before * 1.25 + 64 * 2**20, (before, after)
            assert (await post(session, server.url + "/v1/embeddings", {"model": MODEL, "input": "ok"}))[0] == 200
    finally:
        assert server.stop() == 0


async def test_sigterm_drains_every_accepted_request_and_exits_zero(repo):
    server = start_server(repo, "--shutdown-grace-s", "30")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        requests = [asyncio.create_task(post(session, server.url + "/v1/embeddings",
                                             {"model": MODEL, "input": [LONG] * 8})) for _ in range(10)]
        await asyncio.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)
        results = await asyncio.wait_for(asyncio.gather(*requests), 120)
    assert [status for status, _, _ in results] == [200] * 10
    assert all(len(body["data"]) == 8 for _, body, _ in results)
    assert server.process.wait(60) == 0
    assert http_status(server.url + "/v2/health/ready") is None


def test_a_missing_model_file_stops_start_up_with_a_clear_error(tmp_path, minilm_repository):
    copy_model(minilm_repository, tmp_path, MODEL)
    (tmp_path / MODEL / "1" / "model.onnx").unlink()
    result = subprocess.run([sys.executable, "-m", "server", "--model-repository", str(tmp_path), "--port", str(free_port())],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "start-up failed" in result.stderr and MODEL in result.stderr and "Traceback" not in result.stderr


def test_a_corrupt_model_file_stops_start_up_with_a_clear_error(tmp_path, minilm_repository):
    copy_model(minilm_repository, tmp_path, MODEL)
    (tmp_path / MODEL / "1" / "model.onnx").write_bytes(b"not an onnx model" * 100)
    result = subprocess.run([sys.executable, "-m", "server", "--model-repository", str(tmp_path), "--port", str(free_port())],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "start-up failed" in result.stderr and "model.onnx" in result.stderr


def raw_request(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


async def test_api_key_guards_every_route_but_health(repo):
    server = start_server(repo, env={"OES_API_KEY": "s3cret"})
    try:
        async with aiohttp.ClientSession() as session:
            body = {"model": MODEL, "input": "x"}
            status, payload, _ = await post(session, server.url + "/v1/embeddings", body)
            assert status == 401 and payload["error"]["type"] == "authentication_error"
            async with session.post(server.url + "/v1/embeddings", json=body,
                                    headers={"Authorization": "Bearer wrong"}) as response:
                assert response.status == 401
            async with session.post(server.url + "/v1/embeddings", json=body,
                                    headers={"Authorization": "Bearer s3cret"}) as response:
                assert response.status == 200
            async with session.get(server.url + "/metrics") as response:
                assert response.status == 401
            async with session.get(server.url + "/openapi.json") as response:
                assert response.status == 401
            for path in ("/health", "/v2/health/live", "/v2/health/ready"):
                assert http_status(server.url + path) == 200
        for token in (b"Bearer \xff\xfe\x80", b"\xc3\x28 s3cret", b"Bearer s3cret\xff"):  # not UTF-8
            reply = raw_request(server.port, b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: " + token
                                + b"\r\nConnection: close\r\n\r\n")
            assert reply.startswith(b"HTTP/1.1 401"), reply[:300]
        assert "Traceback" not in server.log()
    finally:
        assert server.stop() == 0

"""Triton's own perf_analyzer against both protocols of a real server (unmodified repository, default flags).

perf_analyzer reads the model's metadata and config, builds requests from them and from `--input-data`, and
checks the server's statistics: it only runs when the metadata contract holds. The command is the documented
form; the only flags added bound the measurement on a shared test machine (count windows of 100 requests, any
stability, at most 3 windows). `make perf-analyzer` installs it into the venv; the test skips without it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from .test_kserve import MODEL, TEXTS

PERF_ANALYZER = shutil.which("perf_analyzer", path=str(Path(sys.executable).parent)) or shutil.which(
    "perf_analyzer")


def runs(command: str | None) -> bool:
    if command is None:
        return False
    result = subprocess.run([command, "--version"], capture_output=True, text=True, timeout=30)
    return result.returncode == 0 and "Perf Analyzer" in result.stdout + result.stderr


pytestmark = pytest.mark.skipif(not runs(PERF_ANALYZER),
                                reason="Triton's perf_analyzer is not installed (`make perf-analyzer`)")

BOUNDED = ["--measurement-mode", "count_windows", "--measurement-request-count", "100",
           "--stability-percentage", "100", "--max-trials", "3"]


def model_stats(server) -> dict:
    response = requests.get(f"{server.url}/v2/models/{MODEL}/stats", timeout=10)
    return response.json()["model_stats"][0]["inference_stats"]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_perf_analyzer_runs_against_both_protocols_without_errors(minilm_server, tmp_path, protocol):
    texts = tmp_path / "texts.json"
    texts.write_text(json.dumps({"data": [{"TEXT": [text]} for text in TEXTS]}))
    port = minilm_server.port if protocol == "http" else minilm_server.grpc_port
    before = model_stats(minilm_server)
    command = [PERF_ANALYZER, "-i", protocol, "-u", f"127.0.0.1:{port}", "-m", MODEL, "--input-data", str(texts),
               "--shape", "TEXT:1", "--concurrency-range", "4:4", *BOUNDED]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Throughput:" in output and "error" not in output.lower(), output
    after = model_stats(minilm_server)
    assert after["fail"]["count"] == before["fail"]["count"]
    assert after["success"]["count"] - before["success"]["count"] >= 100

"""The benchmark's protocol floor (`benchmarks/apps/kserve_floor.py`) answers Triton's clients as the server does.

perf_analyzer drives the floor with the same command as the server, so its metadata and config must be the
server's, and its canned answer must carry the outputs the server returns for one text, with their shapes and
data types, over HTTP and gRPC alike.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from benchmarks import perf
from benchmarks.contenders import Setup, catalogue, started
from benchmarks.onnx_model import locate

from .test_kserve import MODEL
from .test_perf_analyzer import BOUNDED, PERF_ANALYZER, runs

OUTPUTS = ("sentence_embedding", "chunk_embedding", "chunk_count", "chunk_span")


@pytest.fixture(scope="module")
def floor(minilm_repository, tmp_path_factory):
    work = tmp_path_factory.mktemp("floor")
    setup = Setup(minilm_repository, MODEL, Path("."), work)
    contender = catalogue(setup, locate(minilm_repository, MODEL))["floor"]()
    with started(contender, work) as running:
        yield running


def _answer(module, url: str) -> dict[str, np.ndarray]:
    with module.InferenceServerClient(url) as client:
        text = module.InferInput("TEXT", [1, 1], "BYTES")
        text.set_data_from_numpy(np.array([["A man is playing a flute."]], dtype=object))
        outputs = [module.InferRequestedOutput(name) for name in OUTPUTS]
        result = client.infer(MODEL, [text], outputs=outputs)
        return {name: result.as_numpy(name) for name in OUTPUTS}


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_floor_answers_with_the_servers_metadata_config_and_output_shapes(floor, minilm_server, protocol):
    module = httpclient if protocol == "http" else grpcclient
    floor_url = f"127.0.0.1:{floor.port if protocol == 'http' else perf.grpc_port(floor)}"
    ours_url = f"127.0.0.1:{minilm_server.port if protocol == 'http' else minilm_server.grpc_port}"
    with module.InferenceServerClient(floor_url) as there, module.InferenceServerClient(ours_url) as here:
        assert there.is_server_ready()
        assert there.get_model_metadata(MODEL) == here.get_model_metadata(MODEL)
        assert there.get_model_config(MODEL) == here.get_model_config(MODEL)
    canned, real = _answer(module, floor_url), _answer(module, ours_url)
    assert {n: (a.shape, a.dtype) for n, a in canned.items()} == {n: (a.shape, a.dtype) for n, a in real.items()}


@pytest.mark.skipif(not runs(PERF_ANALYZER), reason="Triton's perf_analyzer is not installed (`make perf-analyzer`)")
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_perf_analyzer_runs_against_the_floor_without_errors(floor, tmp_path, protocol):
    """As `benchmarks.perf` runs it: the issue's command, bounded like the server's perf_analyzer test."""
    texts = perf.input_data(["A man is playing a flute.", "Grüße ✓"], tmp_path / "texts.json")
    port = floor.port if protocol == "http" else perf.grpc_port(floor)
    command = perf.command(PERF_ANALYZER, port, MODEL, texts, 4, tmp_path / "out.csv", 5000, BOUNDED, protocol)
    result = subprocess.run(command, capture_output=True, text=True, timeout=240)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert perf.parse_csv((tmp_path / "out.csv").read_text())["texts_per_s"] > 0

"""GPU checks: they run where ONNX Runtime's CUDA provider really works and skip everywhere else."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest

from server.session import CUDA, SessionSpec, create_session

from ..integration.serverproc import ROOT, start_server


def cuda_works() -> bool:
    if CUDA not in ort.get_available_providers():
        return False
    try:
        probe = subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not cuda_works(), reason="no working CUDA device / onnxruntime-gpu")]
MODEL = "all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def gpu_repository(tmp_path_factory):
    repository = tmp_path_factory.mktemp("gpu-models")
    subprocess.run([sys.executable, "-m", "export", "--repository", str(repository), "--name", MODEL,
                    "--precision", "fp32", "fp16"], cwd=ROOT, check=True, timeout=900)
    return repository


def test_a_gpu_session_really_runs_on_cuda(gpu_repository):
    session = create_session(SessionSpec(gpu_repository / MODEL / "1" / "model.onnx", "gpu"))
    assert session.get_providers()[0] == CUDA


def test_fp16_variant_served_on_gpu_matches_sentence_transformers(gpu_repository, st_minilm):
    import openai

    texts = ["hello world", "Grüße aus Köln", "a longer sentence about GPUs " * 20]
    server = start_server(gpu_repository, "--device", "gpu", "--models", MODEL)
    try:
        assert "CUDAExecutionProvider" in server.log()
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        got = np.array([d.embedding for d in client.embeddings.create(model=MODEL, input=texts).data])
    finally:
        assert server.stop() == 0
    reference = st_minilm.encode(texts, convert_to_numpy=True)
    cos = (got * reference).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(reference, axis=1)
    assert cos.min() >= 0.999

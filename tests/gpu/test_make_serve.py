"""`make serve` on a GPU host: the export and serve commands the Makefile picks (DEVICE=gpu) really serve on CUDA.

Runs the commands `make -n serve DEVICE=gpu` prints (with this interpreter), so the decision tested in
tests/unit/test_makefile.py is the one checked here on a real GPU. Skips without a working CUDA device.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest

from ..integration.serverproc import ROOT, start_server
from .test_cuda import MODEL, cuda_works

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not cuda_works(), reason="no working CUDA device / onnxruntime-gpu"),
              pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")]


def make_serve_commands(venv, models) -> list[list[str]]:
    venv.mkdir()
    (venv / ".installed-serve").touch()  # this interpreter's environment is the one under test
    printed = subprocess.run(["make", "-n", "--no-print-directory", "-C", str(ROOT), "serve", "DEVICE=gpu",
                              f"VENV={venv}", f"PY={sys.executable}", f"MODELS={models}"],
                             capture_output=True, text=True, timeout=60, check=True).stdout
    return [shlex.split(line) for line in printed.splitlines() if line.strip()]


def test_make_serve_on_a_gpu_host_exports_fp16_and_serves_every_model_on_cuda(tmp_path, st_minilm):
    import openai

    models = tmp_path / "models"
    export, serve = make_serve_commands(tmp_path / "venv", models)
    assert export[1:3] == ["-m", "export"] and serve[1:3] == ["-m", "server"]
    subprocess.run(export, cwd=ROOT, check=True, timeout=900)
    assert (models / f"{MODEL}-fp16" / "config.pbtxt").is_file()
    assert not (models / f"{MODEL}-int8").exists()
    args = serve[3:]
    for dropped in ("--host", "--port"):  # the test picks a free loopback port
        i = args.index(dropped)
        del args[i:i + 2]
    args = [a for a in args if a != "--model-repository" and a != str(models)]
    server = start_server(models, *args)
    texts = ["hello world", "a longer sentence about GPUs " * 20]
    try:
        assert "CUDAExecutionProvider" in server.log()
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        served = {name: np.array([d.embedding for d in client.embeddings.create(model=name, input=texts).data])
                  for name in (MODEL, f"{MODEL}-fp16")}
    finally:
        assert server.stop() == 0
    reference = st_minilm.encode(texts, convert_to_numpy=True)
    for name, got in served.items():
        cos = (got * reference).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(reference, axis=1)
        assert cos.min() >= 0.999, (name, cos)

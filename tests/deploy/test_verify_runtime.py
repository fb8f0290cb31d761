"""deploy/docker/verify_runtime.py: the build-time guard of the runtime image's install set."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
from .oes_deploy_helpers import DEPLOY

SCRIPT = DEPLOY / "docker" / "verify_runtime.py"
spec = importlib.util.spec_from_file_location("verify_runtime", SCRIPT)
vr = importlib.util.module_from_spec(spec)
sys.modules["verify_runtime"] = vr
spec.loader.exec_module(vr)

BASE = {"aiohttp", "numpy", "tokenizers", "prometheus-client", "protobuf", "tritonclient", "orjson"}


def gpu_facts(**kw) -> "vr.Facts":
    f = vr.Facts(
        device="gpu",
        installed=BASE | {"onnxruntime-gpu"},
        ort_version="1.31.1",
        ort_providers=["CUDAExecutionProvider", "CPUExecutionProvider"],
        ort_cuda_version="13.1",
        image_cuda_version="13.1.1",
    )
    for k, v in kw.items():
        setattr(f, k, v)
    return f


def cpu_facts(**kw) -> "vr.Facts":
    f = vr.Facts(device="cpu", installed=BASE | {"onnxruntime"}, ort_version="1.31.1", ort_providers=["CPUExecutionProvider"])
    for k, v in kw.items():
        setattr(f, k, v)
    return f


def test_good_images_pass():
    assert vr.problems(gpu_facts()) == []
    assert vr.problems(cpu_facts()) == []
    assert vr.problems(gpu_facts(ort_cuda_version=None)) == []  # no build info: nothing to compare


@pytest.mark.parametrize(
    "facts, needle",
    [
        (lambda: gpu_facts(installed=BASE | {"onnxruntime-gpu", "torch"}), "torch"),
        (lambda: cpu_facts(installed=BASE | {"onnxruntime", "transformers", "sentence-transformers"}), "transformers"),
        (lambda: gpu_facts(installed=BASE | {"onnxruntime-gpu", "optimum"}), "optimum"),
        (lambda: gpu_facts(installed=BASE | {"onnxruntime-gpu", "onnxruntime"}), "overwrite"),
        (lambda: cpu_facts(installed=BASE | {"onnxruntime", "onnxruntime-gpu"}), "overwrite"),
        (lambda: gpu_facts(installed=BASE | {"onnxruntime"}), "onnxruntime-gpu is not installed"),
        (lambda: gpu_facts(ort_providers=["CPUExecutionProvider"]), "CUDAExecutionProvider"),
        (lambda: gpu_facts(image_cuda_version="12.9.1"), "CUDA 13.1"),
        (lambda: gpu_facts(image_cuda_version=None), "CUDA_VERSION"),
        (lambda: cpu_facts(ort_providers=["CUDAExecutionProvider", "CPUExecutionProvider"]), "CUDA-enabled"),
        (lambda: cpu_facts(ort_version=None), "cannot be imported"),
    ],
)
def test_bad_images_fail(facts, needle):
    errs = vr.problems(facts())
    assert any(needle in e for e in errs), errs


def test_script_flags_this_dev_venv_as_not_a_runtime_image():
    """The dev/CI venv has the export set (torch, transformers) installed: the real collector must see it."""
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed in this environment")
    r = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    assert "torch" in r.stderr

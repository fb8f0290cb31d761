"""deploy/README.md documents what the files do: builds, run, deploy, per-GPU tuning, version matrix."""

from __future__ import annotations

import re

from .oes_deploy_helpers import DEFAULT_SHUTDOWN_GRACE_S, DOCKERIGNORE, README, SERVER_PORT, expected_cuda_major, load_dockerfile, pinned, pyproject

TEXT = README.read_text()
DF = load_dockerfile()


def test_build_commands_for_gpu_and_cpu():
    builds = [ln for ln in TEXT.splitlines() if ln.strip().startswith("docker build")]
    assert any("DEVICE" not in b for b in builds), "default (GPU) build"
    assert any("--build-arg DEVICE=cpu" in b for b in builds), "CPU build"
    assert "--build-arg MODEL=" in TEXT and "--build-arg MODEL_NAME=" in TEXT
    # A default build needs no extra build context (the int8 gate's STS-B data ships in data/stsb).
    assert not any("--build-context" in b for b in builds), builds


def test_nothing_outside_the_repository_is_named():
    outside = "shared" + "/"  # built from parts so that this file does not name such a folder itself
    for text in (TEXT, DF.text, DOCKERIGNORE.read_text()):
        assert "../" not in text and outside not in text
        assert "--build-context" not in text.replace("no `--build-context`", "")


def test_run_command_publishes_the_port_with_gpus_and_a_stop_timeout():
    runs = [ln for ln in TEXT.splitlines() if ln.strip().startswith("docker run")]
    gpu = [r for r in runs if "--gpus all" in r]
    assert gpu and all(f"-p {SERVER_PORT}:{SERVER_PORT}" in r for r in gpu)
    grace = int(DF.final.env().get("OES_SHUTDOWN_GRACE_S", DEFAULT_SHUTDOWN_GRACE_S))
    for r in runs:
        m = re.search(r"--stop-timeout (\d+)", r)
        assert m and int(m.group(1)) > grace, r


def test_deploy_instructions():
    assert "kubectl apply -f deploy/kubernetes/" in TEXT
    assert "deploy/kserve/servingruntime.yaml" in TEXT and "deploy/kserve/inferenceservice.yaml" in TEXT
    assert "terminationGracePeriodSeconds" in TEXT


def test_per_gpu_tuning_knobs():
    for knob in ("OES_CUDA_OPTIONS", "gpu_mem_limit", "arena_extend_strategy", "instance_group", "OES_MAX_BATCH_TOKENS"):
        assert knob in TEXT, knob


def test_version_matrix_matches_the_pins_and_the_base_image():
    ort_gpu = pinned(pyproject()["project"]["optional-dependencies"]["gpu"], "onnxruntime-gpu")
    base = DF.resolve(DF.stage("runtime-gpu").base)
    rows = [ln for ln in TEXT.splitlines() if ln.startswith("|") and ort_gpu in ln]
    assert rows, f"no matrix row for onnxruntime-gpu {ort_gpu}"
    row = rows[0]
    assert f"| {expected_cuda_major(ort_gpu)}.x |" in row
    assert f"`{base}`" in row

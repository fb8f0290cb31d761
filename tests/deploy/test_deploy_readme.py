"""deploy/README.md agrees with the files it documents: its run commands outlast the image's grace period, its
version matrix names the pinned onnxruntime-gpu and the base image, and it names nothing outside the repository."""

from __future__ import annotations

import re

from .oes_deploy_helpers import DEFAULT_SHUTDOWN_GRACE_S, DOCKERIGNORE, README, SERVER_PORT, expected_cuda_major, load_dockerfile, pinned, pyproject

TEXT = README.read_text()
DF = load_dockerfile()


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


def test_version_matrix_matches_the_pins_and_the_base_image():
    ort_gpu = pinned(pyproject()["project"]["optional-dependencies"]["gpu"], "onnxruntime-gpu")
    base = DF.resolve(DF.stage("runtime-gpu").base)
    rows = [ln for ln in TEXT.splitlines() if ln.startswith("|") and ort_gpu in ln]
    assert rows, f"no matrix row for onnxruntime-gpu {ort_gpu}"
    row = rows[0]
    assert f"| {expected_cuda_major(ort_gpu)}.x |" in row
    assert f"`{base}`" in row

"""deploy/docker/image_test.py (`make image-test`): its pure parts here; the whole run when a daemon is reachable.

The whole run builds the real image and checks it as a user would (tens of minutes on a cold cache). It runs
only when a Docker daemon is reachable already and never installs anything (`--no-install`): `make test`
never installs Docker, only `make image-test` may.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request

import pytest
from .oes_deploy_helpers import DEPLOY, ROOT

SCRIPT = DEPLOY / "docker" / "image_test.py"
# The script and its sibling modules import each other as top-level modules (the script's folder is its path).
sys.path.insert(0, str(SCRIPT.parent))
import image_test as it  # noqa: E402
import imagetest_daemon as daemon  # noqa: E402
import imagetest_inputs as inputs  # noqa: E402


def test_apt_mirror_from_deb822_and_one_line_sources(tmp_path):
    deb822 = tmp_path / "debian.sources"
    deb822.write_text("Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n")
    one_line = tmp_path / "sources.list"
    one_line.write_text("# comment\ndeb [arch=amd64] http://other.example/debian bookworm main\n")
    unrelated = tmp_path / "node.sources"
    unrelated.write_text("Types: deb\nURIs: https://deb.nodesource.com/node_20.x\n")
    assert inputs.apt_mirror([unrelated, deb822]) == "http://mirror.example/debian"
    assert inputs.apt_mirror([one_line]) == "http://other.example/debian"
    assert inputs.apt_mirror([unrelated, tmp_path / "missing"]) == inputs.DEBIAN_MIRROR


def test_find_cpu_torch_wheel_takes_the_pinned_cpu_build_only(tmp_path):
    for name in ("torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl",  # PyPI's CUDA build
                 "torch-2.12.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl",  # another version
                 "torch-2.13.0+cpu-cp312-cp312-manylinux_2_28_x86_64.whl"):  # another Python
        (tmp_path / name).write_bytes(b"")
    assert inputs.find_cpu_torch_wheel([str(tmp_path)], "2.13.0") is None
    good = tmp_path / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
    good.write_bytes(b"")
    assert inputs.find_cpu_torch_wheel(["/nonexistent", f"file://{tmp_path}"], "2.13.0") == good


def test_pinned_torch_is_pyprojects_pin():
    assert inputs.pinned_torch().count(".") == 2


def test_the_wheel_server_lists_the_wheel_for_pip(tmp_path):
    wheel = tmp_path / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
    wheel.write_bytes(b"wheel bytes")
    with inputs.serve_folder([wheel], port=0) as url:
        assert url.startswith("http://127.0.0.1:")
        page = urllib.request.urlopen(url, timeout=10).read().decode()
        assert "torch-2.13.0%2Bcpu-cp311" in page  # an <a href> pip's --find-links follows
        assert urllib.request.urlopen(url + "torch-2.13.0%2Bcpu-cp311-cp311-manylinux_2_28_x86_64.whl",
                                      timeout=10).read() == b"wheel bytes"


def test_build_inputs_become_docker_build_flags():
    given = inputs.BuildInputs(build_args={"PYTHON_IMAGE": "base:1", "TORCH_FIND_LINKS": "http://127.0.0.1:1/"},
                               secrets=["id=pip_ca,src=/ca.crt"])
    assert given.flags() == ["--network", "host", "--build-arg", "PYTHON_IMAGE=base:1", "--build-arg",
                             "TORCH_FIND_LINKS=http://127.0.0.1:1/", "--secret", "id=pip_ca,src=/ca.crt"]


def test_min_cosine_flags_a_differing_vector():
    same = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    assert it.min_cosine(same, [[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]]) == pytest.approx(1.0)
    assert it.min_cosine(same, [[1.0, 0.0, 0.0], [0.0, 1.0, 0.01]]) < it.MIN_COSINE
    with pytest.raises(it.CheckFailed):
        it.min_cosine(same, same[:1])


def test_without_a_daemon_and_without_install_rights_it_skips_with_the_reason(tmp_path):
    """`--no-install` never installs: no daemon on a dead socket -> exit 77 and the reason."""
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/none.sock"}
    r = subprocess.run([sys.executable, str(SCRIPT), "--no-install", "--docker", str(tmp_path / "no-docker"),
                        "--state-dir", str(tmp_path / "state")], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == it.SKIP, r.stdout + r.stderr
    assert "SKIP:" in r.stdout and "would install" in r.stdout


def docker_client() -> str:
    return os.environ.get("DOCKER") or "/usr/bin/docker"


def reachable_daemon() -> str | None:
    return daemon.daemon_version(docker_client(), dict(os.environ))


@pytest.mark.timeout(3600)
def test_make_image_test_builds_and_runs_the_image():
    version = reachable_daemon()
    if version is None:
        pytest.skip(f"no Docker daemon reachable with {docker_client()} (DOCKER_HOST="
                    f"{os.environ.get('DOCKER_HOST', 'default')}); `make image-test` can start one")
    r = subprocess.run([sys.executable, str(SCRIPT), "--no-install", "--docker", docker_client()], cwd=ROOT,
                       capture_output=True, text=True, timeout=3500)
    print(r.stdout[-6000:])
    if r.returncode == it.SKIP:
        pytest.skip(r.stdout.strip().splitlines()[-1])
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    assert "PASSED" in r.stdout


class FakeDocker:
    """Stands in for the docker client: answers `docker run` with a canned output."""

    def __init__(self, stdout: str) -> None:
        self.stdout = stdout
        self.calls: list[tuple[str, ...]] = []

    def run(self, *args: str, input: str | None = None, **_: object) -> subprocess.CompletedProcess:
        self.calls.append(args)
        assert input is not None and "def problems" in input  # this checkout's verify_runtime.py goes in
        return subprocess.CompletedProcess(args, 0, self.stdout, "")


def test_verify_runtime_cases_run_in_one_container_and_are_parsed():
    out = ("=== 13.x\nruntime image: device=gpu\n=== rc 0\n"
           "=== 12.x\nruntime image: device=gpu\nERROR: onnxruntime-gpu 1.31.1 is built for CUDA 13.0 but the base "
           "image has CUDA 12.9.1\n=== rc 1\n"
           "=== unset\nERROR: CUDA_VERSION is not set\n=== rc 1\n")
    docker = FakeDocker(out)
    results = it.verify_runtime_cases(docker, "img")
    assert len(docker.calls) == 1 and "--network" in docker.calls[0]
    assert results["13.x"] == (0, "runtime image: device=gpu")
    assert results["12.x"][0] == 1 and "CUDA 12.9.1" in results["12.x"][1]
    assert results["unset"] == (1, "ERROR: CUDA_VERSION is not set")
    it.check_gpu_installed(FakeDocker(out), "img")  # the checks accept exactly this
    with pytest.raises(it.CheckFailed):
        it.check_gpu_installed(FakeDocker(out.replace("=== rc 1\n=== unset", "=== rc 0\n=== unset")), "img")
    with pytest.raises(it.CheckFailed):
        it.verify_runtime_cases(FakeDocker("=== 13.x\nboom\n"), "img")


def test_mounts_under_finds_the_daemons_leftovers_deepest_first(tmp_path):
    state = tmp_path / "state"
    mounts = tmp_path / "mounts"
    mounts.write_text(f"proc /proc proc rw 0 0\nnsfs {state}/exec/netns/default nsfs rw 0 0\n"
                      f"tmpfs {state}/exec tmpfs rw 0 0\nnsfs {tmp_path}/stateful/x nsfs rw 0 0\n")
    assert daemon.mounts_under(state, mounts) == [f"{state}/exec/netns/default", f"{state}/exec"]
    assert daemon.mounts_under(state, tmp_path / "missing") == []

"""Build the real Docker image and check it as a user would (`make image-test`; `make test` never installs).

    python deploy/docker/image_test.py [--docker /usr/bin/docker] [--no-install] [--skip-gpu]

1. A Docker daemon: the one the client reaches (DOCKER_HOST / its default socket); otherwise, as root with
   apt, it INSTALLS Debian's docker.io (+ debootstrap) and starts a private daemon (vfs storage, no bridge, no
   iptables, its own socket and data root under --state-dir), which it stops again at the end.
2. The CPU flavour of the repository's Dockerfile, the same stages a user builds. Only what this machine lacks
   is substituted, each only when the user's normal source is unreachable:
   - the base image: `python:3.11-slim-trixie` when the daemon has or can pull it, else a Debian bookworm
     stand-in made with debootstrap and `docker import`;
   - the CA pip trusts: the build secret `pip_ca` from pip's configured `cert` (a TLS-intercepting proxy);
   - torch: the PyTorch CPU index when reachable, else `TORCH_FIND_LINKS` pointing at a loopback HTTP server
     that serves the CPU torch wheel found in pip's find-links folders.
3. The image is run and checked: Docker's HEALTHCHECK turns healthy; `/v1/embeddings` and
   `/v2/models/<m>/infer` answer with the vectors of a local server on the same exported model
   (cosine >= 0.99999); the server (PID 1) runs as uid 10001; the image holds no torch/transformers/optimum;
   its size is reported; `docker stop` with requests in flight answers them all and exits 0.
4. The GPU flavour's `installed` stage on a stand-in base (the CPU base + CUDA_VERSION=13.1.1; no nvidia/cuda
   here): `pip install ./[gpu]` installs and verify_runtime.py passes; it fails with CUDA_VERSION 12.x or
   unset.

Exit status: 0 all checks passed, 1 a check failed, 77 cannot run here (the reason is printed; `--no-install`
turns "would install a package" into this).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from imagetest_common import SKIP, CannotRun, CheckFailed, check, say
from imagetest_daemon import Docker, connect, stop_daemon, unmount_leftovers
from imagetest_inputs import (DEFAULT_PYTHON_IMAGE, ROOT, TAG, BuildInputs, build_inputs, cuda_standin,
                              python_base)

MODEL = "all-MiniLM-L6-v2"
USER_UID = "10001"
MIN_COSINE = 0.99999
FORBIDDEN = ("torch", "transformers", "sentence-transformers", "optimum", "optimum-onnx")
STANDIN_CUDA_VERSION = "13.1.1"
TEXTS = [
    "A man is playing a guitar.",
    "The new movie is awesome!",
    "ONNX Runtime serves sentence embeddings on a CPU.",
    "Ein Satz auf Deutsch, mit Umlauten: Grüße aus Köln.",
    "long " * 300,
]
DRAIN_TEXT = "a long sentence about embeddings and batching that keeps an inference thread busy " * 6


# ------------------------------------------------------------------------------------------------- build


def build(docker: Docker, tag: str, inputs: BuildInputs, *extra: str, log: Path) -> float:
    say(f"docker build -t {tag} {' '.join(extra)} (log: {log})")
    start = time.monotonic()
    env = {**docker.env, "DOCKER_BUILDKIT": "1"}
    with open(log, "w") as out:
        cmd = [docker.binary, "build", "--progress=plain", "-t", tag, *inputs.flags(), *extra, str(ROOT)]
        r = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=5400)
    took = time.monotonic() - start
    if r.returncode != 0:
        raise CheckFailed(f"docker build -t {tag} failed after {took:.0f} s:\n{log.read_text()[-4000:]}")
    say(f"built {tag} in {took:.0f} s")
    return took


def image_size(docker: Docker, tag: str) -> int:
    return int(docker.out("image", "inspect", "-f", "{{.Size}}", tag))


# ------------------------------------------------------------------------------------------------- HTTP


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(url: str, body: dict, timeout: float = 120) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def get_text(url: str, timeout: float = 10) -> tuple[int | None, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except (OSError, urllib.error.URLError):
        return None, ""


def openai_vectors(base: str, model: str) -> list[list[float]]:
    status, body = post(base + "/v1/embeddings", {"model": model, "input": TEXTS})
    if status != 200:
        raise CheckFailed(f"/v1/embeddings ({model}) answered {status}: {body}")
    return [d["embedding"] for d in sorted(body["data"], key=lambda d: d["index"])]


def kserve_vectors(base: str, model: str) -> list[list[float]]:
    body = {"inputs": [{"name": "TEXT", "datatype": "BYTES", "shape": [len(TEXTS)], "data": TEXTS}]}
    status, reply = post(base + f"/v2/models/{model}/infer", body)
    if status != 200:
        raise CheckFailed(f"/v2/models/{model}/infer answered {status}: {reply}")
    out = reply["outputs"][0]
    rows, dim = out["shape"]
    data = out["data"]
    return [data[i * dim:(i + 1) * dim] for i in range(rows)]


def min_cosine(a: list[list[float]], b: list[list[float]]) -> float:
    import numpy as np

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise CheckFailed(f"vector shapes differ: {x.shape} vs {y.shape}")
    cos = (x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))
    return float(cos.min())


def metric_value(base: str, name: str) -> float:
    status, text = get_text(base + "/metrics")
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_ready(url: str, proc: subprocess.Popen | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise CheckFailed(f"the local reference server exited {proc.returncode}")
        if get_text(url + "/v2/health/ready", timeout=2)[0] == 200:
            return
        time.sleep(0.3)
    raise CheckFailed(f"{url} not ready within {timeout:.0f} s")


@contextlib.contextmanager
def local_server(repository: Path) -> Iterator[str]:
    """This checkout's `python -m server` (the interpreter running this script) on the image's model files."""
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="oes-local-", suffix=".log", delete=False)
    proc = subprocess.Popen([sys.executable, "-m", "server", "--model-repository", str(repository), "--host",
                             "127.0.0.1", "--port", str(port)], cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc, 180)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


# ---------------------------------------------------------------------------------------------- checks


@dataclass
class Container:
    docker: Docker
    name: str
    url: str

    def inspect(self, fmt: str) -> str:
        return self.docker.out("inspect", "-f", fmt, self.name)


def has_bridge(docker: Docker) -> bool:
    return docker.run("network", "inspect", "bridge", check=False).returncode == 0


def start_container(docker: Docker, tag: str) -> Container:
    name = f"{TAG}-{os.getpid()}"
    port = free_port()
    if has_bridge(docker):
        net = ["-p", f"127.0.0.1:{port}:8000"]
    else:  # a daemon without a bridge (ours): host network, the server on loopback only
        net = ["--network", "host", "-e", "OES_HOST=127.0.0.1", "-e", f"OES_PORT={port}"]
    docker.run("run", "-d", "--name", name, "--stop-timeout", "45", *net, tag)
    say(f"started container {name} on 127.0.0.1:{port}")
    return Container(docker, name, f"http://127.0.0.1:{port}")


def wait_healthy(c: Container, timeout: float = 300) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        state = json.loads(c.inspect("{{json .State}}"))
        if not state.get("Running"):
            logs = c.docker.run("logs", c.name, check=False).stderr
            raise CheckFailed(f"the container stopped (exit {state.get('ExitCode')}):\n{logs[-3000:]}")
        status = (state.get("Health") or {}).get("Status")
        if status == "healthy":
            return time.monotonic() - start
        if status == "unhealthy":
            raise CheckFailed(f"HEALTHCHECK reports unhealthy: {state['Health'].get('Log', [])[-1:]}")
        time.sleep(1)
    raise CheckFailed(f"not healthy within {timeout:.0f} s")


def check_install_set(c: Container) -> None:
    code = ("import importlib.metadata as m, json; "
            "print(json.dumps(sorted({(d.metadata['Name'] or '').lower() for d in m.distributions()})))")
    names = set(json.loads(c.docker.out("exec", c.name, "python", "-c", code)))
    leaked = sorted(set(FORBIDDEN) & names)
    check(not leaked and "onnxruntime" in names and "onnxruntime-gpu" not in names,
          f"runtime image holds onnxruntime and none of {', '.join(FORBIDDEN)} (leaked: {leaked or 'none'})")


def check_user(c: Container) -> None:
    status = c.docker.out("exec", c.name, "cat", "/proc/1/status")
    uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)", status, re.MULTILINE)
    cmdline = c.docker.out("exec", c.name, "cat", "/proc/1/cmdline").replace("\0", " ").strip()
    check(uids is not None and uids.groups() == (USER_UID, USER_UID) and cmdline.endswith("-m server"),
          f"PID 1 `{cmdline}` runs as uid {uids.groups() if uids else '?'} (non-root {USER_UID})")


def check_vectors(c: Container, work: Path) -> None:
    repo = work / "models"
    c.docker.run("cp", f"{c.name}:/models", str(repo))
    models = sorted(p.parent.name for p in repo.glob("*/config.pbtxt"))
    say(f"the image's model repository: {models}")
    check(MODEL in models and f"{MODEL}-int8" in models, f"the image serves {MODEL} and its int8 variant")
    with local_server(repo) as local:
        for model in (MODEL, f"{MODEL}-int8"):
            for api, fetch in (("/v1/embeddings", openai_vectors), ("/v2/models/.../infer", kserve_vectors)):
                cos = min_cosine(fetch(c.url, model), fetch(local, model))
                check(cos >= MIN_COSINE, f"{api} {model}: image vs local server min cosine {cos:.7f}")


def timed_post(url: str, body: dict, timeout: float) -> tuple[int | str, float]:
    """(status or the error, monotonic time of the answer)."""
    try:
        status = post(url, body, timeout)[0]
    except (OSError, urllib.error.URLError, ValueError) as exc:
        status = f"{type(exc).__name__}: {exc}"
    return status, time.monotonic()


def check_drain(c: Container) -> None:
    """`docker stop` while requests are queued: every one is answered 200 (some after the stop began, so they
    were in flight), then the server exits 0 within the stop timeout."""
    n, batch = 12, 32
    body = {"model": MODEL, "input": [DRAIN_TEXT] * batch}
    pool = concurrent.futures.ThreadPoolExecutor(n)
    futures = [pool.submit(timed_post, c.url + "/v1/embeddings", body, 180) for _ in range(n)]
    deadline = time.monotonic() + 60
    while metric_value(c.url, "nv_inference_pending_request_count") < 1:
        if time.monotonic() > deadline or all(f.done() for f in futures):
            raise CheckFailed("could not get requests queued in the server before docker stop")
        time.sleep(0.05)
    start = time.monotonic()
    stop = c.docker.run("stop", c.name, check=False, timeout=120)
    took = time.monotonic() - start
    results = [f.result(timeout=180) for f in futures]
    pool.shutdown()
    statuses = [status for status, _ in results]
    after = sum(1 for _, at in results if at > start)
    code = c.inspect("{{.State.ExitCode}}")
    check(stop.returncode == 0 and statuses == [200] * n and after >= 1 and code == "0",
          f"docker stop with {n} requests sent: {statuses.count(200)}/{n} answered 200 "
          f"({after} after the stop began), exit code {code}, stop took {took:.1f} s "
          f"(statuses: {sorted(set(map(str, statuses)))})")


def check_cpu_image(docker: Docker, tag: str, work: Path) -> None:
    c = start_container(docker, tag)
    try:
        took = wait_healthy(c)
        check(True, f"HEALTHCHECK healthy {took:.0f} s after start")
        check_user(c)
        check_install_set(c)
        check_vectors(c, work)
        check_drain(c)
    finally:
        if c.inspect("{{.State.Running}}") == "true":
            say("container log tail:\n" + c.docker.run("logs", "--tail", "40", c.name, check=False).stderr)
        docker.run("rm", "-f", c.name, check=False)


VERIFY_CASES = {
    "13.x": f"CUDA_VERSION={STANDIN_CUDA_VERSION}",
    "12.x": "CUDA_VERSION=12.9.1",
    "unset": "-u CUDA_VERSION",
}


def verify_runtime_cases(docker: Docker, tag: str) -> dict[str, tuple[int, str]]:
    """verify_runtime.py (this checkout's) in one container of `tag`, once per CUDA_VERSION case:
    {case: (exit status, output)}. One container: with vfs every container start copies the whole image."""
    lines = ["cat > /tmp/verify_runtime.py"]
    for case, env in VERIFY_CASES.items():
        lines.append(f"echo '=== {case}'; env {env} python /tmp/verify_runtime.py --device gpu 2>&1; "
                     'echo "=== rc $?"')
    script = (ROOT / "deploy" / "docker" / "verify_runtime.py").read_text()
    out = docker.run("run", "--rm", "-i", "--network", "none", tag, "bash", "-c", "; ".join(lines),
                     input=script).stdout
    results: dict[str, tuple[int, str]] = {}
    for m in re.finditer(r"^=== (\S+)\n(.*?)^=== rc (\d+)$", out, re.MULTILINE | re.DOTALL):
        results[m.group(1)] = (int(m.group(3)), m.group(2).strip())
    if set(results) != set(VERIFY_CASES):
        raise CheckFailed(f"unexpected verify_runtime.py output:\n{out[-3000:]}")
    return results


def check_gpu_installed(docker: Docker, tag: str) -> None:
    results = verify_runtime_cases(docker, tag)
    rc, out = results["13.x"]
    check(rc == 0, f"verify_runtime.py passes with CUDA_VERSION={STANDIN_CUDA_VERSION}: "
                   f"{out.splitlines()[0]}")
    rc, out = results["12.x"]
    check(rc == 1 and "CUDA 12.9.1" in out, f"... and fails with CUDA_VERSION=12.9.1: {out.splitlines()[-1]}")
    rc, out = results["unset"]
    check(rc == 1 and "CUDA_VERSION is not set" in out,
          f"... and fails with CUDA_VERSION unset: {out.splitlines()[-1]}")


# ------------------------------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> None:
    state = Path(args.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    docker = connect(args.docker, state, not args.no_install)
    try:
        base = python_base(docker, state, not args.no_install)
        sizes: dict[str, int] = {}
        times: dict[str, float] = {}
        with build_inputs(base) as inputs, tempfile.TemporaryDirectory(prefix="oes-image-test-") as tmp:
            for note in inputs.notes:
                say(note)
            cpu = f"{TAG}:cpu"
            times[cpu] = build(docker, cpu, inputs, "--build-arg", "DEVICE=cpu", log=state / "build-cpu.log")
            sizes[cpu] = image_size(docker, cpu)
            say(f"image {cpu}: {sizes[cpu] / 1e6:.0f} MB")
            check_cpu_image(docker, cpu, Path(tmp))
            if not args.skip_gpu:
                standin = cuda_standin(docker, base or DEFAULT_PYTHON_IMAGE, STANDIN_CUDA_VERSION)
                gpu = f"{TAG}:gpu-installed"
                times[gpu] = build(docker, gpu, inputs, "--build-arg", "DEVICE=gpu", "--build-arg",
                                   f"CUDA_IMAGE={standin}", "--target", "installed",
                                   log=state / "build-gpu.log")
                sizes[gpu] = image_size(docker, gpu)
                check_gpu_installed(docker, gpu)
        for tag in sizes:
            say(f"summary: {tag} built in {times[tag]:.0f} s, {sizes[tag] / 1e6:.0f} MB")
    finally:
        if docker.own_daemon is not None:
            stop_daemon(docker.own_daemon)
            unmount_leftovers(state)
            du = subprocess.run(["du", "-sh", str(state / "data")], capture_output=True, text=True)
            size = du.stdout.split()
            say(f"its images and build cache stay in {state}/data ({size[0] if size else '?'}; vfs "
                f"stores every layer whole) for the next run: rm -rf {state} to reclaim the space")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docker", default=os.environ.get("DOCKER") or "/usr/bin/docker",
                    help="docker client (Docker 20.10+ with BuildKit; default /usr/bin/docker)")
    ap.add_argument("--state-dir", default=os.environ.get("OES_IMAGE_TEST_DIR", "/var/tmp/oes-image-test"),
                    help="socket, data root and logs of a daemon this script starts; build logs")
    ap.add_argument("--no-install", action="store_true", help="never apt-get install; exit 77 instead")
    ap.add_argument("--skip-gpu", action="store_true", help="only the CPU image")
    args = ap.parse_args(argv)
    try:
        run(args)
    except CannotRun as exc:
        say(f"SKIP: {exc}")
        return SKIP
    except CheckFailed as exc:
        say(f"FAILED: {exc}")
        return 1
    say("PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Build the real Docker image and check it as a user would (`make image-test`; never part of `make test`'s setup).

    python deploy/docker/image_test.py [--docker /usr/bin/docker] [--no-install] [--skip-gpu]

1. A Docker daemon: the one the client reaches (DOCKER_HOST / its default socket); otherwise, as root with apt,
   it INSTALLS Debian's docker.io (+ debootstrap) and starts a private daemon (vfs storage, no bridge, no
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
   here): `pip install ./[gpu]` installs and verify_runtime.py passes; it fails with CUDA_VERSION 12.x or unset.

Exit status: 0 all checks passed, 1 a check failed, 77 cannot run here (the reason is printed; `--no-install`
turns "would install a package" into this).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import functools
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIP = 77
TAG = "oes-image-test"
MODEL = "all-MiniLM-L6-v2"
USER_UID = "10001"
MIN_COSINE = 0.99999
FORBIDDEN = ("torch", "transformers", "sentence-transformers", "optimum", "optimum-onnx")
DEFAULT_PYTHON_IMAGE = "python:3.11-slim-trixie"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
STANDIN_CUDA_VERSION = "13.1.1"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
WHEEL_PORT = 18765
TEXTS = [
    "A man is playing a guitar.",
    "The new movie is awesome!",
    "ONNX Runtime serves sentence embeddings on a CPU.",
    "Ein Satz auf Deutsch, mit Umlauten: Grüße aus Köln.",
    "long " * 300,
]
DRAIN_TEXT = "a long sentence about embeddings and batching that keeps an inference thread busy " * 6


class CannotRun(Exception):
    """This machine cannot run the image test (exit status 77)."""


class CheckFailed(Exception):
    """The image does not do what a user is promised (exit status 1)."""


_T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[image-test {time.monotonic() - _T0:7.1f}s] {message}", flush=True)


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)
    say(f"ok: {message}")


# ------------------------------------------------------------------------------------------- docker daemon


@dataclass
class Docker:
    binary: str
    env: dict[str, str]
    own_daemon: subprocess.Popen | None = None

    def run(self, *args: str, check: bool = True, timeout: float = 600, input: str | None = None,
            capture: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run([self.binary, *args], env=self.env, text=True, timeout=timeout, input=input,
                           capture_output=capture)
        if check and r.returncode != 0:
            raise CheckFailed(f"docker {' '.join(args[:3])} ... exited {r.returncode}: {(r.stderr or '')[-2000:]}")
        return r

    def out(self, *args: str, timeout: float = 600) -> str:
        return self.run(*args, timeout=timeout).stdout.strip()


def daemon_version(binary: str, env: dict[str, str]) -> str | None:
    try:
        r = subprocess.run([binary, "version", "--format", "{{.Server.Version}}"], env=env, capture_output=True,
                           text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else None


def apt_install(packages: list[str], allow: bool) -> None:
    if not allow:
        raise CannotRun(f"would install {' '.join(packages)} with apt-get (pass no --no-install to allow it)")
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise CannotRun(f"{' '.join(packages)} missing and this is not root on a Debian/Ubuntu host with apt-get")
    say(f"INSTALLING Debian packages {' '.join(packages)} with apt-get (make image-test only; make test never does)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    r = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *packages], env=env,
                       capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600)
        r = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *packages], env=env,
                           capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise CannotRun(f"apt-get install {' '.join(packages)} failed: {r.stderr[-1500:]}")


def start_own_daemon(binary: str, state: Path, allow_install: bool) -> Docker:
    if shutil.which("dockerd") is None or not Path(binary).is_file():
        apt_install(["docker.io"], allow_install)
        binary = "/usr/bin/docker"
    if os.geteuid() != 0:
        raise CannotRun("no reachable Docker daemon, and starting one needs root")
    for sub in ("data", "exec"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    sock = state / "docker.sock"
    pidfile = state / "dockerd.pid"
    stale = read_pid(pidfile)
    if stale is not None:
        raise CannotRun(f"a daemon started by an earlier run is still alive (pid {stale}, {pidfile}): stop it first")
    say(f"no reachable Docker daemon: starting dockerd (vfs, no bridge, no iptables) on unix://{sock}, data in {state}")
    log = open(state / "dockerd.log", "ab")
    # nice/ionice: a build must not starve the machine's other work.
    prefix = [p for p in ("nice", "ionice") if shutil.which(p)]
    cmd = (["nice", "-n", "10"] if "nice" in prefix else []) + (["ionice", "-c3"] if "ionice" in prefix else [])
    cmd += ["dockerd", "--iptables=false", "--bridge=none", "--storage-driver=vfs", f"--host=unix://{sock}",
            f"--data-root={state / 'data'}", f"--exec-root={state / 'exec'}", f"--pidfile={pidfile}"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}"}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise CannotRun(f"dockerd exited {proc.returncode}; see {state / 'dockerd.log'}")
        version = daemon_version(binary, env)
        if version:
            say(f"own Docker daemon {version} is up (pid {proc.pid})")
            return Docker(binary, env, own_daemon=proc)
        time.sleep(0.5)
    stop_daemon(proc)
    raise CannotRun(f"dockerd did not answer within 60 s; see {state / 'dockerd.log'}")


def read_pid(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def stop_daemon(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
    say(f"stopped the Docker daemon this run started (pid {proc.pid}, exit {proc.returncode})")


def mounts_under(folder: Path, mounts_file: Path = Path("/proc/mounts")) -> list[str]:
    """Mount points below `folder` (dockerd leaves e.g. exec-root/netns/default mounted), deepest first."""
    try:
        lines = mounts_file.read_text().splitlines()
    except OSError:
        return []
    prefix = str(folder.resolve()).rstrip("/") + "/"
    points = [line.split()[1].replace("\\040", " ") for line in lines if len(line.split()) > 1]
    return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)


def unmount_leftovers(state: Path) -> None:
    for point in mounts_under(state):
        r = subprocess.run(["umount", point], capture_output=True, text=True, timeout=60)
        say(f"unmounted {point} left by the daemon" if r.returncode == 0 else f"cannot unmount {point}: {r.stderr}")


def connect(binary: str, state: Path, allow_install: bool) -> Docker:
    env = {**os.environ}
    version = daemon_version(binary, env) if Path(binary).is_file() or shutil.which(binary) else None
    if version:
        say(f"using the reachable Docker daemon {version} ({env.get('DOCKER_HOST', 'default socket')})")
        return Docker(binary, env)
    return start_own_daemon(binary, state, allow_install)


# --------------------------------------------------------------------------------------- base and sources


def apt_mirror(sources: list[Path] | None = None) -> str:
    """The Debian mirror this host's apt uses (deb822 `URIs:` or one-line `deb URI suite`), else deb.debian.org."""
    paths = sources if sources is not None else [Path("/etc/apt/sources.list"),
                                                 *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in paths:
        try:
            text = path.read_text()
        except OSError:
            continue
        for m in re.finditer(r"^\s*(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s+)?)(\S+)", text, re.MULTILINE):
            uri = m.group(1).rstrip("/")
            if uri.endswith("/debian"):
                return uri
    return DEBIAN_MIRROR


def debootstrap_base(docker: Docker, state: Path, allow_install: bool) -> str:
    tag = f"{TAG}/python:3.11-bookworm"
    if docker.run("image", "inspect", tag, check=False).returncode == 0:
        say(f"base stand-in {tag} is already in the daemon")
        return tag
    if shutil.which("debootstrap") is None:
        apt_install(["debootstrap"], allow_install)
    if os.geteuid() != 0:
        raise CannotRun("debootstrap needs root")
    rootfs = Path(tempfile.mkdtemp(prefix="rootfs-", dir=state))
    mirror = apt_mirror()
    say(f"making the base stand-in {tag} with debootstrap (Debian bookworm from {mirror})")
    try:
        r = subprocess.run(["debootstrap", "--variant=minbase",
                            "--include=python3,python3-venv,python-is-python3,ca-certificates", "bookworm",
                            str(rootfs), mirror], capture_output=True, text=True, timeout=1200)
        if r.returncode != 0:
            raise CannotRun(f"debootstrap failed: {r.stdout[-1500:]}{r.stderr[-1500:]}")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imp = subprocess.run([docker.binary, "import", "-", tag], stdin=tar.stdout, env=docker.env,
                             capture_output=True, text=True, timeout=600)
        tar.stdout.close()
        tar.wait()
        if imp.returncode != 0:
            raise CheckFailed(f"docker import failed: {imp.stderr}")
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    return tag


def python_base(docker: Docker, state: Path, allow_install: bool) -> str | None:
    """None = the Dockerfile's own default base is usable; else the tag of a local stand-in."""
    if docker.run("image", "inspect", DEFAULT_PYTHON_IMAGE, check=False).returncode == 0:
        return None
    r = docker.run("pull", DEFAULT_PYTHON_IMAGE, check=False, timeout=300)
    if r.returncode == 0:
        return None
    say(f"cannot pull {DEFAULT_PYTHON_IMAGE} ({(r.stderr or '').strip()[-200:]})")
    return debootstrap_base(docker, state, allow_install)


def cuda_standin(docker: Docker, base: str, cuda_version: str) -> str:
    tag = f"{TAG}/cuda-standin:{cuda_version}"
    dockerfile = f"FROM {base}\nENV CUDA_VERSION={cuda_version}\n"
    docker.run("build", "-t", tag, "-", input=dockerfile, timeout=600)
    return tag


def pip_config() -> dict[str, str]:
    """pip's effective cert and find-links (its config files, then PIP_* environment variables)."""
    r = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60)
    out: dict[str, str] = {}
    for line in r.stdout.splitlines():
        m = re.match(r"^[^.]*\.([\w-]+)='(.*)'$", line.strip())
        if m:
            out.setdefault(m.group(1), m.group(2))
    for key in ("cert", "find-links"):
        env = os.environ.get("PIP_" + key.upper().replace("-", "_"))
        if env:
            out[key] = env
    return out


def pinned_torch() -> str:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["export"]
    for d in deps:
        m = re.match(r"^torch\s*==\s*([\w.]+)$", d.strip())
        if m:
            return m.group(1)
    raise CheckFailed("pyproject.toml's export extra does not pin torch==")


def find_cpu_torch_wheel(folders: list[str], version: str, python_tag: str = "cp311") -> Path | None:
    """A `torch-<version>+cpu-<python_tag>-*.whl` in pip's find-links folders (the CPU build, no CUDA)."""
    for folder in folders:
        path = Path(folder.removeprefix("file://"))
        if path.is_dir():
            for wheel in sorted(path.glob(f"torch-{version}+cpu-{python_tag}-{python_tag}-*linux*x86_64.whl")):
                return wheel
    return None


def reachable(url: str, cafile: str | None, timeout: float = 10) -> bool:
    try:
        import ssl

        ctx = ssl.create_default_context(cafile=cafile) if cafile else None
        with urllib.request.urlopen(url, timeout=timeout, context=ctx) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError, ValueError):
        return False


@contextlib.contextmanager
def serve_folder(files: list[Path], port: int = WHEEL_PORT) -> Iterator[str]:
    """A loopback HTTP server listing `files` (a pip --find-links page); yields its URL. A fixed port keeps the
    URL, a build argument, and with it Docker's layer cache the same from run to run (any free port if taken)."""
    folder = Path(tempfile.mkdtemp(prefix="oes-wheels-"))
    for f in files:
        (folder / f.name).symlink_to(f)
    handler = functools.partial(QuietHandler, directory=str(folder))
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(folder, ignore_errors=True)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


@dataclass
class BuildInputs:
    build_args: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def flags(self) -> list[str]:
        out = ["--network", "host"]
        for k, v in self.build_args.items():
            out += ["--build-arg", f"{k}={v}"]
        for s in self.secrets:
            out += ["--secret", s]
        return out


@contextlib.contextmanager
def build_inputs(base: str | None) -> Iterator[BuildInputs]:
    inputs = BuildInputs()
    if base:
        inputs.build_args["PYTHON_IMAGE"] = base
        inputs.notes.append(f"base image: {base} (stand-in for {DEFAULT_PYTHON_IMAGE})")
    cfg = pip_config()
    cert = cfg.get("cert")
    if cert and Path(cert).is_file():
        inputs.secrets.append(f"id=pip_ca,src={cert}")
        inputs.notes.append(f"pip CA: build secret pip_ca from {cert}")
    if reachable(TORCH_CPU_INDEX + "/torch/", cert):
        inputs.notes.append("torch: the PyTorch CPU index (the Dockerfile's default)")
        yield inputs
        return
    version = pinned_torch()
    wheel = find_cpu_torch_wheel(cfg.get("find-links", "").split(), version)
    if wheel is None:
        raise CannotRun(f"the PyTorch CPU index is unreachable and no torch-{version}+cpu wheel is in pip's "
                        "find-links: PyPI's torch would pull the CUDA build (GBs)")
    with serve_folder([wheel]) as url:
        inputs.build_args["TORCH_FIND_LINKS"] = url
        inputs.notes.append(f"torch: TORCH_FIND_LINKS={url} serving {wheel}")
        yield inputs


# ------------------------------------------------------------------------------------------------- build


def build(docker: Docker, tag: str, inputs: BuildInputs, *extra: str, log: Path) -> float:
    say(f"docker build -t {tag} {' '.join(extra)} (log: {log})")
    start = time.monotonic()
    env = {**docker.env, "DOCKER_BUILDKIT": "1"}
    with open(log, "w") as out:
        r = subprocess.run([docker.binary, "build", "--progress=plain", "-t", tag, *inputs.flags(), *extra, str(ROOT)],
                           env=env, stdout=out, stderr=subprocess.STDOUT, timeout=5400)
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
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
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
                             "127.0.0.1", "--port", str(port)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
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
          f"docker stop with {n} requests sent: {statuses.count(200)}/{n} answered 200 ({after} after the stop "
          f"began), exit code {code}, stop took {took:.1f} s (statuses: {sorted(set(map(str, statuses)))})")


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


VERIFY_CASES = {"13.x": f"CUDA_VERSION={STANDIN_CUDA_VERSION}", "12.x": "CUDA_VERSION=12.9.1", "unset": "-u CUDA_VERSION"}


def verify_runtime_cases(docker: Docker, tag: str) -> dict[str, tuple[int, str]]:
    """verify_runtime.py (this checkout's) in one container of `tag`, once per CUDA_VERSION case:
    {case: (exit status, output)}. One container: with vfs every container start copies the whole image."""
    lines = ["cat > /tmp/verify_runtime.py"]
    for case, env in VERIFY_CASES.items():
        lines.append(f"echo '=== {case}'; env {env} python /tmp/verify_runtime.py --device gpu 2>&1; echo \"=== rc $?\"")
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
    check(rc == 0, f"verify_runtime.py passes with CUDA_VERSION={STANDIN_CUDA_VERSION}: {out.splitlines()[0]}")
    rc, out = results["12.x"]
    check(rc == 1 and "CUDA 12.9.1" in out, f"... and fails with CUDA_VERSION=12.9.1: {out.splitlines()[-1]}")
    rc, out = results["unset"]
    check(rc == 1 and "CUDA_VERSION is not set" in out, f"... and fails with CUDA_VERSION unset: {out.splitlines()[-1]}")


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
                                   f"CUDA_IMAGE={standin}", "--target", "installed", log=state / "build-gpu.log")
                sizes[gpu] = image_size(docker, gpu)
                check_gpu_installed(docker, gpu)
        for tag in sizes:
            say(f"summary: {tag} built in {times[tag]:.0f} s, {sizes[tag] / 1e6:.0f} MB")
    finally:
        if docker.own_daemon is not None:
            stop_daemon(docker.own_daemon)
            unmount_leftovers(state)
            size = subprocess.run(["du", "-sh", str(state / "data")], capture_output=True, text=True).stdout.split()
            say(f"its images and build cache stay in {state}/data ({size[0] if size else '?'}; vfs stores every "
                f"layer whole) for the next run: rm -rf {state} to reclaim the space")


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

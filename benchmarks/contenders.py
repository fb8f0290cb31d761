"""The contenders: how each server is started on 127.0.0.1 as a subprocess, probed and stopped."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from benchmarks import infinity, triton
from benchmarks.corpus import REPO_ROOT
from benchmarks.onnx_model import ModelFiles, locate
from server.repository import CONFIG_FILE

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@dataclass(frozen=True)
class Contender:
    name: str
    description: str
    group: str  # "article" | "onnx" | "ours" | "peer" | "check"
    command: tuple[str, ...]  # "{port}" is replaced by the port
    model: str = ""
    route: str = "/v1/embeddings"
    probe: str = "/health"
    ready: str = "/health"
    env: dict[str, str] = field(default_factory=dict)
    startup_timeout: float = 300.0
    cwd: Path = REPO_ROOT
    metrics: str | None = None
    protocol: str = "openai"  # what the load generator sends to `route` (benchmarks.load.LoadSpec.protocol)


class ContenderUnavailable(Exception):
    """A contender could not be prepared or did not become ready; the harness skips it with this reason."""


@dataclass(frozen=True)
class Setup:
    repository: Path
    model: str
    st_model: Path
    work_dir: Path
    intra_op_threads: int | None = None  # the Triton contender's ORT intra-op threads (None: every CPU)
    tuned_instances: int | None = None  # instances of the tuned layout, `--instance-count` (None: every CPU)
    second_model: str = "all-mpnet-base-v2"
    server_args: tuple[str, ...] = ()  # appended to every `python -m server` command


# The minimal ORT-in-handler server on the second model: the floor for its lone request.
SECOND_MINIMAL = "ort-minimal-mpnet"


def _app(module: str, *args: str) -> tuple[str, ...]:
    return (sys.executable, "-m", f"benchmarks.apps.{module}", *args, "--port", "{port}")


def _article(name: str, module: str, description: str, setup: Setup) -> Contender:
    return Contender(
        name, description, "article", _app(module, "--model", str(setup.st_model)), setup.model, env=OFFLINE
    )


def _ort_app(setup: Setup, files: ModelFiles, module: str = "ort_async") -> Contender:
    command = _app(
        module,
        "--model",
        str(files.onnx),
        "--tokenizer",
        str(files.tokenizer),
        "--max-seq-length",
        str(files.max_seq_length),
    )
    if module == "ort_minimal":
        return Contender(
            "ort-minimal",
            "minimal aiohttp server: ORT (server's session options, 1 thread x every CPU) in the handler, "
            "no batching (the c=1 floor)",
            "onnx",
            command,
            setup.model,
            env=OFFLINE,
        )
    return Contender(
        "ort-async",
        "ORT session (default options) in the async handler, no batching",
        "onnx",
        command,
        setup.model,
        env=OFFLINE,
    )


def _ours(name: str, model: str, setup: Setup, extra: tuple[str, ...] = (), about: str = "") -> Contender:
    """Our server on a repository holding only `model` (hard-linked: the server refuses symlinks out of its
    repository), so its RSS counts one model; `extra` and `setup.server_args` are appended to its command."""
    source = setup.repository.resolve() / model
    if not (source / CONFIG_FILE).is_file():
        raise ContenderUnavailable(f"{source}/{CONFIG_FILE} is missing (run the export first)")
    repository = Path(tempfile.mkdtemp(prefix=f"{name}-repo-", dir=setup.work_dir))
    shutil.copytree(source, repository / model, copy_function=_link_or_copy)
    command = (
        sys.executable,
        "-m",
        "server",
        "--model-repository",
        str(repository),
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--grpc-port",  # gRPC stays on, as by default, on a free port: the benchmark drives HTTP
        "0",
        *extra,
        *setup.server_args,
    )
    flags = " ".join((*extra, *setup.server_args))
    return Contender(
        name,
        f"python -m server {flags}".rstrip() + f", model {model}{about}",
        "ours",
        command,
        model,
        ready="/v2/health/ready",
        metrics="/metrics",
        env=OFFLINE,
    )


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _infinity(setup: Setup) -> Contender:
    try:
        executable = infinity.executable()
        model_dir = infinity.model_dir(setup.st_model, setup.model)
    except infinity.InfinityUnavailable as exc:
        raise ContenderUnavailable(str(exc)) from exc
    command = (
        str(executable),
        "v2",
        "--model-id",
        ".",
        "--served-model-name",
        setup.model,
        "--engine",
        "optimum",
        "--pooling-method",
        "mean",
        "--device",
        "cpu",
        "--no-vector-disk-cache",
        "--log-level",
        "warning",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
    )
    return Contender(
        "infinity",
        f"infinity_emb {infinity.version()} v2 --engine optimum (its defaults, batch 32)",
        "peer",
        command,
        setup.model,
        route="/embeddings",
        env=infinity.environment(),
        cwd=model_dir,
    )


def _triton(setup: Setup, files: ModelFiles) -> Contender:
    """PyTriton serving the exported model (same ONNX file and tokenizer.json), Triton's dynamic batcher."""
    try:
        interpreter = triton.python()
        env = triton.environment(interpreter)
    except triton.TritonUnavailable as exc:
        raise ContenderUnavailable(str(exc)) from exc
    if files.dimension is None:
        raise ContenderUnavailable(f"{files.config}: no 'dimension' parameter (run the export first)")
    threads = setup.intra_op_threads or len(os.sched_getaffinity(0))
    command = (
        str(interpreter),
        "-m",
        triton.APP,
        "--model-dir",
        str(files.onnx.parent),
        "--name",
        setup.model,
        "--dimension",
        str(files.dimension),
        "--intra-op-threads",
        str(threads),
        "--http-port",
        "{port}",
        "--grpc-port",
        "{port2}",
        "--metrics-port",
        "{port3}",
        "--workspace",
        str(setup.work_dir / "pytriton-workspace"),
    )
    return Contender(
        "triton",
        f"Triton via PyTriton {triton.version()} (dynamic batching, max batch 64, the same ONNX model and "
        f"tokenizer in its Python callable, ORT intra-op {threads}), KServe v2 HTTP",
        "peer",
        command,
        setup.model,
        route=f"/v2/models/{setup.model}/infer",
        probe="/v2/health/live",
        ready=f"/v2/models/{setup.model}/ready",
        env=env,
        protocol="kserve",
    )


def catalogue(setup: Setup, files: ModelFiles) -> dict[str, Callable[[], Contender]]:
    """Every contender by name, built lazily (building one may install or export)."""
    tuned = setup.tuned_instances or len(os.sched_getaffinity(0))
    return {
        "null": lambda: Contender(
            "null",
            "canned answer, no model: the load generator's own limit",
            "check",
            _app("null", "--model", "none"),
            setup.model,
        ),
        "st-async": lambda: _article("st-async", "st_async", "encode() in the async handler", setup),
        "st-thread": lambda: _article(
            "st-thread", "st_thread", "run_in_executor(ThreadPoolExecutor(1))", setup
        ),
        "st-process": lambda: _article(
            "st-process", "st_process", "run_in_executor(ProcessPoolExecutor(1)), model in initializer", setup
        ),
        "st-lock": lambda: _article("st-lock", "st_lock", "asyncio.to_thread under an asyncio.Lock", setup),
        "ort-async": lambda: _ort_app(setup, files),
        "ours": lambda: _ours("ours", setup.model, setup),
        "ours-int8": lambda: _ours("ours-int8", f"{setup.model}-int8", setup),
        "ours-tuned": lambda: _ours(
            "ours-tuned", setup.model, setup, ("--instance-count", str(tuned)), " (tuned layout)"
        ),
        "ours-mpnet": lambda: _ours("ours-mpnet", setup.second_model, setup),
        "ort-minimal": lambda: _ort_app(setup, files, "ort_minimal"),
        SECOND_MINIMAL: lambda: _second_minimal(setup),
        "infinity": lambda: _infinity(setup),
        "triton": lambda: _triton(setup, files),
        "floor": lambda: _floor(setup, files),
    }


def _floor(setup: Setup, files: ModelFiles) -> Contender:
    """KServe v2 over HTTP and gRPC with canned answers and no model (`benchmarks/apps/kserve_floor.py`)."""
    if files.dimension is None:
        raise ContenderUnavailable(f"{files.config}: no 'dimension' parameter (run the export first)")
    command = _app("kserve_floor", "--model-repository", str(setup.repository), "--model", setup.model,
                   "--dimension", str(files.dimension), "--grpc-port", "{port2}")
    return Contender(
        "floor",
        "the protocol floor: aiohttp and grpc.aio in one process, canned answers of the server's shapes, no model",
        "check",
        command,
        setup.model,
        route=f"/v2/models/{setup.model}/infer",
        probe="/v2/health/live",
        ready="/v2/health/ready",
        protocol="kserve",
    )


def _second_minimal(setup: Setup) -> Contender:
    """`ort-minimal` on the second model: the floor for its lone request."""
    minimal = _ort_app(setup, second_model_files(setup.repository, setup.second_model), "ort_minimal")
    return replace(minimal, name=SECOND_MINIMAL, model=setup.second_model,
                   description=f"{minimal.description}, on {setup.second_model}")


def second_model_files(repository: Path, model: str) -> ModelFiles:
    """The second model's files, or ContenderUnavailable when it has not been exported."""
    try:
        return locate(repository, model)
    except (FileNotFoundError, ValueError) as exc:
        raise ContenderUnavailable(f"{exc} (export it with `make mpnet`)") from exc


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fill_ports(command: tuple[str, ...], port: int) -> list[str]:
    """`{port}` is the contender's served port; `{port2}`, `{port3}` more free ports (gRPC, metrics)."""
    extra = {f"{{port{n}}}": str(free_port()) for n in (2, 3) if any(f"{{port{n}}}" in p for p in command)}
    filled = []
    for part in command:
        for placeholder, value in {"{port}": str(port), **extra}.items():
            part = part.replace(placeholder, value)
        filled.append(part)
    return filled


@dataclass
class Running:
    contender: Contender
    port: int
    process: subprocess.Popen
    log: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def log_tail(self, chars: int = 1500) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@contextmanager
def started(contender: Contender, log_dir: Path) -> Iterator[Running]:
    """Start the contender in its own process group, wait until ready, and always stop it afterwards."""
    port = free_port()
    log = log_dir / f"{contender.name}.log"
    command = fill_ports(contender.command, port)
    with log.open("w") as handle:
        process = subprocess.Popen(
            command,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=contender.cwd,
            env={**os.environ, **contender.env},
            start_new_session=True,
        )
    running = Running(contender, port, process, log)
    try:
        wait_ready(running)
        yield running
    finally:
        stop(process)


def wait_ready(running: Running) -> None:
    deadline = time.monotonic() + running.contender.startup_timeout
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            raise ContenderUnavailable(f"exited with {running.process.returncode}: {running.log_tail()}")
        if _status(running.url(running.contender.ready)) == 200:
            return
        time.sleep(0.25)
    raise ContenderUnavailable(
        f"not ready within {running.contender.startup_timeout:.0f}s: {running.log_tail()}"
    )


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except (urllib.error.URLError, OSError):
        return None


def stop(process: subprocess.Popen, grace: float = 15.0) -> None:
    if process.poll() is not None:
        return
    _signal_group(process, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGKILL)
        process.wait(10)


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass

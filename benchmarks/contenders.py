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
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import infinity
from benchmarks.corpus import REPO_ROOT
from benchmarks.onnx_model import ModelFiles

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


class ContenderUnavailable(Exception):
    """A contender could not be prepared or did not become ready; the harness skips it with this reason."""


@dataclass(frozen=True)
class Setup:
    repository: Path
    model: str
    st_model: Path
    work_dir: Path


def _app(module: str, *args: str) -> tuple[str, ...]:
    return (sys.executable, "-m", f"benchmarks.apps.{module}", *args, "--port", "{port}")


def _article(name: str, module: str, description: str, setup: Setup) -> Contender:
    return Contender(
        name, description, "article", _app(module, "--model", str(setup.st_model)), setup.model, env=OFFLINE
    )


def _ort_app(setup: Setup, files: ModelFiles) -> Contender:
    command = _app(
        "ort_async",
        "--model",
        str(files.onnx),
        "--tokenizer",
        str(files.tokenizer),
        "--max-seq-length",
        str(files.max_seq_length),
    )
    return Contender(
        "ort-async",
        "ORT session (default options) in the async handler, no batching",
        "onnx",
        command,
        setup.model,
        env=OFFLINE,
    )


def _ours(name: str, model: str, setup: Setup) -> Contender:
    """Our server on a repository holding only `model` (hard-linked: the server refuses symlinks out of its
    repository), so its RSS counts one model."""
    source = setup.repository.resolve() / model
    if not (source / "config.pbtxt").is_file():
        raise ContenderUnavailable(f"{source}/config.pbtxt is missing (run the export first)")
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
    )
    return Contender(
        name,
        f"python -m server, model {model}",
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


def catalogue(setup: Setup, files: ModelFiles) -> dict[str, Callable[[], Contender]]:
    """Every contender by name, built lazily (building one may install or export)."""
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
        "infinity": lambda: _infinity(setup),
    }


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
    command = [part.replace("{port}", str(port)) for part in contender.command]
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

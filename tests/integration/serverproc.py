"""Start `python -m server` as a real process on a free loopback port, with bounded waits."""

from __future__ import annotations

import asyncio
import inspect
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# The server is another process and exposes no event a test could await: its state (readiness, /metrics, its log,
# a marker file) is read by polling at this interval until a bounded deadline.
POLL_S = 0.02


def wait_until(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Return `check()`'s first true result; fail after `timeout` s, naming `what` was awaited."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"waited {timeout}s for {what}"
        time.sleep(POLL_S)
    return result


async def eventually(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """`wait_until` on the event loop: `check` may be a coroutine function."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        assert loop.time() < deadline, f"waited {timeout}s for {what}"
        await asyncio.sleep(POLL_S)


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, urllib.error.URLError):
        return None


@dataclass
class ServerProcess:
    process: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def grpc_port(self) -> int:
        """The gRPC port the server logged (tests start it with --grpc-port 0)."""
        found = re.search(r"gRPC: listening on [^\s]+:(\d+)", self.log())
        assert found, f"the server logged no gRPC port\n{self.log()[-3000:]}"
        return int(found.group(1))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise AssertionError(f"server did not exit within {timeout}s of signal {sig}\n{self.log()[-3000:]}")


def launch(args: list[str], env: dict[str, str] | None = None, module: str = "server") -> ServerProcess:
    port = free_port()
    if not any(arg.startswith("--grpc") for arg in args):
        args = [*args, "--grpc-port", "0"]  # never Triton's fixed 8001: servers of parallel tests would clash
    log_file = tempfile.NamedTemporaryFile(prefix="server-", suffix=".log", delete=False)
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", str(port), *args],
        cwd=ROOT, env=full_env, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    return ServerProcess(process, port, Path(log_file.name))


# Start-ups retried when the HTTP port, free when picked, was taken before the server bound it (the server's own
# ephemeral gRPC port can be that very port).
PORT_RACE_ATTEMPTS = 3


def start_server(repository: Path, *args: str, env: dict[str, str] | None = None, module: str = "server",
                 ready_timeout: float = 180.0) -> ServerProcess:
    server = launch(["--model-repository", str(repository), *args], env, module)
    deadline = time.monotonic() + ready_timeout
    attempts = 1
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            if "address already in use" in server.log() and attempts < PORT_RACE_ATTEMPTS:
                attempts += 1
                server = launch(["--model-repository", str(repository), *args], env, module)
                continue
            raise AssertionError(f"server exited with {server.process.returncode}\n{server.log()[-3000:]}")
        if http_status(server.url + "/v2/health/ready") == 200:
            return server
        time.sleep(0.2)  # no event to await from another process (see POLL_S); start-up takes seconds
    server.stop(signal.SIGKILL)
    raise AssertionError(f"server not ready within {ready_timeout}s\n{server.log()[-3000:]}")

"""The Docker daemon `make image-test` works with: the one the client reaches, or a private one it starts.

A private daemon (root; Debian's docker.io, installed with apt-get only when allowed) runs with vfs storage,
no bridge and no iptables on its own socket, data root, exec root and pid file under a state folder, niced.
It is stopped again at the end and the mounts it leaves behind are unmounted.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from imagetest_common import CannotRun, CheckFailed, say


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
            detail = (r.stderr or "")[-2000:]
            raise CheckFailed(f"docker {' '.join(args[:3])} ... exited {r.returncode}: {detail}")
        return r

    def out(self, *args: str, timeout: float = 600) -> str:
        return self.run(*args, timeout=timeout).stdout.strip()


def daemon_version(binary: str, env: dict[str, str]) -> str | None:
    try:
        r = subprocess.run([binary, "version", "--format", "{{.Server.Version}}"], env=env,
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else None


def apt_install(packages: list[str], allow: bool) -> None:
    if not allow:
        raise CannotRun(f"would install {' '.join(packages)} with apt-get (allowed without --no-install)")
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise CannotRun(f"{' '.join(packages)} missing and this is not root on a host with apt-get")
    say(f"INSTALLING Debian packages {' '.join(packages)} with apt-get "
        "(make image-test only; make test never does)")
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
        raise CannotRun(f"a daemon of an earlier run is still alive (pid {stale}, {pidfile}): stop it first")
    say(f"no reachable Docker daemon: starting dockerd (vfs, no bridge, no iptables) on unix://{sock}, "
        f"data in {state}")
    cmd = [*low_priority(), "dockerd", "--iptables=false", "--bridge=none", "--storage-driver=vfs",
           f"--host=unix://{sock}", f"--data-root={state / 'data'}", f"--exec-root={state / 'exec'}",
           f"--pidfile={pidfile}"]
    with open(state / "dockerd.log", "ab") as log:
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


def low_priority() -> list[str]:
    """nice/ionice prefix: builds must not starve the machine's other work (builds inherit the daemon's)."""
    nice = ["nice", "-n", "10"] if shutil.which("nice") else []
    return nice + (["ionice", "-c3"] if shutil.which("ionice") else [])


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
        ok = r.returncode == 0
        say(f"unmounted {point}, left by the daemon" if ok else f"cannot unmount {point}: {r.stderr}")


def connect(binary: str, state: Path, allow_install: bool) -> Docker:
    env = {**os.environ}
    version = daemon_version(binary, env) if Path(binary).is_file() or shutil.which(binary) else None
    if version:
        say(f"using the reachable Docker daemon {version} ({env.get('DOCKER_HOST', 'default socket')})")
        return Docker(binary, env)
    return start_own_daemon(binary, state, allow_install)

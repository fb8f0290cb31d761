"""What a build of the real Dockerfile needs on this machine, each substituted only when the user's normal
source is unreachable: the base image (a debootstrap stand-in), pip's CA (the `pip_ca` build secret) and the
CPU torch wheel (`TORCH_FIND_LINKS` pointing at a loopback HTTP server)."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from imagetest_common import CannotRun, CheckFailed, say
from imagetest_daemon import Docker, apt_install, low_priority

ROOT = Path(__file__).resolve().parents[2]
TAG = "oes-image-test"
DEFAULT_PYTHON_IMAGE = "python:3.11-slim-trixie"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
WHEEL_PORT = 18765


def apt_mirror(sources: list[Path] | None = None) -> str:
    """The Debian mirror this host's apt uses (deb822 `URIs:` or one-line `deb URI suite`), else
    deb.debian.org."""
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
    rootfs.chmod(0o755)  # it becomes the image's `/`: mkdtemp's 0700 would lock the non-root server user out
    mirror = apt_mirror()
    say(f"making the base stand-in {tag} with debootstrap (Debian bookworm from {mirror})")
    try:
        r = subprocess.run([*low_priority(), "debootstrap", "--variant=minbase",
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
    r = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                       timeout=60)
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
            pattern = f"torch-{version}+cpu-{python_tag}-{python_tag}-*linux*x86_64.whl"
            for wheel in sorted(path.glob(pattern)):
                return wheel
    return None


def reachable(url: str, cafile: str | None, timeout: float = 10) -> bool:
    try:
        ctx = ssl.create_default_context(cafile=cafile) if cafile else None
        with urllib.request.urlopen(url, timeout=timeout, context=ctx) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError, ValueError):
        return False


@contextlib.contextmanager
def serve_folder(files: list[Path], port: int = WHEEL_PORT) -> Iterator[str]:
    """A loopback HTTP server listing `files` (a pip --find-links page); yields its URL. A fixed port keeps
    the URL, a build argument, and with it Docker's layer cache the same from run to run (any free port if
    taken)."""
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

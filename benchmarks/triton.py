"""NVIDIA Triton (through PyTriton) as a peer: its own venv, made on demand and reused.

`benchmarks/.venv-pytriton/` (git-ignored) holds nvidia-pytriton (it bundles a Triton Inference Server
binary and its Python backend stub), onnxruntime, tokenizers and numpy; never the project's environment.
The stub links `libpython3.11.so` and, from a venv, may load the system's older copy (the model then fails
to load with "'_thread.RLock' object has no attribute '_recursion_count'"): the server starts with
LD_LIBRARY_PATH leading with the venv interpreter's own lib folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

VENV = Path(__file__).resolve().parent / ".venv-pytriton"
PACKAGES = ("nvidia-pytriton==0.7.0", "onnxruntime==1.31.1", "tokenizers>=0.20", "numpy>=1.26")
INSTALL_TIMEOUT_S = 1800
APP = "benchmarks.apps.pytriton_app"


class TritonUnavailable(Exception):
    """PyTriton could not be installed or its venv is unusable; the contender is skipped with this reason."""


def python() -> Path:
    """The venv's interpreter, installing PyTriton first if it does not import."""
    interpreter = VENV / "bin" / "python"
    if not _imports(interpreter):
        _install()
    if not _imports(interpreter):
        raise TritonUnavailable(f"pytriton does not import in {VENV} after installing {' '.join(PACKAGES)}")
    return interpreter


def version() -> str:
    interpreter = VENV / "bin" / "python"
    code = "import importlib.metadata as m; print(m.version('nvidia-pytriton'))"
    result = _run([str(interpreter), "-c", code], 60)
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def environment(interpreter: Path) -> dict[str, str]:
    """Offline, with the venv interpreter's own libpython first on the library path."""
    result = _run([str(interpreter), "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"], 60)
    if result.returncode != 0 or not result.stdout.strip():
        reason = result.stderr.strip()[-400:]
        raise TritonUnavailable(f"cannot find the lib folder of {interpreter}: {reason}")
    library_path = [result.stdout.strip(), *filter(None, os.environ.get("LD_LIBRARY_PATH", "").split(":"))]
    return {"LD_LIBRARY_PATH": ":".join(library_path), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def _imports(interpreter: Path) -> bool:
    if not interpreter.exists():
        return False
    return _run([str(interpreter), "-c", "import pytriton.triton"], 120).returncode == 0


def _install() -> None:
    packages = " ".join(PACKAGES)
    print(f"[triton] creating {VENV} and installing {packages} (once; may take minutes)", flush=True)
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(VENV)],
        [str(VENV / "bin" / "pip"), "install", "--quiet", *PACKAGES],
    ]
    for step in steps:
        result = _run(step, INSTALL_TIMEOUT_S)
        if result.returncode != 0:
            raise TritonUnavailable(f"{' '.join(step)} failed: {result.stderr.strip()[-800:]}")


def _run(command: list[str], timeout: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(command, 1, "", str(exc))

"""NVIDIA Triton (through PyTriton) as a peer: its own venv, made on demand and reused.

`benchmarks/.venv-pytriton/` (git-ignored) holds nvidia-pytriton (it bundles a Triton Inference Server
binary and its Python backend stub), onnxruntime, tokenizers and numpy; never the project's environment.
The stub links `libpython3.11.so` and, from a venv, may load the system's older copy (the model then fails
to load with "'_thread.RLock' object has no attribute '_recursion_count'"): the server starts with
LD_LIBRARY_PATH leading with the venv interpreter's own lib folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from benchmarks import own_venv

VENV = Path(__file__).resolve().parent / ".venv-pytriton"
PACKAGES = ("nvidia-pytriton==0.7.0", "onnxruntime==1.31.1", "tokenizers>=0.20", "numpy>=1.26")
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
    result = own_venv.run([str(interpreter), "-c", code], 60)
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def environment(interpreter: Path) -> dict[str, str]:
    """Offline, with the venv interpreter's own libpython first on the library path."""
    code = "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"
    result = own_venv.run([str(interpreter), "-c", code], 60)
    if result.returncode != 0 or not result.stdout.strip():
        reason = result.stderr.strip()[-400:]
        raise TritonUnavailable(f"cannot find the lib folder of {interpreter}: {reason}")
    library_path = [result.stdout.strip(), *filter(None, os.environ.get("LD_LIBRARY_PATH", "").split(":"))]
    return {"LD_LIBRARY_PATH": ":".join(library_path), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def _imports(interpreter: Path) -> bool:
    if not interpreter.exists():
        return False
    return own_venv.run([str(interpreter), "-c", "import pytriton.triton"], 120).returncode == 0


def _install() -> None:
    own_venv.install(VENV, PACKAGES, "triton", TritonUnavailable)

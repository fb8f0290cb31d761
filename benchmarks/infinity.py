"""Infinity as a peer: its own venv (its pins conflict with ours) and a local model dir it can load offline.

Both are made on demand under `benchmarks/.venv-infinity/` (git-ignored) and reused. Infinity's optimum
engine wants an ONNX file with `last_hidden_state` inside the model dir and pools it itself. Infinity 0.0.78
hands optimum 2.x the ONNX path as found by globbing the model id, while optimum matches it against bare
file names: so the file sits at the dir's top and Infinity runs from inside the dir with model id ".".
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from benchmarks import own_venv

VENV = Path(__file__).resolve().parent / ".venv-infinity"
# Its latest release; its resolver picks optimum 2.x, whose ORTOptimizer no longer takes the arguments
# Infinity passes, so Infinity logs "Optimization failed" and serves the plain export (ONNX Runtime still
# applies its own graph optimizations). Pinning optimum 1.x instead needs transformers < 4.49, pyarrow for
# numpy 1 and a torch older than 2.9 (CUDA wheels, gigabytes): not worth it for a peer.
PACKAGES = ("infinity-emb[server,optimum,torch]==0.0.78",)
EXPORT_TIMEOUT_S = 600


class InfinityUnavailable(Exception):
    """Infinity could not be installed or prepared; the reason is printed and the contender skipped."""


def environment() -> dict[str, str]:
    return {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(VENV / "hf-home"),
        "DO_NOT_TRACK": "1",
        "INFINITY_ANONYMOUS_USAGE_STATS": "0",
    }


def executable() -> Path:
    """The venv's `infinity_emb`, installing it first if it does not import."""
    python = VENV / "bin" / "python"
    if not _imports(python):
        _install()
    if not _imports(python):
        raise InfinityUnavailable(
            f"infinity_emb does not import in {VENV} after installing {' '.join(PACKAGES)}"
        )
    return VENV / "bin" / "infinity_emb"


def version() -> str:
    python = VENV / "bin" / "python"
    code = "import importlib.metadata as m; print(m.version('infinity-emb'))"
    result = own_venv.run([str(python), "-c", code], 60)
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def _imports(python: Path) -> bool:
    return python.exists() and own_venv.run([str(python), "-c", "import infinity_emb"], 120).returncode == 0


def _install() -> None:
    own_venv.install(VENV, PACKAGES, "infinity", InfinityUnavailable)


def model_dir(source: Path, name: str) -> Path:
    """A copy of the sentence-transformers dir `source` plus `model.onnx` (transformers export)."""
    target = VENV / "models" / name
    if (target / "model.onnx").is_file():
        return target
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    command = [
        sys.executable,
        "-m",
        "optimum.commands.optimum_cli",
        "export",
        "onnx",
        "--model",
        str(source),
        "--task",
        "feature-extraction",
        "--library-name",
        "transformers",
        str(staging / "onnx"),
    ]
    result = own_venv.run(command, EXPORT_TIMEOUT_S, env={**os.environ, **environment()})
    if result.returncode != 0 or not (staging / "onnx" / "model.onnx").is_file():
        raise InfinityUnavailable(f"ONNX export for Infinity failed: {result.stderr.strip()[-800:]}")
    (staging / "onnx" / "model.onnx").rename(staging / "model.onnx")
    shutil.rmtree(staging / "onnx")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target

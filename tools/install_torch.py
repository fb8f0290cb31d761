"""Install the export extra's torch before the rest of it: the CPU build where the PyTorch CPU index answers.

PyPI's torch for Linux x86-64 is the CUDA build, which pulls several GB of nvidia-* wheels. The export runs
torch on the CPU only (export/source.py loads the model with device="cpu"), so the CPU build is all it
needs, on a GPU host too (ONNX Runtime brings its own CUDA libraries there). Once torch is installed, the
export extra's `torch==X` is satisfied and pip keeps it.

The CPU index is probed first with a bounded wait (`--probe-timeout`): an unreachable index never stalls the
install, it only means `pip install torch==X` from the configured indexes (PyPI, or whatever pip's
configuration adds).

Usage (the Makefile runs it with the virtual environment's interpreter):
    python tools/install_torch.py [--index URL] [--probe-timeout S] [--dry-run]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import tomllib
import urllib.request
from pathlib import Path

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PROBE_TIMEOUT_S = 5.0
PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def torch_requirement(pyproject: Path = PYPROJECT) -> str:
    """The `torch==X` entry of pyproject.toml's export extra (the one place the version is pinned)."""
    with pyproject.open("rb") as f:
        export = tomllib.load(f)["project"]["optional-dependencies"]["export"]
    for requirement in export:
        if requirement.replace(" ", "").startswith("torch=="):
            return requirement.replace(" ", "")
    raise ValueError(f"{pyproject}: the export extra pins no torch==X")


def index_answers(index: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """True if `<index>/torch/` answers 200 within timeout_s in total (name lookup included)."""
    answered = threading.Event()

    def probe() -> None:
        try:
            with urllib.request.urlopen(index.rstrip("/") + "/torch/", timeout=timeout_s) as response:
                if response.status == 200:
                    answered.set()
        except (OSError, ValueError):
            pass

    # urlopen's timeout does not bound the name lookup: the wait is bounded here instead.
    thread = threading.Thread(target=probe, name="torch-index-probe", daemon=True)
    thread.start()
    thread.join(timeout_s)
    return answered.is_set()


def pip_command(python: str, requirement: str, cpu_index: str | None) -> list[str]:
    """The pip install of torch: from the CPU index when one answered, else from pip's configured indexes."""
    command = [python, "-m", "pip", "install", "--quiet", requirement]
    return command + ["--index-url", cpu_index] if cpu_index else command


def choose_index(index: str, timeout_s: float, probe=index_answers) -> str | None:
    """The CPU index to install from, or None (an empty `index` turns the CPU index off)."""
    return index if index and probe(index, timeout_s) else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Install torch for the export, the CPU build where possible.")
    parser.add_argument("--index", default=CPU_INDEX,
                        help="PyTorch CPU wheel index to use when it answers; empty: pip's own indexes only")
    parser.add_argument("--probe-timeout", type=float, default=PROBE_TIMEOUT_S,
                        help="seconds to wait for the index to answer before falling back")
    parser.add_argument("--dry-run", action="store_true", help="print the pip command instead of running it")
    args = parser.parse_args(argv)
    cpu_index = choose_index(args.index, args.probe_timeout)
    command = pip_command(sys.executable, torch_requirement(), cpu_index)
    where = f"the CPU index {cpu_index}" if cpu_index else "pip's configured indexes (CPU index not reachable)"
    print(f"install_torch: {' '.join(command[3:])}  # from {where}", file=sys.stderr)
    if args.dry_run:
        print(" ".join(command))
        return 0
    return subprocess.run(command).returncode


if __name__ == "__main__":
    sys.exit(main())

"""A peer's own venv (Infinity, PyTriton), made on first use (never the project's), and commands run in it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

INSTALL_TIMEOUT_S = 1800


def run(command: list[str], timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    """The command's result; a command that cannot start or times out is a failed result, not an exception."""
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(command, 1, "", str(exc))


def install(venv: Path, packages: Sequence[str], label: str, unavailable: type[Exception]) -> None:
    """Create `venv` afresh and pip-install `packages`; raise `unavailable` with pip's words if that fails."""
    wanted = " ".join(packages)
    print(f"[{label}] creating {venv} and installing {wanted} (once; may take minutes)", flush=True)
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [str(venv / "bin" / "pip"), "install", "--quiet", *packages],
    ]
    for step in steps:
        result = run(step, INSTALL_TIMEOUT_S)
        if result.returncode != 0:
            raise unavailable(f"{' '.join(step)} failed: {result.stderr.strip()[-800:]}")

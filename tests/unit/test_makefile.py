"""What `make serve`, `make test` and `make bench` would run, per device (`make -n`: nothing is executed).

A CPU host installs onnxruntime, exports fp32 + int8 and serves them on the CPU; a GPU host installs
onnxruntime-gpu, exports fp32 + fp16 and serves both on CUDA (the fp32 name runs its fp16 variant there,
server/model.py gpu_model_path). Each target installs only its own extras, torch first.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODEL = "all-MiniLM-L6-v2"
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def dry_run(target: str, venv: Path, models: Path, *variables: str) -> list[list[str]]:
    """The commands `make -n` prints for target, each split into words."""
    result = subprocess.run(["make", "-n", "--no-print-directory", "-C", str(ROOT), target, f"VENV={venv}",
                             f"MODELS={models}", *variables], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [shlex.split(line) for line in result.stdout.splitlines() if line.strip()]


def installed(venv: Path, *sets: str) -> Path:
    venv.mkdir(exist_ok=True)
    for name in sets:
        (venv / f".installed-{name}").touch()
    return venv


def after(commands: list[list[str]], *words: str) -> list[list[str]]:
    """The commands that hold these words in this order, e.g. ("-m", "export")."""
    n = len(words)
    return [c for c in commands if any(tuple(c[i:i + n]) == words for i in range(len(c)))]


def option(command: list[str], name: str) -> list[str]:
    """The values that follow option `name` up to the next option."""
    start = command.index(name) + 1
    end = next((i for i in range(start, len(command)) if command[i].startswith("--")), len(command))
    return command[start:end]


def extras(commands: list[list[str]]) -> list[str]:
    return [w.split("[", 1)[1].rstrip("]") for c in commands for w in c if w.startswith(".[")]


@pytest.mark.parametrize("device, ort", [("cpu", "cpu"), ("gpu", "gpu-wheels")])
def test_a_fresh_serve_installs_runtime_and_export_only_torch_first(tmp_path, device, ort):
    commands = dry_run("serve", tmp_path / "venv", tmp_path / "models", f"DEVICE={device}")
    torch_step = next(i for i, c in enumerate(commands) if any(w.endswith("tools/install_torch.py") for w in c))
    extras_step = next(i for i, c in enumerate(commands) if any(w.startswith(".[") for w in c))
    assert torch_step < extras_step
    assert extras(commands) == [f"{ort},export"]


@pytest.mark.parametrize("device, variant, serve_device", [("cpu", "int8", "cpu"), ("gpu", "fp16", "gpu")])
def test_serve_exports_and_serves_what_the_device_runs(tmp_path, device, variant, serve_device):
    models = tmp_path / "models"
    commands = dry_run("serve", installed(tmp_path / "venv", "serve"), models, f"DEVICE={device}")
    [export] = after(commands, "-m", "export")
    assert option(export, "--precision") == ["fp32", variant]
    assert option(export, "--repository") == [str(models)] and option(export, "--name") == [MODEL]
    [serve] = after(commands, "-m", "server")
    assert option(serve, "--device") == [serve_device]
    assert option(serve, "--models") == [f"{MODEL},{MODEL}-{variant}"]
    assert option(serve, "--model-repository") == [str(models)]
    assert not extras(commands)  # installed already


def test_serve_exports_only_the_missing_precisions(tmp_path):
    models = tmp_path / "models"
    (models / MODEL).mkdir(parents=True)
    (models / MODEL / "config.pbtxt").touch()
    venv = installed(tmp_path / "venv", "serve")
    [export] = after(dry_run("serve", venv, models, "DEVICE=gpu"), "-m", "export")
    assert option(export, "--precision") == ["fp16"]
    (models / f"{MODEL}-fp16").mkdir()
    (models / f"{MODEL}-fp16" / "config.pbtxt").touch()
    assert not after(dry_run("serve", venv, models, "DEVICE=gpu"), "-m", "export")


def test_a_models_folder_with_only_its_readme_still_gets_the_export(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "README.md").write_text("layout\n")
    [export] = after(dry_run("serve", installed(tmp_path / "venv", "serve"), models, "DEVICE=cpu"), "-m", "export")
    assert option(export, "--precision") == ["fp32", "int8"]


def test_test_adds_the_test_extra_and_bench_the_bench_extra(tmp_path):
    venv = installed(tmp_path / "venv", "serve")
    assert extras(dry_run("test", venv, tmp_path / "m", "DEVICE=cpu")) == ["cpu,export,test"]
    assert extras(dry_run("bench", venv, tmp_path / "m", "DEVICE=cpu")) == ["cpu,export,bench"]
    installed(venv, "test")
    assert not extras(dry_run("test", venv, tmp_path / "m", "DEVICE=cpu"))


def test_an_unknown_device_is_refused(tmp_path):
    result = subprocess.run(["make", "-n", "-C", str(ROOT), "serve", "DEVICE=gpu-wheels", f"VENV={tmp_path}"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "DEVICE must be cpu or gpu" in result.stderr

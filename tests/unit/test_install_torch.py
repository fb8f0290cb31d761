"""tools/install_torch.py: the CPU torch from the PyTorch CPU index where it answers, else pip's own indexes."""

from __future__ import annotations

import http.server
import socket
import sys
import threading
import time
import tomllib
from pathlib import Path

import pytest

from tools import install_torch

ROOT = Path(__file__).resolve().parents[2]


def test_the_pinned_torch_is_the_export_extras():
    export = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["export"]
    requirement = install_torch.torch_requirement()
    assert requirement.startswith("torch==") and requirement in [r.replace(" ", "") for r in export]


def test_pyproject_without_a_pinned_torch_is_an_error(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project.optional-dependencies]\nexport = ["torch>=2"]\n')
    with pytest.raises(ValueError, match="torch==X"):
        install_torch.torch_requirement(pyproject)


def test_pip_command_takes_the_cpu_index_only_when_it_answered():
    assert install_torch.pip_command("py", "torch==2.13.0", "https://idx/cpu") == [
        "py", "-m", "pip", "install", "--quiet", "torch==2.13.0", "--index-url", "https://idx/cpu"]
    assert install_torch.pip_command("py", "torch==2.13.0", None) == [
        "py", "-m", "pip", "install", "--quiet", "torch==2.13.0"]


def test_choose_index_probes_and_an_empty_index_turns_it_off():
    probed = []

    def probe(index, timeout):
        probed.append((index, timeout))
        return index == "https://up"

    assert install_torch.choose_index("https://up", 3.0, probe) == "https://up"
    assert install_torch.choose_index("https://down", 3.0, probe) is None
    assert install_torch.choose_index("", 3.0, probe) is None
    assert probed == [("https://up", 3.0), ("https://down", 3.0)]


class _Index(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        found = self.path == "/whl/cpu/torch/"
        self.send_response(200 if found else 404)
        self.end_headers()
        self.wfile.write(b"<a href='torch-2.13.0+cpu.whl'>torch</a>" if found else b"")

    def log_message(self, *args):
        pass


@pytest.fixture
def local_index():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Index)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_index_that_answers_is_taken(local_index):
    assert install_torch.index_answers(local_index + "/whl/cpu", 5.0)
    assert not install_torch.index_answers(local_index + "/elsewhere", 5.0)  # 404


def test_a_closed_port_is_not_an_index():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert not install_torch.index_answers(f"http://127.0.0.1:{port}/whl/cpu", 5.0)


def test_an_index_that_never_answers_costs_at_most_the_probe_timeout():
    with socket.socket() as silent:  # accepts connections (backlog) and never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        started = time.monotonic()
        answered = install_torch.index_answers(f"http://127.0.0.1:{silent.getsockname()[1]}/whl/cpu", 0.5)
        elapsed = time.monotonic() - started
    assert not answered
    assert elapsed < 2.0, elapsed


def test_dry_run_prints_the_fallback_command_when_the_index_is_off(capsys):
    assert install_torch.main(["--index", "", "--dry-run"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [sys.executable, "-m", "pip", "install", "--quiet", install_torch.torch_requirement()]

"""tools/install_perf_analyzer.py: the mirror comes from the system's apt sources, never from the repository."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[2] / "tools" / "install_perf_analyzer.py"
spec = importlib.util.spec_from_file_location("install_perf_analyzer", PATH)
installer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(installer)


def test_mirror_from_deb822_and_one_line_sources(tmp_path):
    deb822 = tmp_path / "debian.sources"
    deb822.write_text("Types: deb\n# a comment\nURIs: http://mirror.example/debian-security\nSuites: x-security\n\n"
                      "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n")
    assert installer.debian_mirror([str(deb822)]) == "http://mirror.example/debian"
    one_line = tmp_path / "sources.list"
    one_line.write_text("# deb http://ignored/debian bookworm main\n"
                        "deb [signed-by=/k.gpg arch=amd64] https://other.example/debian bookworm main\n")
    assert installer.debian_mirror([str(tmp_path / "missing.list"), str(one_line)]) == "https://other.example/debian"


def test_no_debian_mirror_is_a_clear_error(tmp_path):
    other = tmp_path / "node.list"
    other.write_text("deb https://deb.nodesource.com/node_20.x nodistro main\n")
    with pytest.raises(SystemExit, match="no Debian mirror"):
        installer.debian_mirror([str(other)])


def test_wrapper_runs_the_binary_through_the_bundled_loader(tmp_path):
    wrapper = tmp_path / "perf_analyzer"
    installer.write_wrapper(wrapper, tmp_path / "bin" / "pa", tmp_path / "libs")
    text = wrapper.read_text()
    loader = tmp_path / "libs" / installer.LIB_SUBDIR / "ld-linux-x86-64.so.2"
    assert f'exec "{loader}" --library-path "{tmp_path / "libs" / installer.LIB_SUBDIR}:' in text
    assert text.rstrip().endswith(f'"{tmp_path / "bin" / "pa"}" "$@"') and wrapper.stat().st_mode & 0o111

"""The repository stands on its own: no tracked file points at a `shared/` folder outside it.

A clone in an empty folder (what .ci/run tests) has nothing beside it, so a path into a sibling folder in code,
a test, the Makefile, the Dockerfile or a doc would work only on a machine that happens to have that folder.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Built from parts so that this file does not name such a path itself.
SHARED_PATH = re.compile(r"(?<![\w.-])(?:\.\./|/)?" + "shared" + r"/")
# Files that explain the rule may name the folder: this one, in its docstring and its examples.
EXPLAINS_THE_RULE = frozenset({str(Path(__file__).resolve().relative_to(ROOT))})
SKIPPED_DIRS = {".git", ".venv", "models", "__pycache__", ".pytest_cache", "build", "dist"}


def tracked_files() -> list[str]:
    """`git ls-files` of the checkout; outside a git checkout (an unpacked sdist), every file but build output."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, timeout=60, check=True)
        names = [n for n in listed.stdout.decode().split("\0") if n]
        if names:
            return names
    except (OSError, subprocess.SubprocessError):
        pass
    return [str(p.relative_to(ROOT)) for p in ROOT.rglob("*")
            if p.is_file() and not SKIPPED_DIRS & set(p.relative_to(ROOT).parts[:-1])
            and not p.name.endswith((".pyc", ".onnx"))]


def shared_paths(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if SHARED_PATH.search(line)]


def test_the_pattern_finds_paths_to_a_shared_folder_and_nothing_else():
    assert shared_paths("docker build --build-context sts-data=../" + "shared/data/stsb .")
    assert shared_paths("see /work/" + "shared/reference/x.md")
    assert shared_paths("the project's `" + "shared/data/stsb`")
    assert not shared_paths("shared memory, cudasharedmemory, a shared object file, shared_memory_region")
    assert not shared_paths("/v2/systemsharedmemory/region, overshared/x")


def test_no_tracked_file_names_a_shared_folder():
    files = tracked_files()
    assert "Makefile" in files and "pyproject.toml" in files, files[:20]
    offenders = {}
    for name in files:
        if name in EXPLAINS_THE_RULE or not (ROOT / name).is_file():
            continue
        try:
            text = (ROOT / name).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary (plots)
        if found := shared_paths(text):
            offenders[name] = found
    assert not offenders, f"paths outside the repository: {offenders}"

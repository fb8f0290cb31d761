""".dockerignore: host .venv, model weights and caches stay out; everything the Dockerfile COPYs stays in."""

from __future__ import annotations

import glob
from pathlib import Path

import pytest
from .oes_deploy_helpers import DOCKERIGNORE, ROOT, dockerignore_rules, is_ignored, load_dockerfile

RULES = dockerignore_rules(DOCKERIGNORE.read_text())


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".venv",
        ".git/HEAD",
        "models/all-MiniLM-L6-v2/config.pbtxt",
        "models/all-MiniLM-L6-v2/1/model.onnx",
        "server/__pycache__/app.cpython-311.pyc",
        "export/weights.onnx",
        "export/model.onnx_data",
        "server/stray.safetensors",
        "onnx_embedding_server.egg-info/PKG-INFO",
        ".pytest_cache/v/cache/nodeids",
        ".hypothesis/examples/x",
        "benchmarks/.venv-fastapi/bin/python",
        "benchmarks/results/run.json",
        "tests/deploy/test_dockerignore.py",
    ],
)
def test_kept_out_of_the_build_context(path):
    assert is_ignored(path, RULES), path


def _copy_sources() -> list[str]:
    df = load_dockerfile()
    out = []
    for stage in df.stages:
        for instr in stage.all("COPY"):
            if "from" in instr.flags():
                continue
            out.extend(a for a in instr.args.split()[:-1] if not a.startswith("--"))
    return out


def test_every_copy_source_reaches_the_build():
    sources = _copy_sources()
    assert {"pyproject.toml", "server/", "export/", "data/stsb/", "deploy/docker/verify_runtime.py"} <= set(sources), sources
    for src in sources:
        if src.endswith("/"):
            files = [p for p in glob.glob(str(ROOT / src / "**" / "*"), recursive=True)
                     if Path(p).is_file() and "__pycache__" not in p]
            # Folders still being written by others may be empty: check a file they will hold.
            samples = [str(Path(p).relative_to(ROOT)) for p in files] or [src + "__init__.py"]
        elif any(c in src for c in "*?["):
            samples = [src.replace("[d]", "d")]  # README.m[d] -> README.md
        else:
            samples = [src]
        for sample in samples:
            assert not is_ignored(sample, RULES), f"{sample} (COPY {src}) is excluded by .dockerignore"


def test_matcher_semantics():
    rules = dockerignore_rules("*\n!keep/\n**/__pycache__/\n!keep/x.pyc\n*.md\n!README.md\n")
    assert is_ignored("other/file", rules)
    assert not is_ignored("keep/a/b.py", rules)
    assert is_ignored("keep/a/__pycache__/b.pyc", rules)
    assert not is_ignored("keep/x.pyc", rules)
    assert not is_ignored("README.md", rules)
    assert is_ignored("NOTES.md", rules)

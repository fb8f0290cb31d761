"""Cheap copies of a model repository for tests that change or break it."""

from __future__ import annotations

import shutil
from pathlib import Path


def link_model(source_repo: Path, target_repo: Path, name: str, *, new_name: str | None = None) -> Path:
    """Copy a model's config and link its weights (the server resolves model dirs inside the repository)."""
    source = source_repo / name
    target = target_repo / (new_name or name)
    target.mkdir(parents=True)
    config = (source / "config.pbtxt").read_text()
    if new_name:
        config = config.replace(f'name: "{name}"', f'name: "{new_name}"')
    (target / "config.pbtxt").write_text(config)
    for version in (p for p in source.iterdir() if p.is_dir() and p.name.isdigit()):
        (target / version.name).mkdir()
        for file in version.iterdir():
            (target / version.name / file.name).symlink_to(file.resolve())
    return target


def copy_model(source_repo: Path, target_repo: Path, name: str) -> Path:
    target = target_repo / name
    shutil.copytree(source_repo / name, target)
    return target

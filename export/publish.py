"""Writing into the model repository: hidden staging directories, atomic renames, config.pbtxt.

A version directory only appears once it is complete (`os.replace` of a verified staging directory), so
the server, which loads numeric directories holding model.onnx, never sees a partial export.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from server.repository import (
    BACKEND,
    CONFIG_FILE,
    FP16,
    PARAM_DIMENSION,
    PARAM_MAX_BATCH_TOKENS,
    PARAM_MAX_SEQ_LENGTH,
    PARAM_NORMALIZE,
    PARAM_POOLING,
    PARAM_PRECISION,
    PARAM_SOURCE,
    PLATFORM,
    ModelConfig,
    conform_inputs,
    declare_outputs,
    model_config_pb2,
    prompt_parameters,
    version_directory,
    write_model_config,
)

from .errors import InputError

MAX_QUEUE_SIZE = 1024
_STAGING_PREFIXES = (".tmp-", ".old-")


@dataclass(frozen=True)
class Contract:
    """What the server needs to know about one published model, beyond the graph itself."""

    name: str
    inputs: tuple[str, ...]
    dimension: int
    pooling: str
    normalize: bool
    max_seq_length: int
    precision: str
    source: str
    max_batch_size: int
    max_batch_tokens: int
    prompts: tuple[tuple[str, str], ...] = ()
    default_prompt_name: str | None = None


def model_config(contract: Contract) -> ModelConfig:
    config = ModelConfig(
        name=contract.name, platform=PLATFORM, backend=BACKEND, max_batch_size=contract.max_batch_size
    )
    for name in contract.inputs:
        config.input.add(name=name, data_type=model_config_pb2.TYPE_INT64, dims=[-1])
    conform_inputs(config)
    declare_outputs(config, contract.dimension)
    config.dynamic_batching.max_queue_delay_microseconds = 0
    config.dynamic_batching.default_queue_policy.max_queue_size = MAX_QUEUE_SIZE
    group = model_config_pb2.ModelInstanceGroup
    config.instance_group.add(kind=group.KIND_GPU if contract.precision == FP16 else group.KIND_CPU, count=1)
    config.version_policy.latest.num_versions = 1
    parameters = {
        PARAM_POOLING: contract.pooling,
        PARAM_NORMALIZE: "true" if contract.normalize else "false",
        PARAM_MAX_SEQ_LENGTH: str(contract.max_seq_length),
        PARAM_DIMENSION: str(contract.dimension),
        PARAM_PRECISION: contract.precision,
        PARAM_MAX_BATCH_TOKENS: str(contract.max_batch_tokens),
        PARAM_SOURCE: contract.source,
        **prompt_parameters(dict(contract.prompts), contract.default_prompt_name),
    }
    for key, value in parameters.items():
        config.parameters[key].string_value = value
    return config


def check_version_free(repository: Path, name: str, version: int, force: bool) -> None:
    target = version_directory(repository, name, version)
    if target.exists() and not force:
        raise InputError(f"{target} already exists; pass --force to replace version {version} of {name}")


def recover_stale_staging(model_dir: Path) -> None:
    """Clean up after exports that were killed outright (their process is gone).

    `.tmp-<version>-<pid>` never held a published version: delete it. `.old-<version>-<pid>` is a
    version set aside by a forced re-export: put it back if nothing replaced it, else delete it.
    """
    if not model_dir.is_dir():
        return
    for entry in model_dir.iterdir():
        parts = entry.name.split("-")
        if (
            not entry.is_dir()
            or len(parts) != 3
            or f"{parts[0]}-" not in _STAGING_PREFIXES
            or _alive(parts[2])
        ):
            continue
        version = model_dir / parts[1]
        if entry.name.startswith(".old-") and parts[1].isdigit() and not version.exists():
            os.replace(entry, version)
        else:
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: str) -> bool:
    if not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Staging:
    """A hidden `<repository>/<name>/.tmp-<version>-<pid>` directory, removed on any failure or interrupt.

    Directories this export created (the repository, the model directory) are removed too if they are
    left empty, so a failed export of a new model leaves nothing behind.
    """

    def __init__(self, repository: Path, name: str, version: int) -> None:
        self.repository = repository
        self.name = name
        self.model_dir = repository / name
        self.version = version
        self.path = self.model_dir / f".tmp-{version}-{os.getpid()}"
        self._created: list[Path] = []
        self._replaced: Path | None = None

    def __enter__(self) -> Staging:
        for directory in (self.model_dir.parent, self.model_dir):
            if not directory.exists():
                directory.mkdir(parents=True)
                self._created.append(directory)
        recover_stale_staging(self.model_dir)
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        for directory in reversed(self._created):
            try:
                directory.rmdir()
            except OSError:
                pass

    def publish(self, config: ModelConfig, force: bool, undo: list[Callable[[], None]]) -> Path:
        """Rename the staged version into place (an existing one only with `force`), then write the config.

        Every step appends its inverse to `undo`, so a failure anywhere in a multi-model publication can
        put the repository back as it was.
        """
        _fsync_tree(self.path)
        target = version_directory(self.repository, self.name, self.version)
        if target.exists():
            if not force:
                raise InputError(f"{target} already exists; pass --force to replace version {self.version}")
            aside = self.model_dir / f".old-{self.version}-{os.getpid()}"
            shutil.rmtree(aside, ignore_errors=True)
            undo.append(lambda: os.replace(aside, target))
            os.replace(target, aside)
            self._replaced = aside
        undo.append(lambda: os.replace(target, self.path))
        os.replace(self.path, target)
        config_path = self.model_dir / CONFIG_FILE
        previous = config_path.read_bytes() if config_path.exists() else None
        undo.append(lambda: _restore(config_path, previous))
        write_config(config, self.model_dir)
        _fsync_dir(self.model_dir)
        return target

    def commit(self) -> None:
        """The publication stands: drop the replaced version, keep the directories this export created."""
        if self._replaced is not None:
            shutil.rmtree(self._replaced, ignore_errors=True)
        self._created.clear()


def publish_all(staged: list[tuple[Staging, ModelConfig]], force: bool) -> list[Path]:
    """Publish every staged model, or (on any failure or interrupt) none of them."""
    undo: list[Callable[[], None]] = []
    try:
        targets = [staging.publish(config, force, undo) for staging, config in staged]
    except BaseException:
        for action in reversed(undo):
            with contextlib.suppress(OSError):
                action()
        raise
    for staging, _ in staged:
        staging.commit()
    return targets


def _restore(path: Path, content: bytes | None) -> None:
    if content is None:
        path.unlink(missing_ok=True)
        return
    temporary = path.with_name(f".{path.name}.restore-{os.getpid()}")
    temporary.write_bytes(content)
    os.replace(temporary, path)


def write_config(config: ModelConfig, model_dir: Path) -> None:
    temporary = model_dir / f".{CONFIG_FILE}.tmp-{os.getpid()}"
    try:
        write_model_config(config, temporary)
        _fsync_file(temporary)
        os.replace(temporary, model_dir / CONFIG_FILE)
    finally:
        temporary.unlink(missing_ok=True)


def _fsync_file(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_tree(path: Path) -> None:
    for file in path.iterdir():
        if file.is_file():
            _fsync_file(file)
    _fsync_dir(path)

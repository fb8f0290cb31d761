"""The Triton-style model repository: `<repo>/<name>/config.pbtxt` + `<repo>/<name>/<version>/model.onnx`.

This module is the contract between `export/` (which writes it) and `server/` (which reads it), and the only
place that knows the repository's names and layout: file names, the version directory rule, the per-precision
model names, tensor names, the platform and the parameters. The config is Triton's own `inference.ModelConfig`
message, read and written with protobuf `text_format`; the embedding metadata the server needs lives in its
`parameters` map.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from google.protobuf import text_format


def _triton_model_config() -> ModuleType:
    """tritonclient's generated `model_config_pb2`, without the `tritonclient.grpc` package import that loads
    gRPC (13 MB of server RSS for nothing: only the message is used)."""
    name = "tritonclient.grpc.model_config_pb2"
    if name in sys.modules:
        return sys.modules[name]
    package = importlib.util.find_spec("tritonclient")
    if package is None or not package.submodule_search_locations:
        raise ImportError("tritonclient is not installed (the runtime install set needs it for ModelConfig)")
    path = Path(list(package.submodule_search_locations)[0]) / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


model_config_pb2 = _triton_model_config()
ModelConfig = model_config_pb2.ModelConfig

# Files: `<repository>/<name>/CONFIG_FILE`, `<repository>/<name>/<version>/{MODEL_FILE,TOKENIZER_FILE,REPORT_FILE}`.
CONFIG_FILE = "config.pbtxt"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
REPORT_FILE = "export_report.json"

# What config.pbtxt declares the model runs on.
PLATFORM = "onnxruntime_onnx"
BACKEND = "onnxruntime"

# Tensor names. The ONNX graph takes the token id inputs and returns OUTPUT_EMBEDDING ([batch, dimension] FP32);
# requests may instead send TEXT_INPUT (BYTES, below), which the server tokenizes.
INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
TOKEN_TYPE_IDS = "token_type_ids"
OUTPUT_EMBEDDING = "sentence_embedding"

# Precisions. A model is published once per precision, each as a model of its own (`variant_name`).
FP32 = "fp32"
FP16 = "fp16"
INT8 = "int8"
PRECISIONS = (FP32, FP16, INT8)

# Keys of ModelConfig.parameters that carry the embedding contract.
PARAM_POOLING = "pooling"
PARAM_NORMALIZE = "normalize"
PARAM_MAX_SEQ_LENGTH = "max_seq_length"
PARAM_DIMENSION = "dimension"
PARAM_PRECISION = "precision"
PARAM_MAX_BATCH_TOKENS = "max_batch_tokens"
PARAM_SOURCE = "source_model"
# A model's prompts (sentence-transformers' `prompts`): one parameter per prompt, `prompt:<name>` = its text,
# and the name applied when a request names none.
PARAM_PROMPT_PREFIX = "prompt:"
PARAM_DEFAULT_PROMPT_NAME = "default_prompt_name"

# Outputs beside `sentence_embedding` that the server computes for `chunking=chunks` requests (declared in
# config.pbtxt by `declare_outputs`).
OUTPUT_CHUNK_EMBEDDING = "chunk_embedding"
OUTPUT_CHUNK_COUNT = "chunk_count"
OUTPUT_CHUNK_SPAN = "chunk_span"
CHUNK_OUTPUTS = (OUTPUT_CHUNK_EMBEDDING, OUTPUT_CHUNK_COUNT, OUTPUT_CHUNK_SPAN)


def variant_name(name: str, precision: str) -> str:
    """The repository name of one precision of model `name`: fp32 keeps `name`, the others get `-<precision>`."""
    return name if precision == FP32 else f"{name}-{precision}"


def version_directory(repository: Path, name: str, version: int) -> Path:
    """Where version `version` of model `name` lives: `<repository>/<name>/<version>`."""
    return repository / name / str(version)


def is_version_name(directory_name: str) -> bool:
    """A version directory's name: a positive number without leading zeros (Triton's rule). Anything else
    in a model directory (`.tmp-*` staging, notes) is not a version."""
    return directory_name.isdigit() and not directory_name.startswith("0")


def prompt_parameters(prompts: dict[str, str], default_name: str | None) -> dict[str, str]:
    """The config.pbtxt parameters that record `prompts` (name -> text) and the default prompt name."""
    parameters = {PARAM_PROMPT_PREFIX + name: text for name, text in prompts.items()}
    if default_name is not None:
        parameters[PARAM_DEFAULT_PROMPT_NAME] = default_name
    return parameters

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class RepositoryError(Exception):
    """A model repository entry is missing, malformed or not allowed."""


class ModelNotFound(RepositoryError):
    pass


def validate_model_name(name: str) -> str:
    """Return `name` if it is a plain model directory name; raise otherwise (no paths, no traversal)."""
    if not _NAME.fullmatch(name) or ".." in name:
        raise RepositoryError(
            f"invalid model name {name!r}: use letters, digits, '.', '_' and '-' (at most 128), no path parts"
        )
    return name


def read_model_config(path: Path) -> ModelConfig:
    config = ModelConfig()
    try:
        text_format.Parse(path.read_text(encoding="utf-8"), config)
    except text_format.ParseError as exc:
        raise RepositoryError(f"{path}: not a valid Triton ModelConfig: {exc}") from exc
    return config


def write_model_config(config: ModelConfig, path: Path) -> None:
    path.write_text(text_format.MessageToString(config), encoding="utf-8")


TEXT_INPUT = "TEXT"
TOKEN_INPUTS = (INPUT_IDS, ATTENTION_MASK, TOKEN_TYPE_IDS)


def conform_inputs(config: ModelConfig) -> ModelConfig:
    """Make the config's inputs say what the server accepts, in Triton's terms (in place; returns `config`).

    A request sends either `TEXT` (BYTES: one string per batch item, the server tokenizes) or the token id
    inputs; so `TEXT` is listed first (TYPE_STRING, dims [1] under batching: metadata shape [-1, 1]) and every
    token id input is `optional` (INT64, dims [-1]). Exports from before `TEXT` was listed conform on load.
    """
    batched = config.max_batch_size > 0
    ids = [tensor for tensor in config.input if tensor.name != TEXT_INPUT]
    del config.input[:]
    config.input.add(name=TEXT_INPUT, data_type=model_config_pb2.TYPE_STRING, dims=[1] if batched else [-1])
    for tensor in ids:
        added = config.input.add()
        added.CopyFrom(tensor)
        added.optional = True
        if tensor.name in TOKEN_INPUTS:
            added.data_type = model_config_pb2.TYPE_INT64
            added.ClearField("dims")
            added.dims.extend([-1] if batched else [-1, -1])
    return config


def declare_outputs(config: ModelConfig, dimension: int) -> ModelConfig:
    """Add the outputs a request may ask for (in place; returns `config`): `sentence_embedding` [dim] FP32 from
    the graph, and those the server computes for `chunking=chunks` requests: [-1, dim] FP32, [1] INT64 (Triton
    exposes [batch, 1]; `reshape { shape: [] }` is the model-side [batch]) and [-1, 2] INT64 (dims without the
    batch dimension)."""
    config.output.add(name=OUTPUT_EMBEDDING, data_type=model_config_pb2.TYPE_FP32, dims=[dimension])
    config.output.add(name=OUTPUT_CHUNK_EMBEDDING, data_type=model_config_pb2.TYPE_FP32, dims=[-1, dimension])
    count = config.output.add(name=OUTPUT_CHUNK_COUNT, data_type=model_config_pb2.TYPE_INT64, dims=[1])
    count.reshape.shape[:] = []
    count.reshape.SetInParent()
    config.output.add(name=OUTPUT_CHUNK_SPAN, data_type=model_config_pb2.TYPE_INT64, dims=[-1, 2])
    return config


def model_names(repository: Path) -> list[str]:
    """Names of the model directories in the repository that hold a config.pbtxt."""
    if not repository.is_dir():
        raise RepositoryError(f"model repository {repository} does not exist or is not a directory")
    return sorted(
        p.name for p in repository.iterdir() if p.is_dir() and _NAME.fullmatch(p.name) and (p / CONFIG_FILE).is_file()
    )


def model_versions(model_dir: Path) -> list[int]:
    """Published versions: numeric directory names not starting with 0 (Triton's rule) that hold a model.onnx.

    An export writes into a hidden temporary directory and renames it into place, so a version
    directory only exists once it is complete. A version directory that resolves outside the repository
    (a symlink to elsewhere) is not a version: the server loads nothing from outside its repository.
    """
    root = model_dir.parent.resolve()
    versions = []
    for p in model_dir.iterdir():
        if p.is_dir() and is_version_name(p.name) and (p / MODEL_FILE).is_file():
            if p.resolve().is_relative_to(root):
                versions.append(int(p.name))
    return sorted(versions)


@dataclass(frozen=True)
class ModelEntry:
    """One model version as found on disk."""

    name: str
    version: int
    config: ModelConfig
    directory: Path

    @property
    def onnx_path(self) -> Path:
        return self.directory / MODEL_FILE

    @property
    def tokenizer_path(self) -> Path:
        return self.directory / TOKENIZER_FILE

    def parameter(self, key: str, default: str | None = None) -> str | None:
        if key in self.config.parameters:
            return self.config.parameters[key].string_value
        return default

    def prompts(self) -> tuple[dict[str, str], str | None]:
        """The model's prompts (name -> text, sorted by name) and its default prompt name, from the parameters."""
        prompts = {key[len(PARAM_PROMPT_PREFIX):]: value.string_value
                   for key, value in sorted(self.config.parameters.items()) if key.startswith(PARAM_PROMPT_PREFIX)}
        default = self.parameter(PARAM_DEFAULT_PROMPT_NAME) or None
        if default is not None and default not in prompts:
            raise RepositoryError(f"{self.name}: {PARAM_DEFAULT_PROMPT_NAME} {default!r} is not one of its prompts "
                                  f"{sorted(prompts)}")
        return prompts, default


def find_model(repository: Path, name: str, version: int | None = None) -> ModelEntry:
    """Resolve `name` (and `version`, default the highest) inside `repository`."""
    validate_model_name(name)
    model_dir = repository / name
    root = repository.resolve()
    if not model_dir.resolve().is_relative_to(root) or not (model_dir / CONFIG_FILE).is_file():
        raise ModelNotFound(f"model {name!r} is not in repository {repository}")
    config = read_model_config(model_dir / CONFIG_FILE)
    if config.name and config.name != name:
        raise RepositoryError(f"{model_dir / CONFIG_FILE}: name {config.name!r} differs from directory {name!r}")
    config.name = name
    conform_inputs(config)
    versions = model_versions(model_dir)
    if not versions:
        raise RepositoryError(f"model {name!r} has no published version (expected {model_dir}/<n>/{MODEL_FILE})")
    chosen = versions[-1] if version is None else version
    if chosen not in versions:
        raise ModelNotFound(f"model {name!r} has no version {chosen} (versions: {versions})")
    directory = version_directory(repository, name, chosen)
    if not (directory / TOKENIZER_FILE).is_file():
        raise RepositoryError(f"{directory}: {TOKENIZER_FILE} is missing")
    return ModelEntry(name=name, version=chosen, config=config, directory=directory)

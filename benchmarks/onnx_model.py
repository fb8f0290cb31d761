"""An exported model on disk, and the plain way to run it with ONNX Runtime: tokenize, run, pool."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_MAX_SEQ_LENGTH = 256
# OnnxEncoder runs inside the plain-ORT contender apps, which stand for what a user writes without this project:
# they name the graph's tensors themselves and do not import `server` (its protobuf would count in their RSS).
SENTENCE_OUTPUT = "sentence_embedding"


@dataclass(frozen=True)
class ModelFiles:
    name: str
    onnx: Path
    tokenizer: Path
    max_seq_length: int
    config: Path | None
    dimension: int | None = None


def locate(repository: Path, name: str) -> ModelFiles:
    """`<repository>/<name>/<highest version>/{model.onnx,tokenizer.json}` plus the config's max_seq_length."""
    from server import repository as repo

    model_dir = repository / name
    versions = repo.model_versions(model_dir) if model_dir.is_dir() else []
    if not versions:
        raise FileNotFoundError(f"{model_dir}: no version directory holding {repo.MODEL_FILE}")
    version = repo.version_directory(repository, name, versions[-1])
    if not (version / repo.TOKENIZER_FILE).is_file():
        raise FileNotFoundError(f"{version / repo.TOKENIZER_FILE} is missing")
    config = model_dir / repo.CONFIG_FILE
    config = config if config.is_file() else None
    max_seq_length = _parameter(config, repo.PARAM_MAX_SEQ_LENGTH) or DEFAULT_MAX_SEQ_LENGTH
    dimension = _parameter(config, repo.PARAM_DIMENSION)
    return ModelFiles(
        name, version / repo.MODEL_FILE, version / repo.TOKENIZER_FILE, max_seq_length, config, dimension
    )


def _parameter(config: Path | None, name: str) -> int | None:
    """An integer parameter of config.pbtxt (`max_seq_length`, `dimension`), None if absent or unreadable."""
    if config is None:
        return None
    from server.repository import RepositoryError, read_model_config

    try:
        return int(read_model_config(config).parameters[name].string_value)
    except (RepositoryError, KeyError, ValueError):
        return None


def load_tokenizer(path: Path, max_seq_length: int, pad_to_longest: bool = False):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_seq_length)
    if pad_to_longest:
        tokenizer.enable_padding()
    return tokenizer


def create_session(path: Path, options=None):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def pad(encodings: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token ids to the longest; returns (input_ids, attention_mask) as int64."""
    longest = max(len(e.ids) for e in encodings)
    ids = np.zeros((len(encodings), longest), dtype=np.int64)
    mask = np.zeros((len(encodings), longest), dtype=np.int64)
    for row, encoding in enumerate(encodings):
        ids[row, : len(encoding.ids)] = encoding.ids
        mask[row, : len(encoding.ids)] = 1
    return ids, mask


class OnnxEncoder:
    """Texts in, one embedding per text out, through a session and a tokenizer."""

    def __init__(self, session, tokenizer) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.input_names = {i.name for i in session.get_inputs()}
        outputs = [o.name for o in session.get_outputs()]
        self.pooled = SENTENCE_OUTPUT in outputs
        self.output = SENTENCE_OUTPUT if self.pooled else outputs[0]

    def feeds(self, ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        return feeds

    def run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        (out,) = self.session.run([self.output], self.feeds(ids, mask))
        return out if self.pooled else mean_pool_normalize(out, mask)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.run(*pad(self.tokenizer.encode_batch(list(texts))))


def mean_pool_normalize(tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
    weights = mask[..., None].astype(tokens.dtype)
    pooled = (tokens * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

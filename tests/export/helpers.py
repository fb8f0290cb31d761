"""Independent checks of published models: plain tokenizers + onnxruntime, no code from `export`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from server.repository import MODEL_FILE, TOKENIZER_FILE, model_names, model_versions

PROJECT = Path(__file__).resolve().parents[2]

LONG_TEXT = " ".join(
    f"Sentence {i} keeps going about subject number {i % 5} and then some more." for i in range(80)
)
TEXTS = [
    "A man is playing a guitar.",
    "Hi",
    LONG_TEXT,
    "Naïve café owners in São Paulo serve crème brûlée; 北京欢迎你; Привет, мир! 👋",
    "The weather today is sunny with a light breeze from the west, perfect for a long walk in the park.",
]


class Embedder:
    """Embed with the published tokenizer.json and model.onnx, feeding exactly the graph's inputs."""

    def __init__(self, version_dir: Path) -> None:
        self.tokenizer = Tokenizer.from_file(str(version_dir / TOKENIZER_FILE))
        self.session = ort.InferenceSession(str(version_dir / MODEL_FILE), providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        columns = {
            "input_ids": [e.ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
        }
        feed = {name: np.asarray(columns[name], dtype=np.int64) for name in self.inputs}
        (output,) = self.session.run(["sentence_embedding"], feed)
        return output


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def batched_and_single(version_dir: Path, texts: list[str]) -> np.ndarray:
    """One mixed-length batch, then each text alone (batch of one): (2, n, dim)."""
    embed = Embedder(version_dir)
    return np.stack([embed(texts), np.concatenate([embed([t]) for t in texts])])


def loadable(repository: Path) -> dict[str, list[int]]:
    """What the server would load: model directories with a config and numeric versions holding model.onnx."""
    if not repository.exists():
        return {}
    return {name: model_versions(repository / name) for name in model_names(repository)}


def snapshot(root: Path) -> list[str]:
    """Every path below `root` (empty if it does not exist)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(PROJECT)}
    return subprocess.run(
        [sys.executable, "-m", "export", *args],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )

"""Does an exported graph reproduce its reference? Probe-set parity and STS-B Spearman."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from server.repository import OUTPUT_EMBEDDING

from . import tokenizer as tok
from .errors import InputError
from .logs import quiet

if TYPE_CHECKING:
    import onnxruntime as ort
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

Embed = Callable[[list[str]], np.ndarray]

_LONG_TEXT = " ".join(
    f"Paragraph {i} of a long document describes topic {i % 7} in plain words, with numbers like {i * 37}."
    for i in range(60)
)

PROBE_TEXTS: tuple[str, ...] = (
    "Hello!",
    "A man is playing a guitar.",
    "The quick brown fox jumps over the lazy dog near the riverbank at dawn.",
    "",
    "Grüße aus Köln! Ça va très bien, merci. ¿Dónde está la biblioteca? Øresund, Ærø, Straße.",
    "東京は日本の首都です。 Москва — столица России. مرحبا بالعالم. 🌍🚀 ✓",
    "UPPER case AND MiXeD Case words, numbers 3.14159 and symbols <>&{}[] #hashtag @mention",
    "   leading and trailing whitespace\tand a tab   ",
    "Sentence embeddings map text to dense vectors so that similar meanings end up close together, "
    "which makes semantic search, clustering and deduplication possible without keyword overlap.",
    _LONG_TEXT,
)


@dataclass(frozen=True)
class Parity:
    reference: str
    probe_texts: int
    comparisons: int
    min_cosine: float
    mean_cosine: float
    max_abs_diff: float
    threshold: float | None

    @property
    def passed(self) -> bool:
        return self.threshold is None or self.min_cosine >= self.threshold

    def as_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def reference_embeddings(model: SentenceTransformer, texts: Sequence[str]) -> np.ndarray:
    """The texts as sentence-transformers embeds them without any prompt (`prompt=""` also overrides the
    model's default_prompt_name): the graph is checked on exactly the text it is fed."""
    with quiet():
        embeddings = model.encode(
            list(texts),
            prompt="",
            batch_size=len(texts),
            convert_to_numpy=True,
            normalize_embeddings=False,
            show_progress_bar=False,
        )
    return embeddings.astype(np.float32)


def session(path: Path) -> ort.InferenceSession:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def onnx_embedder(model_path: Path, tokenizer_path: Path) -> Embed:
    """Embed texts as the server does: the published tokenizer.json, then the ONNX graph on the CPU EP."""
    onnx_session = session(model_path)
    tokenizer: Tokenizer = tok.load(tokenizer_path)
    inputs = [i.name for i in onnx_session.get_inputs()]

    def embed(texts: list[str]) -> np.ndarray:
        (output,) = onnx_session.run([OUTPUT_EMBEDDING], tok.encode(tokenizer, texts, inputs))
        return output.astype(np.float32)

    return embed


def probe(embed: Embed, texts: Sequence[str] = PROBE_TEXTS) -> np.ndarray:
    """The probe set embedded as one mixed-length batch, then one text at a time: (2, n, dim)."""
    batched = embed(list(texts))
    single = np.concatenate([embed([text]) for text in texts])
    return np.stack([batched, single])


def compare(reference: np.ndarray, candidate: np.ndarray, *, against: str, threshold: float | None) -> Parity:
    """Row-wise cosine of `candidate` (runs, texts, dim) vs `reference` (texts, dim or the same shape)."""
    texts, dim = candidate.shape[-2:]
    reference = np.broadcast_to(reference, candidate.shape).reshape(-1, dim).astype(np.float64)
    flat = candidate.reshape(-1, dim).astype(np.float64)
    cosine = _cosine(reference, flat)
    return Parity(
        reference=against,
        probe_texts=int(texts),
        comparisons=int(flat.shape[0]),
        min_cosine=float(cosine.min()),
        mean_cosine=float(cosine.mean()),
        max_abs_diff=float(np.abs(reference - flat).max()),
        threshold=threshold,
    )


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return (a * b).sum(axis=-1) / np.maximum(norms, 1e-12)


@dataclass(frozen=True)
class StsData:
    path: Path
    scores: np.ndarray
    first: tuple[str, ...]
    second: tuple[str, ...]

    @property
    def sentences(self) -> list[str]:
        """Unique sentences, longest first, so batches hold similar lengths."""
        return sorted(set(self.first) | set(self.second), key=lambda s: (-len(s), s))


def load_sts(path: Path) -> StsData:
    """STS-B as `score<TAB>sentence1<TAB>sentence2` with a header; split on tabs only (no CSV quoting)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"cannot read STS-B data {path}: {exc.strerror or exc}") from None
    rows = [line.split("\t") for line in lines[1:] if line]
    if not rows or any(len(row) != 3 for row in rows):
        raise InputError(
            f"{path} is not STS-B data: expected a header and lines 'score<TAB>sentence1<TAB>sentence2'"
        )
    return StsData(
        path=path,
        scores=np.asarray([float(row[0]) for row in rows]),
        first=tuple(row[1] for row in rows),
        second=tuple(row[2] for row in rows),
    )


def sts_spearman(embed: Embed, data: StsData, *, desc: str, batch_size: int = 64) -> float:
    """Spearman correlation (x100) of the pairs' cosine similarity with the gold scores."""
    from scipy.stats import spearmanr
    from tqdm.auto import tqdm

    sentences = data.sentences
    vectors: dict[str, np.ndarray] = {}
    with tqdm(total=len(sentences), desc=desc, unit="sent", leave=False, disable=None) as bar:
        for start in range(0, len(sentences), batch_size):
            batch = sentences[start : start + batch_size]
            vectors.update(zip(batch, embed(batch)))
            bar.update(len(batch))
    first = np.stack([vectors[s] for s in data.first]).astype(np.float64)
    second = np.stack([vectors[s] for s in data.second]).astype(np.float64)
    return float(spearmanr(_cosine(first, second), data.scores).statistic * 100)

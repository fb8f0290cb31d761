"""The workload: a seeded corpus of real sentences joined to varied lengths, mostly short, a few long."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TSV = REPO_ROOT / "data" / "stsb" / "sts-dev.tsv"
DEFAULT_SIZE = 2000
DEFAULT_SEED = 20240611

# (weight, fewest sentences, most sentences) per text; an STS sentence is ~14 tokens, so the mean is
# ~42 tokens and the last bucket runs past a 256-token max_seq_length.
SHAPE: tuple[tuple[float, int, int], ...] = (
    (0.55, 1, 1),
    (0.25, 2, 3),
    (0.15, 4, 8),
    (0.04, 9, 16),
    (0.01, 20, 28),
)


def read_sentences(path: Path = DEFAULT_TSV) -> list[str]:
    """Unique sentences of an STS-B tsv (`score<TAB>sentence1<TAB>sentence2`, header first), in file order."""
    seen: dict[str, None] = {}
    with path.open(encoding="utf-8") as handle:
        next(handle)
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            for sentence in fields[1:3]:
                if sentence.strip():
                    seen.setdefault(sentence.strip(), None)
    return list(seen)


def build_texts(sentences: Sequence[str], size: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED) -> list[str]:
    """`size` texts, each some sentences drawn with replacement and joined; same inputs, same texts."""
    if not sentences:
        raise ValueError("no sentences to build a corpus from")
    rng = random.Random(seed)
    weights = [w for w, _, _ in SHAPE]
    texts = []
    for _ in range(size):
        _, fewest, most = rng.choices(SHAPE, weights=weights)[0]
        count = rng.randint(fewest, most)
        texts.append(" ".join(rng.choice(sentences) for _ in range(count)))
    return texts


@dataclass(frozen=True)
class Corpus:
    texts: list[str]
    tokens: list[int]  # per text, with special tokens, after truncation to max_seq_length
    max_seq_length: int

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.tokens):
            raise ValueError("one token count per text")

    def stats(self) -> dict:
        n = len(self.tokens)
        return {
            "texts": n,
            "mean_tokens": sum(self.tokens) / n if n else 0.0,
            "max_tokens": max(self.tokens, default=0),
            "truncated": sum(t >= self.max_seq_length for t in self.tokens),
            "short_le_32": sum(t <= 32 for t in self.tokens),
            "total_tokens": sum(self.tokens),
        }


def token_counts(texts: Sequence[str], tokenizer) -> list[int]:
    """Tokens each text costs the model, using a `tokenizers.Tokenizer` already set to truncate, not pad."""
    return [len(encoding.ids) for encoding in tokenizer.encode_batch(list(texts))]


def load_corpus(
    tokenizer,
    max_seq_length: int,
    size: int = DEFAULT_SIZE,
    seed: int = DEFAULT_SEED,
    tsv: Path = DEFAULT_TSV,
) -> Corpus:
    texts = build_texts(read_sentences(tsv), size, seed)
    return Corpus(texts, token_counts(texts, tokenizer), max_seq_length)

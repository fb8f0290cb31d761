"""What one export run does, fixed before any work starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from server.repository import FP32

BUNDLED_MODEL_NAME = "all-MiniLM-L6-v2"
DEFAULT_REPOSITORY = Path("models")
# The STS benchmark ships in the repository (data/stsb, with its licence); the wheel does not carry it.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
STS_TEST = PROJECT_ROOT / "data" / "stsb" / "sts-test.tsv"
# int8 activation scales: one per token (a text's vector does not depend on its batch neighbours), or
# quantize_dynamic's one per tensor (shared by every text of a batch; ~10% faster on CPU).
PER_TOKEN, PER_TENSOR = "per-token", "per-tensor"
INT8_ACTIVATIONS = (PER_TOKEN, PER_TENSOR)


@dataclass(frozen=True)
class Thresholds:
    """Publication gates."""

    fp32_min_cosine: float = 0.99999
    optimized_min_cosine: float = 0.9999
    fp16_min_cosine: float = 0.999
    int8_max_spearman_drop: float = 0.5


@dataclass(frozen=True)
class ExportConfig:
    """One export as asked for; `source` None is the bundled model, `name` None derives it from the source."""

    source: str | None = None
    name: str | None = None
    repository: Path = DEFAULT_REPOSITORY
    version: int = 1
    max_seq_length: int | None = None
    precisions: tuple[str, ...] = (FP32,)
    force: bool = False
    optimize: bool = False
    int8_activations: str = PER_TOKEN
    sts_data: Path | None = None
    # The fp32 export's STS-B Spearman x100 must be within `expect_sts_tolerance` of this (None: no gate).
    expect_sts: float | None = None
    expect_sts_tolerance: float = 0.05
    max_batch_size: int = 64
    # CPU: per-token cost is least at 1-4k padded tokens a run (activations stay in cache) and the arena keeps a
    # quarter of what 8192 needs. GPUs want more: the GPU manifests set OES_MAX_BATCH_TOKENS=16384.
    max_batch_tokens: int = 2048
    thresholds: Thresholds = field(default_factory=Thresholds)


def default_sts_data() -> Path:
    """STS-B test split shipped in the repository's data/stsb (the int8/fp16 quality gate)."""
    return STS_TEST

"""What one export run does, fixed before any work starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

FP32 = "fp32"
FP16 = "fp16"
INT8 = "int8"
PRECISIONS = (FP32, FP16, INT8)

BUNDLED_MODEL_NAME = "all-MiniLM-L6-v2"
DEFAULT_REPOSITORY = Path("models")
STS_TEST_RELATIVE = Path("shared/data/stsb/sts-test.tsv")


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
    sts_data: Path | None = None
    max_batch_size: int = 64
    # CPU: per-token cost is least at 1-4k padded tokens a run (activations stay in cache) and the arena keeps a
    # quarter of what 8192 needs. GPUs want more: the GPU manifests set OES_MAX_BATCH_TOKENS=16384.
    max_batch_tokens: int = 2048
    thresholds: Thresholds = field(default_factory=Thresholds)


def model_name(name: str, precision: str) -> str:
    """The repository name of one precision: fp32 keeps `name`, the others get a suffix."""
    return name if precision == FP32 else f"{name}-{precision}"


def default_sts_data() -> Path:
    """STS-B test split from the `shared/` directory that sits beside the project (or beside the cwd)."""
    project = Path(__file__).resolve().parent.parent
    candidates = [project.parent / STS_TEST_RELATIVE, Path.cwd().parent / STS_TEST_RELATIVE]
    return next((path for path in candidates if path.is_file()), candidates[0])

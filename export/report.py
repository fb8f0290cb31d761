"""export_report.json: what was exported from what, with which tools, and how well it matches."""

from __future__ import annotations

import datetime as dt
import json
import platform
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from server.repository import MODEL_FILE, REPORT_FILE

from .source import sha256_file
from .tokenizer import Padding

if TYPE_CHECKING:
    from .pipeline import Plan
    from .verify import Parity

FORMAT_VERSION = 1
TOOLS = (
    "torch",
    "transformers",
    "sentence-transformers",
    "optimum",
    "optimum-onnx",
    "onnx",
    "onnxruntime",
    "tokenizers",
    "numpy",
    "scipy",
)


@dataclass(frozen=True)
class SourceFacts:
    reference: str
    path: Path
    model_type: str
    modules: tuple[str, ...]
    pooling: str
    normalize: bool
    max_seq_length: int
    dimension: int
    padding: Padding
    weights_sha256: dict[str, str]
    prompts: tuple[tuple[str, str], ...] = ()
    default_prompt_name: str | None = None


def verification_fields(primary: Parity, comparisons: dict[str, Parity], gate: dict | None = None) -> dict:
    """The main probe comparison's numbers, the gate that allowed publication, every comparison made."""
    return {
        "min_cosine": primary.min_cosine,
        "max_abs_diff": primary.max_abs_diff,
        "compared_with": primary.reference,
        "probe_count": primary.probe_texts,
        "gate": gate or cosine_gate(primary),
        "parity": {name: parity.as_dict() for name, parity in comparisons.items()},
    }


def cosine_gate(parity: Parity) -> dict:
    return {
        "metric": "min_cosine",
        "reference": parity.reference,
        "threshold": parity.threshold,
        "value": parity.min_cosine,
        "passed": parity.passed,
    }


def tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TOOLS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def onnx_facts(path: Path) -> dict:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {init.name for init in model.graph.initializer}
    return {
        "file": MODEL_FILE,
        "bytes": path.stat().st_size,
        "sha256": sha256_file(path),
        "opset": {o.domain or "ai.onnx": o.version for o in model.opset_import},
        "inputs": [i.name for i in model.graph.input if i.name not in initializers],
        "outputs": [o.name for o in model.graph.output],
    }


def finish(
    fields: dict, plan: Plan, facts: SourceFacts, precision: str, directory: Path, started: float
) -> dict:
    """The full report of one published model: `fields` (its verification) plus the common facts."""
    return {
        "format_version": FORMAT_VERSION,
        "model": plan.name(precision),
        "version": plan.config.version,
        "precision": precision,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "source": {
            "model": facts.reference,
            "path": str(facts.path),
            "weights_sha256": facts.weights_sha256,
            "model_type": facts.model_type,
            "modules": list(facts.modules),
        },
        "embedding": {
            "pooling": facts.pooling,
            "normalize": facts.normalize,
            "dimension": facts.dimension,
            "max_seq_length": facts.max_seq_length,
            "prompts": dict(facts.prompts),
            "default_prompt_name": facts.default_prompt_name,
        },
        "tokenizer": {
            "truncation": {
                "max_length": facts.max_seq_length,
                "strategy": "longest_first",
                "direction": "right",
            },
            "padding": {
                "strategy": "BatchLongest",
                "pad_id": facts.padding.pad_id,
                "pad_token": facts.padding.pad_token,
                "direction": facts.padding.side,
            },
        },
        "onnx": onnx_facts(directory / MODEL_FILE),
        "tools": tool_versions(),
        "optimize": None,
        **fields,
        "elapsed_seconds": round(time.monotonic() - started, 1),
    }


def write(document: dict, directory: Path) -> None:
    (directory / REPORT_FILE).write_text(
        json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )

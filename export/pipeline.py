"""One export: check the input, export and verify every precision, then publish them all (or nothing)."""

from __future__ import annotations

import contextlib
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from server.repository import (
    FP16,
    FP32,
    INT8,
    MODEL_FILE,
    PRECISIONS,
    RepositoryError,
    validate_model_name,
    variant_name,
)

from . import onnx_graph, publish, report, source, tokenizer, verify
from .config import INT8_ACTIVATIONS, ExportConfig, default_sts_data
from .errors import InputError
from .logs import log
from .source import SourceModel
from .steps import Steps

if TYPE_CHECKING:
    import numpy as np
    from sentence_transformers import SentenceTransformer


@dataclass(frozen=True)
class Plan:
    """An export that passed every check that needs no torch: the source, the names, the lengths."""

    config: ExportConfig
    source: SourceModel
    model: str
    max_seq_length: int
    precisions: tuple[str, ...]
    sts_data: Path | None

    def name(self, precision: str) -> str:
        return variant_name(self.model, precision)


@dataclass(frozen=True)
class Published:
    name: str
    precision: str
    directory: Path
    report: dict


def plan(config: ExportConfig) -> Plan:
    """Validate everything that can be validated cheaply; raises InputError before anything is written."""
    precisions = tuple(dict.fromkeys(config.precisions))
    unknown = [p for p in precisions if p not in PRECISIONS]
    if not precisions or unknown:
        raise InputError(
            f"unknown precision {', '.join(unknown) or '(none)'}; choose from {', '.join(PRECISIONS)}"
        )
    if config.version < 1:
        raise InputError(f"--version must be a positive integer, not {config.version}")
    if config.int8_activations not in INT8_ACTIVATIONS:
        raise InputError(f"--int8-activations must be one of {', '.join(INT8_ACTIVATIONS)}, "
                         f"not {config.int8_activations!r}")
    if config.repository.exists() and not config.repository.is_dir():
        raise InputError(f"model repository {config.repository} is not a directory")
    reference, path = source.resolve_source(config.source)
    name = config.name or source.default_name(reference, path)
    for precision in precisions:
        try:
            validate_model_name(variant_name(name, precision))
        except RepositoryError as exc:
            raise InputError(f"{exc}; pass --name" if config.name is None else str(exc)) from None
    model = source.inspect_source(reference, path)
    max_seq_length = source.resolve_max_seq_length(model, config.max_seq_length)
    if (config.optimize or FP16 in precisions) and model.optimizer_model_type is None:
        raise InputError(
            f"--optimize and fp16 need a BERT-like encoder; {model.model_type!r} is not supported"
        )
    sts_data = _sts_data(config, precisions)
    for precision in precisions:
        publish.check_version_free(
            config.repository, variant_name(name, precision), config.version, config.force
        )
    return Plan(config, model, name, max_seq_length, precisions, sts_data)


def _sts_data(config: ExportConfig, precisions: tuple[str, ...]) -> Path | None:
    """The STS-B file, when int8 or --expect-sts needs one."""
    if config.expect_sts is not None and not config.expect_sts_tolerance >= 0:
        raise InputError(f"--expect-sts-tolerance must be >= 0, not {config.expect_sts_tolerance}")
    gates = ["int8"] if INT8 in precisions else []
    gates += ["--expect-sts"] if config.expect_sts is not None else []
    if not gates:
        return None
    sts_data = config.sts_data or default_sts_data()
    if not sts_data.is_file():
        raise InputError(f"{' and '.join(gates)} gated on STS-B: {sts_data} not found; pass --sts-data")
    return sts_data


def run(config: ExportConfig) -> list[Published]:
    return execute(plan(config))


def execute(plan: Plan) -> list[Published]:
    started = time.monotonic()
    log.info("loading %s", plan.source.path)
    model = source.load_sentence_transformer(plan.source, plan.max_seq_length)
    reference = verify.reference_embeddings(model, verify.PROBE_TEXTS)
    facts = _source_facts(plan, model, reference)
    config = plan.config
    with tempfile.TemporaryDirectory(prefix="onnx-export-") as scratch, contextlib.ExitStack() as stack:
        staged = {
            precision: stack.enter_context(
                publish.Staging(config.repository, plan.name(precision), config.version)
            )
            for precision in plan.precisions
        }
        reports = _build_and_verify(plan, model, facts, reference, staged, Path(scratch))
        results = _publish(plan, facts, staged, reports, started)
    for result in results:
        log.info("published %s version %d at %s", result.name, config.version, result.directory)
    log.info("done in %.1fs", time.monotonic() - started)
    return results


def _source_facts(plan: Plan, model: SentenceTransformer, reference: np.ndarray) -> report.SourceFacts:
    prompts, default_prompt_name = source.prompts_of(model)
    return report.SourceFacts(
        reference=plan.source.reference,
        path=plan.source.path,
        model_type=plan.source.model_type,
        modules=plan.source.modules,
        pooling=source.pooling_mode(model),
        normalize=source.normalizes(model),
        max_seq_length=plan.max_seq_length,
        dimension=int(reference.shape[1]),
        padding=tokenizer.padding_of(model),
        weights_sha256=source.weights_sha256(plan.source.path),
        prompts=tuple(prompts.items()),
        default_prompt_name=default_prompt_name,
    )


def _build_and_verify(
    plan: Plan,
    model: SentenceTransformer,
    facts: report.SourceFacts,
    reference: np.ndarray,
    staged: dict[str, publish.Staging],
    scratch: Path,
) -> dict[str, dict]:
    """Write and verify every precision into its staging directory; returns each one's report fields."""
    config = plan.config
    fp32_dir = staged[FP32].path if FP32 in staged else scratch / FP32
    fp32_dir.mkdir(exist_ok=True)
    builder = Steps(plan, scratch)

    log.info("exporting the ONNX graph with optimum (library_name=sentence_transformers)")
    graph = onnx_graph.finalize(
        onnx_graph.export_sentence_transformer(model, scratch / "optimum"), facts.dimension
    )
    published_tokenizer = tokenizer.build_tokenizer(model, plan.max_seq_length)
    builder.write(fp32_dir, graph, published_tokenizer)
    fp32 = builder.verify_fp32(fp32_dir, reference)
    if config.expect_sts is not None:
        builder.expect_sts(fp32, config.expect_sts, config.expect_sts_tolerance)

    reports = {FP32: fp32.report}
    if FP16 in staged:
        reports[FP16] = builder.fp16(staged[FP16].path, graph, published_tokenizer, fp32, reference)
    if INT8 in staged:
        reports[INT8] = builder.int8(staged[INT8].path, fp32_dir, published_tokenizer, fp32, reference)
    if config.optimize:
        builder.optimize(fp32_dir, graph, reference, fp32)
    if fp32.sts is not None:
        fp32.report["sts"] = {
            "data": str(plan.sts_data),
            "pairs": fp32.sts_pairs,
            "spearman": fp32.sts,
            **fp32.sts_expected,
        }
    return reports


def _publish(
    plan: Plan,
    facts: report.SourceFacts,
    staged: dict[str, publish.Staging],
    reports: dict[str, dict],
    started: float,
) -> list[Published]:
    """Write each staged precision's report and config, then publish them all (or none)."""
    documents, configs = {}, []
    for precision, staging in staged.items():
        documents[precision] = report.finish(reports[precision], plan, facts, precision, staging.path, started)
        report.write(documents[precision], staging.path)
        configs.append((staging, publish.model_config(_contract(plan, facts, precision, staging.path))))
    targets = publish.publish_all(configs, plan.config.force)
    return [Published(plan.name(p), p, target, documents[p]) for p, target in zip(staged, targets)]


def _contract(plan: Plan, facts: report.SourceFacts, precision: str, directory: Path) -> publish.Contract:
    return publish.Contract(
        name=plan.name(precision),
        inputs=tuple(onnx_graph.input_names(_load(directory))),
        dimension=facts.dimension,
        pooling=facts.pooling,
        normalize=facts.normalize,
        max_seq_length=plan.max_seq_length,
        precision=precision,
        source=plan.source.reference,
        max_batch_size=plan.config.max_batch_size,
        max_batch_tokens=plan.config.max_batch_tokens,
        prompts=facts.prompts,
        default_prompt_name=facts.default_prompt_name,
    )


def _load(directory: Path):
    import onnx

    return onnx.load(str(directory / MODEL_FILE), load_external_data=False)

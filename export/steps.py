"""The steps of an export that produce a graph and verify it; each returns what its report records."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from server.repository import FP16, FP32, MODEL_FILE, TOKENIZER_FILE

from . import onnx_graph, report, variants, verify
from .per_token import UnknownGraphError
from .errors import InputError, VerificationError
from .logs import log

if TYPE_CHECKING:
    from .pipeline import Plan


@dataclass
class Fp32:
    """The verified fp32 graph: how to run it, its probe embeddings, its report, its STS-B score."""

    embed: verify.Embed
    probe: np.ndarray
    report: dict
    sts: float | None = None
    sts_pairs: int = 0
    sts_expected: dict = field(default_factory=dict)  # the --expect-sts gate, once checked


class Steps:
    """Graph-producing steps of one export, sharing the plan, a scratch directory and the STS-B data."""

    def __init__(self, plan: Plan, scratch: Path) -> None:
        self.plan = plan
        self.scratch = scratch
        self.thresholds = plan.config.thresholds
        self._sts: verify.StsData | None = None

    def write(self, directory: Path, graph, published_tokenizer) -> None:
        onnx_graph.save(graph, directory / MODEL_FILE)
        published_tokenizer.save(str(directory / TOKENIZER_FILE))

    def embedder(self, directory: Path) -> verify.Embed:
        return verify.onnx_embedder(directory / MODEL_FILE, directory / TOKENIZER_FILE)

    def verify_fp32(self, directory: Path, reference: np.ndarray) -> Fp32:
        log.info("verifying fp32 against sentence-transformers on %d probe texts", len(verify.PROBE_TEXTS))
        embed = self.embedder(directory)
        probe = verify.probe(embed)
        parity = verify.compare(
            reference, probe, against="sentence-transformers", threshold=self.thresholds.fp32_min_cosine
        )
        self._gate(FP32, parity)
        return Fp32(
            embed=embed,
            probe=probe,
            report=report.verification_fields(parity, {"sentence-transformers": parity}),
        )

    def expect_sts(self, fp32: Fp32, expected: float, tolerance: float) -> None:
        """Fail unless the fp32 graph's STS-B Spearman is within `tolerance` of `expected` (e.g. the model's
        published score): a check of the source weights and the export together."""
        spearman = self._sts_baseline(fp32, self._sts_data())
        gate = sts_gate(spearman, expected, tolerance)
        fp32.sts_expected = gate
        log.info("fp32 STS-B Spearman %.2f, expected %.2f +- %.2f", spearman, expected, tolerance)
        if not gate["expected_passed"]:
            raise VerificationError(
                f"fp32 STS-B Spearman {spearman:.2f} is not within {tolerance} of the expected "
                f"{expected:.2f} "
                f"(--expect-sts; {fp32.sts_pairs} pairs of {self.plan.sts_data}): wrong weights or a broken "
                "export; nothing published"
            )

    def optimize(self, directory: Path, graph, reference: np.ndarray, fp32: Fp32) -> None:
        """Replace the published fp32 graph by its fused version once that passes its own gate."""
        log.info("optimizing the fp32 graph with the ORT transformers optimizer")
        optimized, settings = variants.optimize_fp32(graph, self.plan.source)
        candidate = self.scratch / "optimized"
        candidate.mkdir()
        onnx_graph.save(optimized, candidate / MODEL_FILE)
        (candidate / TOKENIZER_FILE).write_bytes((directory / TOKENIZER_FILE).read_bytes())
        parity = verify.compare(
            reference,
            verify.probe(self.embedder(candidate)),
            against="sentence-transformers",
            threshold=self.thresholds.optimized_min_cosine,
        )
        self._gate("optimized fp32", parity)
        (candidate / MODEL_FILE).replace(directory / MODEL_FILE)
        before = fp32.report["parity"]["sentence-transformers"]
        fp32.report.update(report.verification_fields(parity, {"sentence-transformers": parity}))
        fp32.report["parity"]["sentence-transformers, before optimization"] = before
        fp32.report["optimize"] = settings

    def fp16(self, directory: Path, graph, published_tokenizer, fp32: Fp32, reference: np.ndarray) -> dict:
        log.info("converting to fp16 (GPU fusions, LayerNorm/Softmax and the head kept fp32)")
        converted, settings = variants.convert_fp16(graph, self.plan.source)
        self.write(directory, converted, published_tokenizer)
        probe = verify.probe(self.embedder(directory))
        parity = verify.compare(
            fp32.probe, probe, against="fp32-onnx", threshold=self.thresholds.fp16_min_cosine
        )
        self._gate(FP16, parity)
        versus_st = verify.compare(reference, probe, against="sentence-transformers", threshold=None)
        fields = report.verification_fields(parity, {"fp32-onnx": parity, "sentence-transformers": versus_st})
        return {**fields, "conversion": settings, "verified_on": "CPUExecutionProvider"}

    def int8(
        self, directory: Path, fp32_dir: Path, published_tokenizer, fp32: Fp32, reference: np.ndarray
    ) -> dict:
        """The first quantization setting whose STS-B Spearman stays within the allowed drop of fp32's."""
        data = self._sts_data()
        baseline = self._sts_baseline(fp32, data)
        max_drop = self.thresholds.int8_max_spearman_drop
        published_tokenizer.save(str(directory / TOKENIZER_FILE))
        attempts: list[dict] = []
        for settings in variants.int8_candidates(self.plan.config.int8_activations):
            log.info("quantizing to int8 (%s activations, per_channel=%s, ops=%s)", settings.activations,
                     settings.per_channel, "+".join(settings.op_types))
            try:
                variants.quantize_int8(fp32_dir / MODEL_FILE, directory / MODEL_FILE, settings)
            except UnknownGraphError as exc:
                raise InputError(
                    f"int8 with {settings.activations} activations: {exc}; "
                    "--int8-activations per-tensor publishes quantize_dynamic's own graph"
                ) from exc
            embed = self.embedder(directory)
            spearman = verify.sts_spearman(embed, data, desc="STS-B int8")
            drop = baseline - spearman
            attempts.append({**settings.as_dict(), "spearman": spearman, "drop": drop, "passed": drop <= max_drop})
            log.info(
                "int8 STS-B Spearman %.2f vs fp32 %.2f (drop %.2f, allowed %.2f)", spearman, baseline, drop, max_drop
            )
            if drop <= max_drop:
                return self._int8_report(settings, embed, fp32, reference, data, attempts)
        best = max(a["spearman"] for a in attempts)
        raise VerificationError(
            f"int8: no quantization setting keeps STS-B Spearman within {max_drop} of fp32 ({baseline:.2f}); "
            f"best {best:.2f}; nothing published"
        )

    def _int8_report(
        self,
        settings: variants.Int8Settings,
        embed: verify.Embed,
        fp32: Fp32,
        reference: np.ndarray,
        data: verify.StsData,
        attempts: list[dict],
    ) -> dict:
        """What export_report.json records for `settings`, the int8 setting that passed (the last of `attempts`)."""
        passed = attempts[-1]
        max_drop = self.thresholds.int8_max_spearman_drop
        probe = verify.probe(embed)
        versus_fp32 = verify.compare(fp32.probe, probe, against="fp32-onnx", threshold=None)
        versus_st = verify.compare(reference, probe, against="sentence-transformers", threshold=None)
        # The mixed-length batch against each text alone: how much a text's vector depends on its neighbours.
        versus_alone = verify.compare(probe[1], probe[:1], against="int8-one-text-per-run", threshold=None)
        gate = {
            "metric": "sts_spearman_drop",
            "reference": "fp32-onnx",
            "threshold": max_drop,
            "value": passed["drop"],
            "passed": True,
        }
        comparisons = {"fp32-onnx": versus_fp32, "sentence-transformers": versus_st,
                       "int8-one-text-per-run": versus_alone}
        sts = {
            "data": str(data.path),
            "pairs": len(data.scores),
            "spearman": passed["spearman"],
            "spearman_fp32_onnx": fp32.sts,
            "drop": passed["drop"],
            "max_drop": max_drop,
            "passed": True,
        }
        return {
            **report.verification_fields(versus_fp32, comparisons, gate),
            "sts": sts,
            "quantization": settings.as_dict(),
            "attempts": attempts,
        }

    def _sts_baseline(self, fp32: Fp32, data: verify.StsData) -> float:
        if fp32.sts is None:
            log.info("STS-B baseline: fp32 ONNX on %d pairs", len(data.scores))
            fp32.sts = verify.sts_spearman(fp32.embed, data, desc="STS-B fp32")
            fp32.sts_pairs = len(data.scores)
        return fp32.sts

    def _sts_data(self) -> verify.StsData:
        if self._sts is None:
            assert self.plan.sts_data is not None
            self._sts = verify.load_sts(self.plan.sts_data)
        return self._sts

    @staticmethod
    def _gate(what: str, parity: verify.Parity) -> None:
        log.info(
            "%s vs %s: min cosine %.7f (needs >= %s), max |diff| %.2e",
            what,
            parity.reference,
            parity.min_cosine,
            parity.threshold,
            parity.max_abs_diff,
        )
        if not parity.passed:
            raise VerificationError(
                f"{what} does not match {parity.reference}: min cosine {parity.min_cosine:.7f} "
                f"< {parity.threshold} over {parity.comparisons} probe embeddings; nothing published"
            )


def sts_gate(spearman: float, expected: float, tolerance: float) -> dict:
    """The --expect-sts gate as export_report.json records it under `sts`."""
    difference = spearman - expected
    return {
        "expected": expected,
        "expected_tolerance": tolerance,
        "expected_difference": difference,
        "expected_passed": abs(difference) <= tolerance + 1e-9,
    }

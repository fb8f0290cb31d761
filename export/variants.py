"""Graphs derived from the verified fp32 export: ORT-optimized fp32, fp16 for GPUs, dynamic int8 for CPUs
(per-token activation scales, `per_token.py`, so that batching does not change a text's vector).

The pooling/Dense/Normalize head is never touched: the encoder (graph inputs → token_embeddings) is split
off, transformed, and joined back in front of the original fp32 head.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import onnx

from . import onnx_graph
from .config import INT8_ACTIVATIONS, PER_TOKEN
from .logs import quiet
from .per_token import per_token_activations
from .source import SourceModel

FP16_KEEP_FP32_OPS = (
    "LayerNormalization",
    "SkipLayerNormalization",
    "SimplifiedLayerNormalization",
    "Softmax",
)


def _fuse_encoder(model: onnx.ModelProto, source: SourceModel, *, use_gpu: bool, opt_level: int):
    from onnxruntime.transformers.optimizer import optimize_model

    model_type = source.optimizer_model_type
    if model_type is None:
        raise ValueError(f"the ORT transformers optimizer does not handle model type {source.model_type!r}")
    split = onnx_graph.split_encoder(model, source.hidden_size)
    with quiet():
        fused = optimize_model(
            split.encoder,
            model_type=model_type,
            num_heads=source.num_heads,
            hidden_size=source.hidden_size,
            opt_level=opt_level,
            use_gpu=use_gpu,
        )
    fusions = {op: count for op, count in fused.get_fused_operator_statistics().items() if count}
    return split, fused, fusions


def optimize_fp32(model: onnx.ModelProto, source: SourceModel) -> tuple[onnx.ModelProto, dict]:
    """ORT transformers optimizer fusions (Attention, SkipLayerNormalization, BiasGelu...) for the CPU EP."""
    split, fused, fusions = _fuse_encoder(model, source, use_gpu=False, opt_level=1)
    joined = onnx_graph.join_encoder(model, fused.model, split)
    return joined, {
        "tool": "onnxruntime.transformers.optimizer",
        "model_type": source.optimizer_model_type,
        "opt_level": 1,
        "use_gpu": False,
        "fused_operators": fusions,
    }


def convert_fp16(model: onnx.ModelProto, source: SourceModel) -> tuple[onnx.ModelProto, dict]:
    """GPU-fused encoder in fp16 (LayerNorm and Softmax kept fp32), fp32 inputs/outputs, fp32 head."""
    split, fused, fusions = _fuse_encoder(model, source, use_gpu=True, opt_level=0)
    with quiet():
        fused.convert_float_to_float16(keep_io_types=True, op_block_list=list(FP16_KEEP_FP32_OPS))
    joined = onnx_graph.join_encoder(model, fused.model, split)
    return joined, {
        "tool": "onnxruntime.transformers.optimizer + float16",
        "model_type": source.optimizer_model_type,
        "use_gpu": True,
        "keep_io_types": True,
        "op_block_list": list(FP16_KEEP_FP32_OPS),
        "head": "fp32 (not converted)",
        "fused_operators": fusions,
    }


@dataclass(frozen=True)
class Int8Settings:
    per_channel: bool
    op_types: tuple[str, ...]
    reduce_range: bool = False
    weight_type: str = "QInt8"
    activations: str = PER_TOKEN

    def as_dict(self) -> dict:
        return {
            "method": "onnxruntime.quantization.quantize_dynamic"
            + (" + per-token activation scales" if self.activations == PER_TOKEN else ""),
            **asdict(self),
            "op_types": list(self.op_types),
        }


# Weight settings tried in order; the first one that meets the STS gate is published (smallest and most
# accurate first).
_WEIGHTS = (
    (True, ("MatMul", "Gather")),
    (False, ("MatMul", "Gather")),
    (True, ("MatMul",)),
    (False, ("MatMul",)),
)


def int8_candidates(activations: str) -> tuple[Int8Settings, ...]:
    """The settings the export tries, in order, for `activations` (PER_TOKEN or PER_TENSOR)."""
    if activations not in INT8_ACTIVATIONS:
        raise ValueError(f"int8 activations must be one of {', '.join(INT8_ACTIVATIONS)}: {activations!r}")
    return tuple(
        Int8Settings(per_channel=per_channel, op_types=op_types, activations=activations)
        for per_channel, op_types in _WEIGHTS
    )


def quantize_int8(model_path: Path, output: Path, settings: Int8Settings) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet():
        quantize_dynamic(
            model_path,
            output,
            op_types_to_quantize=list(settings.op_types),
            per_channel=settings.per_channel,
            reduce_range=settings.reduce_range,
            weight_type=QuantType[settings.weight_type],
        )
    if settings.activations == PER_TOKEN:
        model = onnx.load(str(output))
        per_token_activations(model)
        onnx.save(model, str(output))

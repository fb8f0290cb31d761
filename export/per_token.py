"""Per-token activation scales for dynamic int8, so that a text's vector does not depend on its batch neighbours.

ORT's `quantize_dynamic` quantizes each MatMul's input with `DynamicQuantizeLinear`: one scale and zero point for
the whole tensor, over every token of every text in the batch, padding included. A text's int8 vector then
depends on what it is batched with: one long or unusual neighbour widens the range and coarsens every other text's
steps. `per_token_activations` gives each token (each row of the hidden axis) a scale of its own, symmetric:

    scale = max(|x| over the last axis, 1e-30) / 127          shape [..., 1]
    q     = QuantizeLinear(x, scale, 128, block = the whole hidden axis)      uint8, 128 is zero

and each `MatMulInteger -> Cast -> Mul(activation scale x weight scales)` of `quantize_dynamic` becomes ORT's
`MatMulIntegerToFloat` (uint8 x int8 kernels, weight scales applied, activation scale 1) followed by a `Mul` by
the per-token scale. The zero point (128) is the same for every token, so the integer kernels stay the fast
uint8 x int8 ones; int8 activations have no fast kernel on x86, and ORT's own MatMulIntegerToFloat fusion would
take a per-token scale for a per-tensor one. Blocked QuantizeLinear needs opset 21; MatMulIntegerToFloat is an
ONNX Runtime (com.microsoft) operator, which the server's runtime is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

QUANTIZE = "DynamicQuantizeLinear"
OPSET = 21  # blocked QuantizeLinear (a block = one token's hidden vector)
IR_VERSION = 10  # the IR version of opset 21
ORT_DOMAIN = "com.microsoft"
ZERO_POINT = 128  # int8 steps shifted into uint8, the activation type of ORT's fast integer kernels
STEPS = 127.0  # symmetric: -127..127 around the zero point, so that 0.0 is exact
TINY = 1e-30  # the least range: an all-zero row gets a normal (not subnormal) scale and quantizes to zeros
_LEVELS, _TINY, _AXES, _ZERO, _ONE = ("per_token_levels", "per_token_tiny", "per_token_axes",
                                      "per_token_zero_point", "per_token_one")


@dataclass(frozen=True)
class _Product:
    """One quantized MatMul as `quantize_dynamic` builds it: MatMulInteger -> Cast -> Mul(result, combined),
    combined = Mul(activation scale, weight scales)."""

    integer: onnx.NodeProto  # MatMulInteger(quantized input, weights, input zero point, weight zero points)
    cast: onnx.NodeProto
    rescale: onnx.NodeProto  # the Mul producing the MatMul's float result
    combined: onnx.NodeProto  # Mul(activation scale, weight scales)
    activation_scale: str
    weight_scales: str


def per_token_activations(model: onnx.ModelProto) -> int:
    """Rewrite `model` in place: every `DynamicQuantizeLinear` becomes per-token quantization and every MatMul
    it feeds a MatMulIntegerToFloat times the per-token scale. Returns how many quantizers were rewritten. Raises
    ValueError on a graph whose quantizers feed anything other than what `quantize_dynamic` builds around them."""
    graph = model.graph
    quantizers = [node for node in graph.node if node.op_type == QUANTIZE]
    if not quantizers:
        return 0
    products = _products(graph, quantizers)
    hidden = _hidden_sizes(graph, quantizers, products)
    replaced = {id(node) for product in products for node in (product.integer, product.cast, product.combined)}
    by_rescale = {id(product.rescale): product for product in products}
    rewritten: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.op_type == QUANTIZE:
            rewritten += _quantize_per_token(node, hidden[node.output[0]])
        elif id(node) in by_rescale:
            rewritten += _integer_product(by_rescale[id(node)])
        elif id(node) not in replaced:
            rewritten.append(node)
    del graph.node[:]
    graph.node.extend(rewritten)
    graph.initializer.extend(_constants())
    _require_opsets(model)
    # The shapes quantize_dynamic recorded: some no longer hold (the scales are [..., 1] now), and with them
    # kept ORT ran this graph ~8% slower; it infers every shape itself.
    del graph.value_info[:]
    return len(quantizers)


def _products(graph: onnx.GraphProto, quantizers: list[onnx.NodeProto]) -> list[_Product]:
    """Every quantized MatMul fed by `quantizers`, checked to be exactly quantize_dynamic's pattern."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {output.name for output in graph.output}

    def only(name: str, op_type: str) -> onnx.NodeProto:
        found = consumers.get(name, [])
        if len(found) != 1 or found[0].op_type != op_type or name in outputs:
            raise ValueError(f"{name} feeds {[n.op_type for n in found]}, not one {op_type}: not quantize_dynamic's graph")
        return found[0]

    products = []
    for quantizer in quantizers:
        quantized, scale, zero_point = quantizer.output
        integers = consumers.get(quantized, [])
        if not integers or any(n.op_type != "MatMulInteger" or n.input[:1] != [quantized] for n in integers):
            raise ValueError(f"{quantized} does not feed MatMulInteger as its input A only")
        if {id(n) for n in consumers.get(zero_point, [])} != {id(n) for n in integers}:
            raise ValueError(f"activation zero point {zero_point} feeds other nodes than its MatMulIntegers")
        combined_by_id = {id(n): n for n in consumers.get(scale, [])}
        for integer in integers:
            cast = only(integer.output[0], "Cast")
            rescale = only(cast.output[0], "Mul")
            (combined_name,) = [name for name in rescale.input if name != cast.output[0]] or [""]
            combined = combined_by_id.pop(id(_producer(graph, combined_name)), None)
            if combined is None or combined.op_type != "Mul":
                raise ValueError(f"{rescale.name} does not multiply by activation scale x weight scales")
            only(combined.output[0], "Mul")
            (weights,) = [name for name in combined.input if name != scale]
            products.append(_Product(integer, cast, rescale, combined, scale, weights))
        if combined_by_id or scale in outputs:
            raise ValueError(f"activation scale {scale} feeds other nodes than its MatMuls' rescaling")
    return products


def _producer(graph: onnx.GraphProto, name: str) -> onnx.NodeProto | None:
    return next((node for node in graph.node if name in node.output), None)


def _hidden_sizes(graph: onnx.GraphProto, quantizers: list[onnx.NodeProto], products: list[_Product]) -> dict:
    """Each quantized input's hidden size (its last axis), from the constant weights of the MatMuls it feeds."""
    weights = {init.name: init for init in graph.initializer}
    hidden: dict[str, int] = {}
    for product in products:
        weight = weights.get(product.integer.input[1])
        if weight is None or len(weight.dims) != 2:
            raise ValueError(f"{product.integer.name}: weights are not a constant matrix")
        quantized = product.integer.input[0]
        if hidden.setdefault(quantized, int(weight.dims[0])) != weight.dims[0]:
            raise ValueError(f"{quantized} feeds MatMuls of different input sizes")
    return {node.output[0]: hidden[node.output[0]] for node in quantizers}


def _quantize_per_token(node: onnx.NodeProto, hidden: int) -> list[onnx.NodeProto]:
    """`node`'s quantized output and scale, per token; its zero point output is no longer produced."""
    source, (quantized, scale, _zero_point) = node.input[0], node.output
    prefix = f"{node.name or quantized}/per_token"

    def step(op: str, inputs: list[str], suffix: str, **attributes) -> onnx.NodeProto:
        return helper.make_node(op, inputs, [f"{prefix}/{suffix}"], name=f"{prefix}/{suffix}", **attributes)

    return [
        step("Abs", [source], "abs"),
        step("ReduceMax", [f"{prefix}/abs", _AXES], "max", keepdims=1),
        step("Max", [f"{prefix}/max", _TINY], "max_or_tiny"),
        helper.make_node("Div", [f"{prefix}/max_or_tiny", _LEVELS], [scale], name=f"{prefix}/scale"),
        step("Shape", [scale], "scale_shape"),
        step("Expand", [_ZERO, f"{prefix}/scale_shape"], "zero_points"),
        helper.make_node("QuantizeLinear", [source, scale, f"{prefix}/zero_points"], [quantized],
                         name=f"{prefix}/quantize", axis=-1, block_size=hidden),
    ]


def _integer_product(product: _Product) -> list[onnx.NodeProto]:
    """MatMulIntegerToFloat with the weight scales, then the per-token scale: the MatMul's float result."""
    integer = product.integer
    inputs, weight_zero_points = list(integer.input), (list(integer.input[3:4]) or [""])[0]
    unscaled = f"{product.rescale.output[0]}/per_token_unscaled"
    named = product.rescale.name or product.rescale.output[0]
    return [
        helper.make_node("MatMulIntegerToFloat",
                         [inputs[0], inputs[1], _ONE, product.weight_scales, _ZERO, weight_zero_points],
                         [unscaled], name=f"{named}/integer", domain=ORT_DOMAIN),
        helper.make_node("Mul", [unscaled, product.activation_scale], list(product.rescale.output),
                         name=f"{named}/per_token_scale"),
    ]


def _require_opsets(model: onnx.ModelProto) -> None:
    """Default domain at least opset 21 (its operators' meanings are unchanged from 18 for what the export
    writes: the versions in between widened types), and ORT's domain declared."""
    domains = {entry.domain: entry for entry in model.opset_import}
    default = domains.get("") or domains.get("ai.onnx")
    if default is None:
        model.opset_import.append(helper.make_opsetid("", OPSET))
    elif default.version < OPSET:
        default.version = OPSET
    if ORT_DOMAIN not in domains:
        model.opset_import.append(helper.make_opsetid(ORT_DOMAIN, 1))
    model.ir_version = max(model.ir_version, IR_VERSION)


def _constants() -> list[onnx.TensorProto]:
    return [
        numpy_helper.from_array(np.array(STEPS, np.float32), _LEVELS),
        numpy_helper.from_array(np.array(TINY, np.float32), _TINY),
        numpy_helper.from_array(np.array([-1], np.int64), _AXES),
        numpy_helper.from_array(np.array(ZERO_POINT, np.uint8), _ZERO),
        numpy_helper.from_array(np.array(1.0, np.float32), _ONE),
    ]

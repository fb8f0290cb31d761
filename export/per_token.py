"""Per-token activation scales for dynamic int8: a text's vector does not depend on its batch neighbours.

ORT's `quantize_dynamic` quantizes each MatMul's input with `DynamicQuantizeLinear`: one scale and zero point
for the whole tensor, over every token of every text in the batch, padding included. A text's int8 vector then
depends on what it is batched with: one long or unusual neighbour widens the range and coarsens every other
text's steps. `per_token_activations` gives each token's vector along the hidden axis a scale of its own,
symmetric:

    scale = max(|x| over the last axis, 1e-30) / 127          shape [..., 1]
    q     = QuantizeLinear(x, scale, 128, block = the whole hidden axis)      uint8, 128 is zero

and each `MatMulInteger -> Cast -> Mul(activation scale x weight scales)` of `quantize_dynamic` becomes ORT's
`MatMulIntegerToFloat` (uint8 x int8 kernels, weight scales applied, activation scale 1) followed by a `Mul`
by the per-token scale. The zero point (128) is the same for every token, so the integer kernels stay the fast
uint8 x int8 ones; int8 activations have no fast kernel on x86, and ORT's own MatMulIntegerToFloat fusion
would take a per-token scale for a per-tensor one. Blocked QuantizeLinear needs opset 21;
MatMulIntegerToFloat is an ONNX Runtime (com.microsoft) operator, which the server's runtime is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DYNAMIC_QUANTIZE = "DynamicQuantizeLinear"
OPSET = 21  # blocked QuantizeLinear (a block = one token's hidden vector)
LOWEST_OPSET = 18  # from 18 to 21 the export's operators kept their meaning (Reduce* take axes inputs)
IR_VERSION = 10  # the IR version of opset 21
ORT_DOMAIN = "com.microsoft"
ZERO_POINT = 128  # int8 steps shifted into uint8, the activation type of ORT's fast integer kernels
STEPS = 127.0  # symmetric: -127..127 around the zero point, so that 0.0 is exact
TINY = 1e-30  # the least range: an all-zero row gets a normal (not subnormal) scale and quantizes to zeros
_LEVELS, _TINY, _AXES, _ZERO, _ONE = (
    "per_token_levels",
    "per_token_tiny",
    "per_token_axes",
    "per_token_zero_point",
    "per_token_one",
)


class UnknownGraphError(ValueError):
    """The graph around a quantizer is not the one `quantize_dynamic` builds: this pass leaves it alone."""


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


class _Graph:
    """Who produces and who consumes each tensor of a graph, and what it holds as constants and outputs."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.producer = {name: node for node in graph.node for name in node.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.outputs = {output.name for output in graph.output}
        self.initializers = {init.name: init for init in graph.initializer}

    def only_consumer(self, name: str, op_type: str) -> onnx.NodeProto:
        found = self.consumers.get(name, [])
        if len(found) != 1 or found[0].op_type != op_type or name in self.outputs:
            raise UnknownGraphError(
                f"{name} feeds {[n.op_type for n in found]}, not one {op_type}: not quantize_dynamic's graph"
            )
        return found[0]


def per_token_activations(model: onnx.ModelProto) -> int:
    """Rewrite `model` in place: every `DynamicQuantizeLinear` becomes per-token quantization and every
    MatMul it feeds a MatMulIntegerToFloat times the per-token scale. Returns how many quantizers were
    rewritten. Raises UnknownGraphError, leaving `model` unchanged, on a graph that is not
    `quantize_dynamic`'s pattern around each quantizer, on a default opset below 18, or when this pass's
    constant names are taken."""
    graph = model.graph
    quantizers = [node for node in graph.node if node.op_type == DYNAMIC_QUANTIZE]
    if not quantizers:
        return 0
    _check_opsets_and_names(model)
    index = _Graph(graph)
    products = [product for quantizer in quantizers for product in _products_of(index, quantizer)]
    hidden = _hidden_sizes(index, products)
    replaced = {node.output[0] for p in products for node in (p.integer, p.cast, p.combined)}
    by_rescale = {product.rescale.output[0]: product for product in products}
    rewritten: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.op_type == DYNAMIC_QUANTIZE:
            rewritten += _quantize_per_token(node, hidden[node.output[0]])
        elif node.output and node.output[0] in by_rescale:
            rewritten += _integer_product(by_rescale[node.output[0]])
        elif not (node.output and node.output[0] in replaced):
            rewritten.append(node)
    del graph.node[:]
    graph.node.extend(rewritten)
    graph.initializer.extend(_constants())
    _require_opsets(model)
    # The shapes quantize_dynamic recorded: some no longer hold (the scales are [..., 1] now), and with them
    # kept ORT ran this graph ~8% slower; it infers every shape itself.
    del graph.value_info[:]
    return len(quantizers)


def _check_opsets_and_names(model: onnx.ModelProto) -> None:
    default = next((e.version for e in model.opset_import if e.domain in ("", "ai.onnx")), None)
    if default is not None and default < LOWEST_OPSET:
        raise UnknownGraphError(
            f"opset {default} is below {LOWEST_OPSET}: export the fp32 graph at a later opset"
        )
    names = {init.name for init in model.graph.initializer}
    names |= {name for node in model.graph.node for name in node.output}
    taken = names & {_LEVELS, _TINY, _AXES, _ZERO, _ONE}
    if taken:
        raise UnknownGraphError(f"the graph already holds {sorted(taken)}: quantized per token before?")


def _products_of(index: _Graph, quantizer: onnx.NodeProto) -> list[_Product]:
    """The MatMuls `quantizer` feeds, checked to be exactly quantize_dynamic's pattern around it."""
    if len(quantizer.output) != 3 or not all(quantizer.output):
        raise UnknownGraphError(f"{quantizer.name}: a DynamicQuantizeLinear without its three outputs")
    quantized, scale, zero_point = quantizer.output
    if {quantized, scale, zero_point} & index.outputs:
        raise UnknownGraphError(f"{quantizer.name}: an output of the quantizer is a graph output")
    integers = index.consumers.get(quantized, [])
    if not integers or any(
        n.op_type != "MatMulInteger"
        or len(n.input) < 3
        or n.input[0] != quantized
        or n.input[2] != zero_point
        for n in integers
    ):
        raise UnknownGraphError(
            f"{quantized} does not feed MatMulIntegers as their input A, with its zero point"
        )
    if {n.output[0] for n in index.consumers.get(zero_point, [])} != {n.output[0] for n in integers}:
        raise UnknownGraphError(
            f"activation zero point {zero_point} feeds other nodes than its MatMulIntegers"
        )
    products = [_product(index, integer, scale) for integer in integers]
    if len(index.consumers.get(scale, [])) != len(products):
        raise UnknownGraphError(f"activation scale {scale} feeds other nodes than its MatMuls' rescaling")
    return products


def _product(index: _Graph, integer: onnx.NodeProto, scale: str) -> _Product:
    """One MatMulInteger's Cast to float and its rescaling Mul by Mul(`scale`, constant weight scales)."""
    cast = index.only_consumer(integer.output[0], "Cast")
    to = next((helper.get_attribute_value(a) for a in cast.attribute if a.name == "to"), None)
    if to != TensorProto.FLOAT:
        raise UnknownGraphError(f"{cast.name} does not cast to float")
    rescale = index.only_consumer(cast.output[0], "Mul")
    others = [name for name in rescale.input if name != cast.output[0]]
    combined = index.producer.get(others[0]) if len(others) == 1 else None
    if combined is None or combined.op_type != "Mul" or scale not in combined.input:
        raise UnknownGraphError(f"{rescale.name} does not multiply by activation scale x weight scales")
    index.only_consumer(combined.output[0], "Mul")
    weights = [name for name in combined.input if name != scale]
    if len(weights) != 1 or weights[0] not in index.initializers:
        raise UnknownGraphError(f"{combined.name}: the weight scales are not a constant")
    return _Product(integer, cast, rescale, combined, scale, weights[0])


def _hidden_sizes(index: _Graph, products: list[_Product]) -> dict[str, int]:
    """Each quantized input's hidden size (its last axis), from the constant weights of the MatMuls it feeds
    (an input feeding MatMuls of different sizes is refused)."""
    hidden: dict[str, int] = {}
    for product in products:
        weight = index.initializers.get(product.integer.input[1])
        if weight is None or len(weight.dims) != 2:
            raise UnknownGraphError(f"{product.integer.name}: weights are not a constant matrix")
        quantized = product.integer.input[0]
        if hidden.setdefault(quantized, int(weight.dims[0])) != weight.dims[0]:
            raise UnknownGraphError(f"{quantized} feeds MatMuls of different input sizes")
    return hidden


def _quantize_per_token(node: onnx.NodeProto, hidden: int) -> list[onnx.NodeProto]:
    """`node`'s quantized output and scale, per token; its zero point output is no longer produced."""
    source, (quantized, scale, _) = node.input[0], node.output
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
        helper.make_node(
            "QuantizeLinear",
            [source, scale, f"{prefix}/zero_points"],
            [quantized],
            name=f"{prefix}/quantize",
            axis=-1,
            block_size=hidden,
        ),
    ]


def _integer_product(product: _Product) -> list[onnx.NodeProto]:
    """MatMulIntegerToFloat with the weight scales, then the per-token scale: the MatMul's float result."""
    integer = product.integer
    weight_zero_points = integer.input[3] if len(integer.input) > 3 else ""
    unscaled = f"{product.rescale.output[0]}/per_token_unscaled"
    named = product.rescale.name or product.rescale.output[0]
    return [
        helper.make_node(
            "MatMulIntegerToFloat",
            [integer.input[0], integer.input[1], _ONE, product.weight_scales, _ZERO, weight_zero_points],
            [unscaled],
            name=f"{named}/integer",
            domain=ORT_DOMAIN,
        ),
        helper.make_node(
            "Mul",
            [unscaled, product.activation_scale],
            list(product.rescale.output),
            name=f"{named}/per_token_scale",
        ),
    ]


def _require_opsets(model: onnx.ModelProto) -> None:
    """Default domain at least opset 21 (from 18, checked before, the operators the export writes kept their
    meaning), and ORT's domain declared."""
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

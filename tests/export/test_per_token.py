"""Per-token activation scales (`export/per_token.py`) on small graphs that `quantize_dynamic` itself
quantized: MatMuls over [batch, tokens, hidden], so each row of a batch is one token of one text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from export import variants
from export.config import PER_TENSOR, PER_TOKEN
from export.per_token import DYNAMIC_QUANTIZE, per_token_activations

HIDDEN, INNER = 32, 64


def _save_graph(path: Path, seed: int, nodes: list, weights: dict[str, tuple[int, int]], width: int) -> Path:
    """x [b, t, 32] through `nodes` to y [b, t, `width`], with random weights of these shapes, opset 18."""
    rng = np.random.default_rng(seed)
    initializers = [
        numpy_helper.from_array(rng.normal(0, 0.2, shape).astype(np.float32), name)
        for name, shape in weights.items()
    ]
    graph = helper.make_graph(
        nodes,
        path.stem,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "t", HIDDEN])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "t", width])],
        initializers,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), str(path))
    return path


def _fp32_graph(path: Path, seed: int) -> Path:
    """x -> MatMul 32x64 -> Relu -> MatMul 64x32 -> y: the shape of an encoder's FFN."""
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["y"]),
    ]
    return _save_graph(path, seed, nodes, {"w1": (HIDDEN, INNER), "w2": (INNER, HIDDEN)}, HIDDEN)


def _shared_input_graph(path: Path, seed: int) -> Path:
    """x -> two MatMuls 32x64, added: one quantizer feeding two MatMuls, as Q, K and V share one."""
    nodes = [
        helper.make_node("MatMul", ["x", "wide"], ["a"]),
        helper.make_node("MatMul", ["x", "narrow"], ["b"]),
        helper.make_node("Add", ["a", "b"], ["y"]),
    ]
    return _save_graph(path, seed, nodes, {"wide": (HIDDEN, INNER), "narrow": (HIDDEN, INNER)}, INNER)


def _per_tensor_model(tmp_path: Path, fp32: Path) -> onnx.ModelProto:
    settings = variants.Int8Settings(per_channel=False, op_types=("MatMul",), activations=PER_TENSOR)
    variants.quantize_int8(fp32, tmp_path / "int8.onnx", settings)
    return onnx.load(str(tmp_path / "int8.onnx"))


def _quantized(tmp_path: Path, activations: str, seed: int) -> ort.InferenceSession:
    fp32 = _fp32_graph(tmp_path / "fp32.onnx", seed)
    settings = variants.Int8Settings(per_channel=True, op_types=("MatMul",), activations=activations)
    variants.quantize_int8(fp32, tmp_path / f"{activations}.onnx", settings)
    return ort.InferenceSession(str(tmp_path / f"{activations}.onnx"), providers=["CPUExecutionProvider"])


def _run(session: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    return session.run(None, {"x": x})[0]


@pytest.fixture
def seed() -> int:
    seed = int(np.random.SeedSequence().entropy % 2**32)
    print(f"seed {seed}")
    return seed


def test_a_row_quantizes_the_same_whatever_its_neighbours(tmp_path, seed):
    rng = np.random.default_rng(seed)
    text = rng.normal(0, 1, (1, 5, HIDDEN)).astype(np.float32)
    loud = rng.normal(0, 1, (1, 5, HIDDEN)).astype(np.float32) * 40  # a neighbour with a 40x wider range
    batch = np.concatenate([text, loud])
    per_token = _quantized(tmp_path, PER_TOKEN, seed)
    per_tensor = _quantized(tmp_path, PER_TENSOR, seed)
    alone, batched = _run(per_token, text)[0], _run(per_token, batch)[0]
    np.testing.assert_array_equal(alone, batched)  # integer products: exactly the same floats
    drift = np.abs(_run(per_tensor, text)[0] - _run(per_tensor, batch)[0]).max()
    assert drift > 1e-3, "the per-tensor graph does move with its neighbour (what the pass is for)"


def test_per_token_int8_stays_close_to_fp32(tmp_path, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (3, 7, HIDDEN)).astype(np.float32)
    x[1] *= 40
    x[2, :, :3] += 25  # outlier channels, as transformers have them
    reference = _fp32_graph(tmp_path / "reference.onnx", seed)
    fp32 = ort.InferenceSession(str(reference), providers=["CPUExecutionProvider"])
    expected, produced = _run(fp32, x), _run(_quantized(tmp_path, PER_TOKEN, seed), x)
    rows_e, rows_p = expected.reshape(-1, HIDDEN), produced.reshape(-1, HIDDEN)
    cosine = (rows_e * rows_p).sum(1) / np.linalg.norm(rows_e, axis=1) / np.linalg.norm(rows_p, axis=1)
    assert cosine.min() > 0.99, cosine.min()


def test_an_all_zero_row_gets_a_positive_scale_and_quantizes_to_the_zero_point(tmp_path, seed):
    model = _per_tensor_model(tmp_path, _fp32_graph(tmp_path / "fp32.onnx", seed))
    quantizer = next(n for n in model.graph.node if n.op_type == DYNAMIC_QUANTIZE)
    quantized, scale = quantizer.output[:2]
    per_token_activations(model)
    model.graph.output.extend(
        [
            helper.make_tensor_value_info(quantized, TensorProto.UINT8, None),
            helper.make_tensor_value_info(scale, TensorProto.FLOAT, None),
        ]
    )
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.zeros((2, 3, HIDDEN), np.float32)
    x[1] = np.linspace(-2, 2, HIDDEN)
    y, q, s = session.run(None, {"x": x})
    assert np.isfinite(y).all() and (s > 0).all()
    np.testing.assert_array_equal(q[0], 128)
    assert q[1].min() == 1 and q[1].max() == 255, "the row's extremes are -127 and +127 steps"


def test_every_quantizer_and_integer_matmul_is_replaced(tmp_path, seed):
    fp32 = _fp32_graph(tmp_path / "fp32.onnx", seed)
    settings = variants.Int8Settings(per_channel=False, op_types=("MatMul",), activations=PER_TENSOR)
    variants.quantize_int8(fp32, tmp_path / "int8.onnx", settings)
    model = onnx.load(str(tmp_path / "int8.onnx"))
    assert per_token_activations(model) == 2
    onnx.checker.check_model(model)
    kinds = [n.op_type for n in model.graph.node]
    assert DYNAMIC_QUANTIZE not in kinds and "MatMulInteger" not in kinds
    assert kinds.count("MatMulIntegerToFloat") == 2 and kinds.count("QuantizeLinear") == 2
    assert per_token_activations(model) == 0, "a second pass finds nothing left to rewrite"


def test_ort_graph_optimizations_do_not_change_the_result(tmp_path, seed):
    """ORT's own fusions (MatMulIntegerToFloat and others) must leave the per-token graph's numbers alone."""
    _quantized(tmp_path, PER_TOKEN, seed)
    x = np.random.default_rng(seed).normal(0, 1, (2, 4, HIDDEN)).astype(np.float32)
    x[1] *= 30
    results = []
    for level in (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        session = ort.InferenceSession(
            str(tmp_path / f"{PER_TOKEN}.onnx"), options, providers=["CPUExecutionProvider"]
        )
        results.append(_run(session, x))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5, atol=1e-5)


def test_one_quantizer_feeding_two_matmuls_matches_fp32_row_by_row(tmp_path, seed):
    fp32 = _shared_input_graph(tmp_path / "fp32.onnx", seed)
    model = _per_tensor_model(tmp_path, fp32)
    assert per_token_activations(model) == 1
    assert [n.op_type for n in model.graph.node].count("MatMulIntegerToFloat") == 2
    x = np.random.default_rng(seed).normal(0, 1, (2, 5, HIDDEN)).astype(np.float32)
    x[1] *= 40
    expected = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    produced, alone = session.run(None, {"x": x})[0], session.run(None, {"x": x[:1]})[0]
    np.testing.assert_array_equal(produced[:1], alone)
    rows_e, rows_p = expected.reshape(-1, INNER), produced.reshape(-1, INNER)
    cosine = (rows_e * rows_p).sum(1) / np.linalg.norm(rows_e, axis=1) / np.linalg.norm(rows_p, axis=1)
    assert cosine.min() > 0.99, cosine.min()


def _stray_consumer_of(output: int):
    def spoil(model: onnx.ModelProto) -> None:
        quantizer = next(n for n in model.graph.node if n.op_type == DYNAMIC_QUANTIZE)
        model.graph.node.append(helper.make_node("Identity", [quantizer.output[output]], [f"stray{output}"]))

    return spoil


def _quantizer_output_is_a_graph_output(model: onnx.ModelProto) -> None:
    quantizer = next(n for n in model.graph.node if n.op_type == DYNAMIC_QUANTIZE)
    model.graph.output.append(helper.make_tensor_value_info(quantizer.output[0], TensorProto.UINT8, None))


def _scale_squared(model: onnx.ModelProto) -> None:
    quantizer = next(n for n in model.graph.node if n.op_type == DYNAMIC_QUANTIZE)
    combined = next(n for n in model.graph.node if n.op_type == "Mul" and quantizer.output[1] in n.input)
    combined.input[:] = [quantizer.output[1], quantizer.output[1]]


def _opset_17(model: onnx.ModelProto) -> None:
    next(e for e in model.opset_import if e.domain in ("", "ai.onnx")).version = 17


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (_stray_consumer_of(2), "zero point"),
        (_stray_consumer_of(1), "activation scale"),
        (_stray_consumer_of(0), "MatMulIntegers"),
        (_quantizer_output_is_a_graph_output, "graph output"),
        (_scale_squared, "weight scales are not a constant"),
        (_opset_17, "opset 17"),
    ],
)
def test_a_graph_it_does_not_know_is_refused_and_left_unchanged(tmp_path, seed, spoil, message):
    model = _per_tensor_model(tmp_path, _fp32_graph(tmp_path / "fp32.onnx", seed))
    spoil(model)
    before = model.SerializeToString()
    with pytest.raises(ValueError, match=message):
        per_token_activations(model)
    assert model.SerializeToString() == before


def test_a_second_rewrite_of_a_rewritten_graph_finds_nothing_and_names_do_not_collide(tmp_path, seed):
    model = _per_tensor_model(tmp_path, _fp32_graph(tmp_path / "fp32.onnx", seed))
    per_token_activations(model)
    assert per_token_activations(model) == 0
    model.graph.node.append(helper.make_node("DynamicQuantizeLinear", ["y"], ["yq", "ys", "yz"]))
    with pytest.raises(ValueError, match="already holds"):
        per_token_activations(model)


def test_the_export_tries_the_asked_activations_only():
    for activations in (PER_TOKEN, PER_TENSOR):
        candidates = variants.int8_candidates(activations)
        assert len(candidates) == 4 and {c.activations for c in candidates} == {activations}
    assert "per-token" in variants.int8_candidates(PER_TOKEN)[0].as_dict()["method"]
    with pytest.raises(ValueError, match="per-token"):
        variants.int8_candidates("per-row")


def test_the_cli_flag_reaches_the_config():
    from export.__main__ import config_from_args, parser

    assert config_from_args(parser().parse_args([])).int8_activations == PER_TOKEN
    chosen = config_from_args(parser().parse_args(["--int8-activations", "per-tensor"]))
    assert chosen.int8_activations == PER_TENSOR
    with pytest.raises(SystemExit):
        parser().parse_args(["--int8-activations", "per-row"])


def test_an_unknown_activation_kind_is_refused_before_any_work():
    from export.config import ExportConfig
    from export.errors import InputError
    from export.pipeline import plan

    with pytest.raises(InputError, match="--int8-activations"):
        plan(ExportConfig(int8_activations="per-row"))


def test_a_graph_the_pass_refuses_stops_the_export(tiny_bert, tmp_path, capsys, monkeypatch):
    from export.__main__ import main
    from export.per_token import UnknownGraphError

    from .helpers import loadable

    def refuse(model):
        raise UnknownGraphError("not quantize_dynamic's graph")

    monkeypatch.setattr(variants, "per_token_activations", refuse)
    repository = tmp_path / "models"
    assert (
        main(["--model", str(tiny_bert), "--repository", str(repository), "--precision", "fp32", "int8"]) == 2
    )
    error = capsys.readouterr().err
    assert "int8 with per-token activations: not quantize_dynamic's graph" in error
    assert "--int8-activations per-tensor" in error
    assert loadable(repository) == {}, "nothing published, not even the fp32 model"

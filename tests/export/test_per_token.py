"""Per-token activation scales (`export/per_token.py`) on a small graph that `quantize_dynamic` itself quantized:
two MatMuls over [batch, tokens, hidden], so each row of a batch is one token of one text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from export import variants
from export.per_token import QUANTIZE, per_token_activations

HIDDEN, INNER = 32, 64


def _fp32_graph(path: Path, seed: int) -> Path:
    """x [b, t, 32] -> MatMul 32x64 -> Relu -> MatMul 64x32 -> y: the shape of an encoder's FFN."""
    rng = np.random.default_rng(seed)
    first = numpy_helper.from_array(rng.normal(0, 0.2, (HIDDEN, INNER)).astype(np.float32), "w1")
    second = numpy_helper.from_array(rng.normal(0, 0.2, (INNER, HIDDEN)).astype(np.float32), "w2")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "w2"], ["y"])],
        "ffn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "t", HIDDEN])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "t", HIDDEN])],
        [first, second],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    onnx.save(model, str(path))
    return path


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
    per_token = _quantized(tmp_path, variants.PER_TOKEN, seed)
    per_tensor = _quantized(tmp_path, variants.PER_TENSOR, seed)
    alone, batched = _run(per_token, text)[0], _run(per_token, batch)[0]
    np.testing.assert_array_equal(alone, batched)  # integer products: exactly the same floats
    drift = np.abs(_run(per_tensor, text)[0] - _run(per_tensor, batch)[0]).max()
    assert drift > 1e-3, "the per-tensor graph does move with its neighbour (what the pass is for)"


def test_per_token_int8_stays_close_to_fp32(tmp_path, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (3, 7, HIDDEN)).astype(np.float32)
    x[1] *= 40
    x[2, :, :3] += 25  # outlier channels, as transformers have them
    fp32 = ort.InferenceSession(str(_fp32_graph(tmp_path / "reference.onnx", seed)), providers=["CPUExecutionProvider"])
    expected, produced = _run(fp32, x), _run(_quantized(tmp_path, variants.PER_TOKEN, seed), x)
    rows_e, rows_p = expected.reshape(-1, HIDDEN), produced.reshape(-1, HIDDEN)
    cosine = (rows_e * rows_p).sum(1) / np.linalg.norm(rows_e, axis=1) / np.linalg.norm(rows_p, axis=1)
    assert cosine.min() > 0.99, cosine.min()


def test_an_all_zero_row_quantizes_to_zeros_not_nan(tmp_path, seed):
    x = np.zeros((2, 3, HIDDEN), np.float32)
    x[1] = 1.0
    produced = _run(_quantized(tmp_path, variants.PER_TOKEN, seed), x)
    assert np.isfinite(produced).all()
    np.testing.assert_array_equal(produced[0], 0.0)


def test_every_quantizer_and_integer_matmul_is_replaced(tmp_path, seed):
    fp32 = _fp32_graph(tmp_path / "fp32.onnx", seed)
    settings = variants.Int8Settings(per_channel=False, op_types=("MatMul",), activations=variants.PER_TENSOR)
    variants.quantize_int8(fp32, tmp_path / "int8.onnx", settings)
    model = onnx.load(str(tmp_path / "int8.onnx"))
    assert per_token_activations(model) == 2
    onnx.checker.check_model(model)
    kinds = [n.op_type for n in model.graph.node]
    assert QUANTIZE not in kinds and "MatMulInteger" not in kinds
    assert kinds.count("MatMulIntegerToFloat") == 2 and kinds.count("QuantizeLinear") == 2
    assert per_token_activations(model) == 0, "a second pass finds nothing left to rewrite"


def test_ort_graph_optimizations_do_not_change_the_result(tmp_path, seed):
    """ORT's own fusions (MatMulIntegerToFloat and others) must leave the per-token graph's numbers alone."""
    _quantized(tmp_path, variants.PER_TOKEN, seed)
    x = np.random.default_rng(seed).normal(0, 1, (2, 4, HIDDEN)).astype(np.float32)
    x[1] *= 30
    results = []
    for level in (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        session = ort.InferenceSession(str(tmp_path / f"{variants.PER_TOKEN}.onnx"), options,
                                       providers=["CPUExecutionProvider"])
        results.append(_run(session, x))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5, atol=1e-5)


def test_a_graph_it_does_not_know_is_refused(tmp_path, seed):
    fp32 = _fp32_graph(tmp_path / "fp32.onnx", seed)
    settings = variants.Int8Settings(per_channel=False, op_types=("MatMul",), activations=variants.PER_TENSOR)
    variants.quantize_int8(fp32, tmp_path / "int8.onnx", settings)
    model = onnx.load(str(tmp_path / "int8.onnx"))
    quantizer = next(n for n in model.graph.node if n.op_type == QUANTIZE)
    model.graph.node.append(helper.make_node("Identity", [quantizer.output[2]], ["stray"]))
    with pytest.raises(ValueError, match="zero point"):
        per_token_activations(model)


def test_the_export_tries_the_asked_activations_only():
    for activations in (variants.PER_TOKEN, variants.PER_TENSOR):
        candidates = variants.int8_candidates(activations)
        assert len(candidates) == 4 and {c.activations for c in candidates} == {activations}
    assert "per-token" in variants.int8_candidates(variants.PER_TOKEN)[0].as_dict()["method"]
    with pytest.raises(ValueError, match="per-token"):
        variants.int8_candidates("per-row")


def test_the_cli_flag_reaches_the_config():
    from export.__main__ import config_from_args, parser

    assert config_from_args(parser().parse_args([])).int8_activations == variants.PER_TOKEN
    chosen = config_from_args(parser().parse_args(["--int8-activations", "per-tensor"]))
    assert chosen.int8_activations == variants.PER_TENSOR
    with pytest.raises(SystemExit):
        parser().parse_args(["--int8-activations", "per-row"])

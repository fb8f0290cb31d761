"""Tiny random-weight models: BERT (CLS), MPNet (mean + Dense + Normalize), XLM-R (max pooling)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import onnx
import pytest
from sentence_transformers import SentenceTransformer
from tokenizers import Tokenizer

from export.config import ExportConfig
from export.pipeline import run
from server.repository import FP16, FP32, MODEL_FILE, REPORT_FILE, TOKENIZER_FILE, find_model

from .helpers import TEXTS, batched_and_single, cosines, loadable


@dataclass(frozen=True)
class Expected:
    pooling: str
    normalize: bool
    dimension: int
    max_seq_length: int
    pad_id: int


EXPECTED = {
    "bert": Expected(pooling="cls", normalize=False, dimension=32, max_seq_length=64, pad_id=0),
    "mpnet": Expected(pooling="mean", normalize=True, dimension=16, max_seq_length=128, pad_id=1),
    "xlmr": Expected(pooling="max", normalize=True, dimension=32, max_seq_length=96, pad_id=1),
}


@pytest.fixture(scope="module")
def exported(tiny_sources, tmp_path_factory):
    """Each tiny model exported as fp32 (ORT-optimized) and fp16."""
    repository = tmp_path_factory.mktemp("tiny-models")
    for name, path in tiny_sources.items():
        run(
            ExportConfig(
                source=str(path), name=name, repository=repository, precisions=(FP32, FP16), optimize=True
            )
        )
    return repository


@pytest.mark.parametrize("arch", sorted(EXPECTED))
def test_fp32_matches_sentence_transformers(exported, tiny_sources, arch):
    model = SentenceTransformer(str(tiny_sources[arch]), device="cpu", local_files_only=True)
    reference = model.encode(TEXTS, convert_to_numpy=True, normalize_embeddings=False)
    produced = batched_and_single(exported / arch / "1", TEXTS)
    assert produced.shape == (2, len(TEXTS), EXPECTED[arch].dimension)
    assert cosines(reference[None], produced).min() >= 0.99999
    if EXPECTED[arch].normalize:
        np.testing.assert_allclose(np.linalg.norm(produced, axis=-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("arch", sorted(EXPECTED))
def test_config_and_tokenizer_carry_the_models_own_settings(exported, arch):
    expected = EXPECTED[arch]
    entry = find_model(exported, arch)
    assert entry.parameter("pooling") == expected.pooling
    assert entry.parameter("normalize") == str(expected.normalize).lower()
    assert entry.parameter("dimension") == str(expected.dimension)
    assert entry.parameter("max_seq_length") == str(expected.max_seq_length)
    assert list(entry.config.output[0].dims) == [expected.dimension]
    tokenizer = Tokenizer.from_file(str(entry.tokenizer_path))
    assert tokenizer.truncation["max_length"] == expected.max_seq_length
    assert tokenizer.padding["pad_id"] == expected.pad_id and tokenizer.padding["length"] is None
    short, long = tokenizer.encode_batch(["hi", " ".join(["word"] * 500)])
    assert len(short.ids) == len(long.ids) == expected.max_seq_length
    assert short.ids[-1] == expected.pad_id


@pytest.mark.parametrize("arch", sorted(EXPECTED))
def test_optimized_and_fp16_variants_are_verified_and_recorded(exported, tiny_sources, arch):
    report = json.loads((exported / arch / "1" / REPORT_FILE).read_text())
    assert report["optimize"]["fused_operators"]
    assert (
        report["gate"]["passed"] and report["gate"]["threshold"] == 0.9999 and report["min_cosine"] >= 0.9999
    )
    assert report["parity"]["sentence-transformers, before optimization"]["threshold"] == 0.99999
    ops = {node.op_type for node in onnx.load(str(exported / arch / "1" / MODEL_FILE)).graph.node}
    assert "SkipLayerNormalization" in ops, "the published fp32 graph is the fused one"
    assert loadable(exported)[f"{arch}-fp16"] == [1]
    fp16 = find_model(exported, f"{arch}-fp16")
    assert fp16.parameter("precision") == "fp16"
    assert fp16.config.instance_group[0].kind == fp16.config.instance_group[0].KIND_GPU
    graph = onnx.load(str(fp16.onnx_path)).graph
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in graph.initializer)
    assert [i.type.tensor_type.elem_type for i in graph.input] == [onnx.TensorProto.INT64] * 2
    assert graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    fp16_report = json.loads((fp16.directory / REPORT_FILE).read_text())
    assert fp16_report["gate"]["reference"] == "fp32-onnx" and fp16_report["min_cosine"] >= 0.999
    model = SentenceTransformer(str(tiny_sources[arch]), device="cpu", local_files_only=True)
    reference = model.encode(TEXTS, convert_to_numpy=True, normalize_embeddings=False)
    assert cosines(reference[None], batched_and_single(fp16.directory, TEXTS)).min() >= 0.999


def test_bert_token_type_ids_are_baked_in_as_segment_zero(exported, tiny_sources):
    """sentence-transformers feeds token_type_ids (all 0) to BERT; the graph takes only ids and mask, and its
    embedding of segment 0 (random in this model, so it matters) is part of the graph."""
    model = SentenceTransformer(str(tiny_sources["bert"]), device="cpu", local_files_only=True)
    features = model.tokenize(["two segments? no, one"])
    assert "token_type_ids" in features and int(features["token_type_ids"].abs().sum()) == 0
    token_types = model[0].auto_model.embeddings.token_type_embeddings.weight.detach().numpy()
    assert np.abs(token_types[0]).max() > 0
    entry = find_model(exported, "bert")
    graph_inputs = [i.name for i in onnx.load(str(entry.onnx_path)).graph.input]
    assert [i.name for i in entry.config.input] == ["TEXT", *graph_inputs]  # TEXT: the server tokenizes
    assert graph_inputs == ["input_ids", "attention_mask"]


def test_published_files_are_exactly_the_contract(exported):
    for name, versions in loadable(exported).items():
        assert versions == [1]
        assert sorted(p.name for p in (exported / name / "1").iterdir()) == sorted(
            [MODEL_FILE, TOKENIZER_FILE, REPORT_FILE]
        )

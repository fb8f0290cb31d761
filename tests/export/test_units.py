"""The export's pieces on their own, without running an export."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from tokenizers import Tokenizer

from export import publish, source, verify
from export import tokenizer as tok
from export.errors import InputError
from server.repository import (CONFIG_FILE, FP16, FP32, INT8, MODEL_FILE, ModelConfig, model_config_pb2,
                               read_model_config, variant_name)

from .tiny_models import minilm_path


def contract(precision: str, name: str = "m") -> publish.Contract:
    return publish.Contract(
        name=name,
        inputs=("input_ids", "attention_mask", "token_type_ids"),
        dimension=8,
        pooling="cls",
        normalize=False,
        max_seq_length=32,
        precision=precision,
        source="/src",
        max_batch_size=64,
        max_batch_tokens=8192,
    )


def test_feed_holds_exactly_the_graph_inputs_as_int64():
    tokenizer = Tokenizer.from_file(str(minilm_path() / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    feed = tok.encode(tokenizer, ["a b c", "a"], ["input_ids", "attention_mask", "token_type_ids"])
    assert list(feed) == ["input_ids", "attention_mask", "token_type_ids"]
    assert all(v.dtype == np.int64 and v.shape == (2, 5) for v in feed.values())
    assert feed["token_type_ids"].sum() == 0 and feed["attention_mask"].tolist()[1] == [1, 1, 1, 0, 0]
    assert list(tok.encode(tokenizer, ["x"], ["input_ids", "attention_mask"])) == [
        "input_ids",
        "attention_mask",
    ]
    with pytest.raises(ValueError, match="position_ids"):
        tok.encode(tokenizer, ["x"], ["input_ids", "position_ids"])


def test_model_config_for_each_precision_round_trips(tmp_path):
    for precision, kind in ((FP32, "KIND_CPU"), (INT8, "KIND_CPU"), (FP16, "KIND_GPU")):
        config = publish.model_config(contract(precision))
        publish.write_config(config, tmp_path)
        read = read_model_config(tmp_path / CONFIG_FILE)
        assert read == config
        assert text_format.Parse(text_format.MessageToString(read), ModelConfig()) == read
        assert read.instance_group[0].kind == read.instance_group[0].Kind.Value(kind)
        assert [(i.name, i.optional) for i in read.input] == [
            ("TEXT", False), ("input_ids", True), ("attention_mask", True), ("token_type_ids", True)]
        assert read.input[0].data_type == model_config_pb2.TYPE_STRING and list(read.input[0].dims) == [1]
        assert read.parameters["precision"].string_value == precision
    assert sorted(p.name for p in tmp_path.iterdir()) == [CONFIG_FILE]


def fake_staging(repository: Path, name: str, content: bytes) -> publish.Staging:
    staging = publish.Staging(repository, name, 1).__enter__()
    (staging.path / MODEL_FILE).write_bytes(content)
    return staging


def test_publish_all_is_all_or_nothing(tmp_path, monkeypatch):
    repository = tmp_path / "models"
    (repository / "a" / "1").mkdir(parents=True)
    (repository / "a" / "1" / MODEL_FILE).write_bytes(b"old a")
    publish.write_config(publish.model_config(contract(FP32, "a")), repository / "a")
    old_config = (repository / "a" / CONFIG_FILE).read_bytes()
    stagings = [fake_staging(repository, "a", b"new a"), fake_staging(repository, "b", b"new b")]
    configs = [publish.model_config(contract(FP32, "a")), publish.model_config(contract(INT8, "b"))]
    configs[0].parameters["pooling"].string_value = "mean"

    def fail_on_b(config, model_dir):
        if model_dir.name == "b":
            raise OSError("disk full")
        original(config, model_dir)

    original = publish.write_config
    monkeypatch.setattr(publish, "write_config", fail_on_b)
    with pytest.raises(OSError, match="disk full"):
        publish.publish_all(list(zip(stagings, configs)), force=True)
    for staging in stagings:
        staging.__exit__(None, None, None)
    assert (repository / "a" / "1" / MODEL_FILE).read_bytes() == b"old a"
    assert (repository / "a" / CONFIG_FILE).read_bytes() == old_config
    assert sorted(p.name for p in (repository / "a").iterdir()) == ["1", CONFIG_FILE]
    assert not (repository / "b").exists()

    monkeypatch.setattr(publish, "write_config", original)
    stagings = [fake_staging(repository, "a", b"new a"), fake_staging(repository, "b", b"new b")]
    publish.publish_all(list(zip(stagings, configs)), force=True)
    assert (repository / "a" / "1" / MODEL_FILE).read_bytes() == b"new a"
    assert read_model_config(repository / "a" / CONFIG_FILE).parameters["pooling"].string_value == "mean"
    assert sorted(p.name for p in (repository / "a").iterdir()) == ["1", CONFIG_FILE]
    assert sorted(p.name for p in (repository / "b").iterdir()) == ["1", CONFIG_FILE]


def test_staging_cleans_up_what_it_created_on_error(tmp_path):
    repository = tmp_path / "new-repo"
    with pytest.raises(RuntimeError), publish.Staging(repository, "m", 3) as staging:
        assert staging.path.name.startswith(".tmp-3-")
        (staging.path / MODEL_FILE).write_bytes(b"x")
        raise RuntimeError
    assert not repository.exists()


def write_st_dir(path: Path, types: list[str], config: dict | None = None) -> Path:
    path.mkdir(parents=True)
    modules = [
        {"idx": i, "name": str(i), "path": "" if i == 0 else f"{i}_x", "type": t} for i, t in enumerate(types)
    ]
    (path / "modules.json").write_text(json.dumps(modules))
    (path / "config.json").write_text(
        json.dumps(config or {"model_type": "bert", "max_position_embeddings": 512})
    )
    return path


@pytest.mark.parametrize(
    ("types", "message"),
    [
        (["sentence_transformers.models.Transformer"], "exactly one Pooling"),
        (["sentence_transformers.models.Transformer", "x.Pooling", "y.Pooling"], "exactly one Pooling"),
        (
            ["sentence_transformers.models.Transformer", "sentence_transformers.models.Router"],
            "unsupported module",
        ),
        (["sentence_transformers.models.StaticEmbedding", "x.Pooling"], "unsupported first module"),
    ],
)
def test_module_lists_that_cannot_be_exported(tmp_path, types, message):
    path = write_st_dir(tmp_path / "m", types)
    with pytest.raises(InputError, match=message):
        source.inspect_source(str(path), path)


def test_max_seq_length_resolution(tmp_path):
    types = ["sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling"]
    mpnet = write_st_dir(tmp_path / "mpnet", types, {"model_type": "mpnet", "max_position_embeddings": 514})
    (mpnet / "sentence_bert_config.json").write_text('{"max_seq_length": 384}')
    model = source.inspect_source(str(mpnet), mpnet)
    assert model.position_limit == 512
    assert source.resolve_max_seq_length(model, None) == 384
    assert source.resolve_max_seq_length(model, 512) == 512
    with pytest.raises(InputError, match="position limit 512"):
        source.resolve_max_seq_length(model, 513)
    with pytest.raises(InputError, match="too small"):
        source.resolve_max_seq_length(model, 1)

    bert = write_st_dir(tmp_path / "bert", types)
    (bert / "tokenizer_config.json").write_text(json.dumps({"model_max_length": int(1e30)}))
    assert source.resolve_max_seq_length(source.inspect_source(str(bert), bert), None) == 512


def test_default_names(tmp_path):
    bundled = minilm_path().resolve()
    assert source.default_name(str(bundled), bundled) == "all-MiniLM-L6-v2"
    assert source.default_name(str(tmp_path / "my-model"), tmp_path / "my-model") == "my-model"
    assert (
        source.default_name("BAAI/bge-small-en-v1.5", Path("/cache/snapshots/abc123")) == "bge-small-en-v1.5"
    )
    assert [variant_name("m", p) for p in (FP32, FP16, INT8)] == ["m", "m-fp16", "m-int8"]


def test_sts_data_splits_on_tabs_only(tmp_path):
    path = tmp_path / "sts.tsv"
    path.write_text(
        'score\tsentence1\tsentence2\n4.2\t"Quoted, with comma\tplain\n0\ta\t"b"\n', encoding="utf-8"
    )
    data = verify.load_sts(path)
    assert data.scores.tolist() == [4.2, 0.0]
    assert data.first == ('"Quoted, with comma', "a") and data.second == ("plain", '"b"')
    path.write_text("score,sentence1,sentence2\n1,a,b\n")
    with pytest.raises(InputError, match="not STS-B data"):
        verify.load_sts(path)


def test_parity_compares_every_run_of_every_probe():
    reference = np.eye(3, dtype=np.float32)
    candidate = np.stack([reference, reference])
    candidate[1, 2] = [0, 1, 1]
    parity = verify.compare(reference, candidate, against="ref", threshold=0.99)
    assert parity.probe_texts == 3 and parity.comparisons == 6
    assert parity.min_cosine == pytest.approx(np.sqrt(0.5)) and parity.max_abs_diff == pytest.approx(1.0)
    assert not parity.passed and parity.as_dict()["passed"] is False


def test_leftovers_of_killed_exports_are_recovered(tmp_path):
    dead = 999_999_999
    model_dir = tmp_path / "m"
    for name in (f".old-1-{dead}", f".tmp-2-{dead}", f".old-3-{dead}", "3", f".tmp-4-{os.getpid()}"):
        (model_dir / name).mkdir(parents=True)
    (model_dir / f".old-1-{dead}" / MODEL_FILE).write_bytes(b"set aside, never replaced")
    publish.recover_stale_staging(model_dir)
    assert sorted(p.name for p in model_dir.iterdir()) == sorted(["1", "3", f".tmp-4-{os.getpid()}"])
    assert (model_dir / "1" / MODEL_FILE).read_bytes() == b"set aside, never replaced"

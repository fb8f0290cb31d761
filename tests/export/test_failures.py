"""Bad input, failed verification, interruptions and re-exports: nothing partial is ever loadable."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from export import publish, tokenizer, verify
from export.__main__ import main
from export.config import ExportConfig, Thresholds
from export.errors import InputError, VerificationError
from export.pipeline import run
from server.repository import CONFIG_FILE, FP16, FP32, MODEL_FILE, REPORT_FILE

from .helpers import loadable, run_cli, snapshot


def single_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("export: error: ")
    return lines[0]


def copy_with_modules(source: Path, destination: Path, edit) -> Path:
    shutil.copytree(source, destination)
    modules = json.loads((destination / "modules.json").read_text())
    edit(modules)
    (destination / "modules.json").write_text(json.dumps(modules))
    return destination


def test_missing_path(tmp_path):
    result = run_cli("--model", str(tmp_path / "nope"), "--repository", str(tmp_path / "models"))
    assert result.returncode == 2
    assert "does not exist" in single_error_line(result.stderr)
    assert not (tmp_path / "models").exists()


def test_directory_that_is_not_a_sentence_transformers_model(tmp_path):
    plain = tmp_path / "plain-hf-model"
    plain.mkdir()
    (plain / "config.json").write_text('{"model_type": "bert"}')
    result = run_cli("--model", str(plain), "--repository", str(tmp_path / "models"))
    assert result.returncode == 2
    assert "not a sentence-transformers model" in single_error_line(result.stderr)
    assert not (tmp_path / "models").exists()


def test_first_module_must_be_a_transformer(tiny_bert, tmp_path):
    def edit(modules):
        modules[0]["type"] = "sentence_transformers.models.WordEmbeddings"

    source = copy_with_modules(tiny_bert, tmp_path / "word-embeddings", edit)
    result = run_cli("--model", str(source), "--repository", str(tmp_path / "models"))
    assert result.returncode == 2
    assert "unsupported first module" in single_error_line(result.stderr)
    assert not (tmp_path / "models").exists()


def test_unsupported_module_after_the_transformer(tiny_bert, tmp_path):
    def edit(modules):
        modules.append({"idx": 2, "name": "2", "path": "2_LSTM", "type": "sentence_transformers.models.LSTM"})

    source = copy_with_modules(tiny_bert, tmp_path / "with-lstm", edit)
    result = run_cli("--model", str(source), "--repository", str(tmp_path / "models"))
    assert result.returncode == 2
    assert "unsupported module sentence_transformers.models.LSTM" in single_error_line(result.stderr)
    assert not (tmp_path / "models").exists()


def test_existing_version_without_force(tmp_path):
    repository = tmp_path / "models"
    version = repository / "all-MiniLM-L6-v2" / "1"
    version.mkdir(parents=True)
    (version / MODEL_FILE).write_bytes(b"old")
    before = snapshot(repository)
    result = run_cli("--repository", str(repository), "--precision", "fp32", "int8")
    assert result.returncode == 2
    assert "already exists; pass --force" in single_error_line(result.stderr)
    assert snapshot(repository) == before and (version / MODEL_FILE).read_bytes() == b"old"


def test_max_seq_length_beyond_the_position_limit(tiny_bert, tmp_path):
    result = run_cli(
        "--model", str(tiny_bert), "--repository", str(tmp_path / "m"), "--max-seq-length", "129"
    )
    assert result.returncode == 2
    assert "exceeds the model's position limit 128" in single_error_line(result.stderr)


def interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_interrupt_during_verification_leaves_nothing(tiny_bert, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(verify, "probe", interrupt)
    repository = tmp_path / "models"
    assert main(["--model", str(tiny_bert), "--repository", str(repository)]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not repository.exists()


def test_interrupt_while_publishing_the_second_model_rolls_back_the_first(tiny_bert, tmp_path, monkeypatch):
    written = []
    original = publish.write_config

    def write_then_interrupt(config, model_dir):
        if written:
            raise KeyboardInterrupt
        original(config, model_dir)
        written.append(model_dir)

    monkeypatch.setattr(publish, "write_config", write_then_interrupt)
    repository = tmp_path / "models"
    args = [
        "--model",
        str(tiny_bert),
        "--name",
        "bert",
        "--repository",
        str(repository),
        "--precision",
        "fp32",
        "fp16",
    ]
    assert main(args) == 130
    assert written == [repository / "bert"], "the first model was fully published before the interrupt"
    assert loadable(repository) == {} and snapshot(repository) == []


def test_interrupted_forced_reexport_keeps_the_old_version(tiny_bert, tmp_path, monkeypatch):
    repository = tmp_path / "models"
    run(ExportConfig(source=str(tiny_bert), name="bert", repository=repository))
    before = {
        path: (repository / path).read_bytes()
        for path in snapshot(repository)
        if (repository / path).is_file()
    }
    monkeypatch.setattr(publish, "write_config", interrupt)
    args = ["--model", str(tiny_bert), "--name", "bert", "--repository", str(repository), "--force"]
    assert main(args) == 130
    after = {
        path: (repository / path).read_bytes()
        for path in snapshot(repository)
        if (repository / path).is_file()
    }
    assert after == before


def test_parity_failure_exits_non_zero_and_publishes_nothing(tiny_bert, tmp_path, monkeypatch, capsys):
    build = tokenizer.build_tokenizer
    monkeypatch.setattr(tokenizer, "build_tokenizer", lambda model, max_seq_length: build(model, 8))
    repository = tmp_path / "models"
    assert main(["--model", str(tiny_bert), "--repository", str(repository)]) == 3
    assert "fp32 does not match sentence-transformers" in capsys.readouterr().err
    assert not repository.exists()


def test_a_failing_variant_publishes_no_model_at_all(tiny_bert, tmp_path):
    repository = tmp_path / "models"
    config = ExportConfig(
        source=str(tiny_bert),
        name="bert",
        repository=repository,
        precisions=(FP32, FP16),
        thresholds=Thresholds(fp16_min_cosine=1.5),
    )
    with pytest.raises(VerificationError, match="fp16"):
        run(config)
    assert not repository.exists()


def test_force_replaces_a_version_and_other_versions_stay(tiny_bert, tmp_path):
    repository = tmp_path / "models"
    base = {"source": str(tiny_bert), "name": "bert", "repository": repository}
    run(ExportConfig(**base))
    marker = repository / "bert" / "1" / "stale-file"
    marker.write_text("from the old version")
    stale = repository / "bert" / ".tmp-1-999999999"
    stale.mkdir()
    with pytest.raises(InputError, match="already exists"):
        run(ExportConfig(**base))
    assert marker.exists()

    run(ExportConfig(**base, force=True))
    run(ExportConfig(**base, version=2))
    assert loadable(repository) == {"bert": [1, 2]}
    assert sorted(p.name for p in (repository / "bert").iterdir()) == ["1", "2", CONFIG_FILE]
    assert not marker.exists()
    assert json.loads((repository / "bert" / "2" / REPORT_FILE).read_text())["version"] == 2

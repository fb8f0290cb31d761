"""The KServe v2 inference core both transports share: a parsed request -> admitted, queued -> output tensors.

Prompts, truncation direction and chunking come from the request `parameters` (`options_from_parameters`) on
HTTP and gRPC alike. Chunk outputs (`chunk_embedding` [n, max_chunks, dim] FP32, `chunk_count` [n, 1] INT64,
`chunk_span` [n, max_chunks, 2] INT64) are returned whenever a client names them, as Triton returns every
output a model declares: with chunking 'chunks' they hold the request's windows; otherwise each input is its own
single chunk (count 1, its `sentence_embedding`, span [0, its length in characters]; [0, 0] for token-id
inputs), so a generic Triton client (which may request every output the metadata lists) gets a consistent
answer. A client that names no output gets the embedding, and the chunk outputs too with chunking 'chunks'.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import ServerConfig
from .embedding import (ChunkSet, TextEmbeddings, check_token_id_options, chunk_tensors, default_chunking,
                        embed_texts, estimated_chunk_floats)
from .model import Embeddings, ServedModel
from .options import CHUNKS
from .protocols import kserve
from .response_limit import check_response_floats
from .tokenizer import Tokenized


@dataclass(frozen=True)
class Inferred:
    result: Embeddings  # one vector per input; timings and usage
    outputs: list[kserve.RequestedOutput]  # what to return, in order
    tensors: dict[str, np.ndarray]  # every output in `outputs`, by name

    @property
    def floats(self) -> int:
        return sum(self.tensors[output.name].size for output in self.outputs)


def wants_chunks(parsed: kserve.InferRequest, config: ServerConfig) -> bool:
    """Whether the request embeds in windows with mode 'chunks' (the server's default applies to texts)."""
    options = parsed.options
    if parsed.texts is not None:
        options = options.with_default_chunking(default_chunking(config))
    return options.chunking is not None and options.chunking.mode == CHUNKS


async def embed(model: ServedModel, parsed: kserve.InferRequest, config: ServerConfig) -> TextEmbeddings:
    """Admit and queue the request on the model's batcher (shared by HTTP and gRPC) and await its embeddings.

    Texts go through `embedding.embed_texts` (prompt, truncation direction, chunking; admitted from their
    sizes); token ids are checked and stripped of their padding, then admitted by their exact count.
    """
    timeout_ms = kserve.timeout_ms(parsed.timeout_us, config.request_timeout_ms)
    if parsed.texts is not None:
        return await embed_texts(model, parsed.texts, parsed.options, config, timeout_ms=timeout_ms)
    check_token_id_options(parsed.options)
    sequences = kserve.sequences_from_ids(parsed.input_ids, parsed.attention_mask,  # type: ignore[arg-type]
                                          vocab_size=model.tokenizer.vocab_size,
                                          max_seq_length=model.info.max_seq_length)
    result = await model.embed_sequences(Tokenized(sequences=sequences, truncated=0), timeout_ms=timeout_ms)
    return TextEmbeddings(result, None)


def single_chunks(parsed: kserve.InferRequest, vectors: np.ndarray) -> list[ChunkSet]:
    """Each input as one chunk: its vector, and its whole length as the span ([0, 0] for token ids)."""
    lengths = [len(text) for text in parsed.texts] if parsed.texts is not None else [0] * len(vectors)
    return [ChunkSet(vectors[row:row + 1], np.asarray([[0, length]], dtype=np.int64))
            for row, length in enumerate(lengths)]


async def infer(model: ServedModel, parsed: kserve.InferRequest, config: ServerConfig, *, binary: bool
                ) -> Inferred:
    """Embed and build the output tensors, refusing (--max-response-bytes) before embedding from an estimate
    and again before the zero-padded chunk tensors are allocated; `binary`: the outputs go out as raw bytes."""
    dimension, limit = model.info.dimension, config.max_response_bytes
    check_response_floats(parsed.count * dimension + estimated_chunk_floats(
        parsed.texts, parsed.options, config, model.info.max_seq_length, dimension), binary=binary, limit=limit)
    outputs = kserve.outputs_for(parsed, chunks=wants_chunks(parsed, config))
    embedded = await embed(model, parsed, config)
    vectors = embedded.result.vectors
    tensors = {kserve.OUTPUT: vectors}
    if any(output.name in kserve.CHUNK_OUTPUTS for output in outputs):
        sets = embedded.chunks if embedded.chunks is not None else single_chunks(parsed, vectors)
        widest = max((len(c.spans) for c in sets), default=0)
        check_response_floats(vectors.size + len(sets) * (widest * (dimension + 2) + 1), binary=binary, limit=limit)
        tensors.update(chunk_tensors(sets, dimension))
    return Inferred(embedded.result, outputs, tensors)

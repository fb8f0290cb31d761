"""The KServe v2 inference core both transports share: a parsed request -> admitted, queued -> embeddings."""

from __future__ import annotations

from .config import ServerConfig
from .model import Embeddings, ServedModel
from .protocols import kserve
from .tokenizer import Tokenized


async def embed(model: ServedModel, parsed: kserve.InferRequest, config: ServerConfig) -> Embeddings:
    """Admit and queue the request on the model's batcher (shared by HTTP and gRPC) and await its embeddings.

    Texts are admitted from their sizes, then tokenized by the model's tokenizer; token ids are checked and
    stripped of their padding, then admitted by their exact count.
    """
    timeout_ms = kserve.timeout_ms(parsed.timeout_us, config.request_timeout_ms)
    if parsed.texts is not None:
        return await model.embed_texts(parsed.texts, timeout_ms=timeout_ms)
    sequences = kserve.sequences_from_ids(parsed.input_ids, parsed.attention_mask,  # type: ignore[arg-type]
                                          vocab_size=model.tokenizer.vocab_size,
                                          max_seq_length=model.info.max_seq_length)
    return await model.embed_sequences(Tokenized(sequences=sequences, truncated=0), timeout_ms=timeout_ms)

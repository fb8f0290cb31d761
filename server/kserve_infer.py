"""The KServe v2 inference core both transports share: a parsed request -> token sequences -> embeddings."""

from __future__ import annotations

from .config import ServerConfig
from .model import Embeddings, ServedModel
from .protocols import kserve
from .tokenizer import Tokenized


async def tokenize(model: ServedModel, parsed: kserve.InferRequest) -> Tokenized:
    """Texts are tokenized by the model's tokenizer; token ids are checked and stripped of their padding."""
    if parsed.texts is not None:
        return await model.tokenize_texts(parsed.texts)
    sequences = kserve.sequences_from_ids(parsed.input_ids, parsed.attention_mask,  # type: ignore[arg-type]
                                          vocab_size=model.tokenizer.vocab_size,
                                          max_seq_length=model.info.max_seq_length)
    return Tokenized(sequences=sequences, truncated=0)


async def embed(model: ServedModel, parsed: kserve.InferRequest, config: ServerConfig) -> Embeddings:
    """Queue the request's sequences on the model's batcher (shared by HTTP and gRPC) and await them."""
    return await model.embed(await tokenize(model, parsed),
                             timeout_ms=kserve.timeout_ms(parsed.timeout_us, config.request_timeout_ms))

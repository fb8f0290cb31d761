"""OpenAI `/v1/embeddings`: parse and validate request bodies, build response bodies (errors: server/errors.py).
No I/O."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from ..errors import invalid
from ..options import DEFAULT, EmbeddingOptions, options_from_body


@dataclass(frozen=True)
class EmbeddingsRequest:
    model: str | None
    texts: list[str] | None
    token_ids: list[list[int]] | None
    encoding_format: str
    dimensions: int | None
    options: EmbeddingOptions = DEFAULT  # extra body fields: prompt_name, prompt, input_type, truncation, chunking

    @property
    def count(self) -> int:
        return len(self.texts if self.texts is not None else self.token_ids or [])


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_input(value: Any, max_inputs: int, max_input_chars: int
                 ) -> tuple[list[str] | None, list[list[int]] | None]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise invalid("'input' must be a string, a list of strings, a list of token ids or a list of such lists",
                      "input")
    if not value:
        raise invalid("'input' must not be empty", "input")
    if isinstance(value[0], int) and not isinstance(value[0], bool):  # one pre-tokenized input
        if not all(_is_int(item) for item in value):
            raise invalid("'input' items must be all strings, all token ids, or all lists of token ids", "input")
        return None, [value]
    if len(value) > max_inputs:
        raise invalid(f"'input' has {len(value)} items; at most {max_inputs} are allowed per request", "input")
    if all(isinstance(item, str) for item in value):
        _check_texts(value, max_input_chars)
        return value, None
    if all(isinstance(item, list) for item in value):
        for index, ids in enumerate(value):
            if not ids:
                raise invalid(f"'input[{index}]' is an empty list of token ids", "input")
            if not all(_is_int(t) for t in ids):
                raise invalid(f"'input[{index}]' must be a list of integer token ids", "input")
        return None, value
    raise invalid("'input' items must be all strings, all token ids, or all lists of token ids", "input")


def _check_texts(texts: list[str], max_input_chars: int) -> None:
    for index, text in enumerate(texts):
        if not text:
            raise invalid(f"'input[{index}]' is an empty string", "input")
        if len(text) > max_input_chars:
            raise invalid(f"'input[{index}]' has {len(text)} characters; at most {max_input_chars} are allowed "
                          "per input", "input")
        if "\x00" in text:
            raise invalid(f"'input[{index}]' contains a NUL character", "input")


def parse_embeddings_request(body: Any, *, max_inputs: int, max_input_chars: int) -> EmbeddingsRequest:
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object")
    if "input" not in body:
        raise invalid("'input' is required", "input")
    texts, token_ids = _parse_input(body["input"], max_inputs, max_input_chars)
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise invalid("'model' must be a string", "model")
    encoding_format = body.get("encoding_format") or "float"
    if encoding_format not in ("float", "base64"):
        raise invalid("'encoding_format' must be 'float' or 'base64'", "encoding_format")
    dimensions = body.get("dimensions")
    if dimensions is not None and (not _is_int(dimensions) or dimensions < 1):
        raise invalid("'dimensions' must be a positive integer", "dimensions")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise invalid("'user' must be a string", "user")
    return EmbeddingsRequest(model or None, texts, token_ids, encoding_format, dimensions, options_from_body(body))


def reduce_dimensions(vectors: np.ndarray, dimensions: int | None, *, normalize: bool) -> np.ndarray:
    """Matryoshka-style truncation; re-normalized when the model's outputs are normalized."""
    if dimensions is None or dimensions == vectors.shape[1]:
        return vectors
    if dimensions > vectors.shape[1]:
        raise invalid(f"'dimensions' must be at most {vectors.shape[1]} for this model", "dimensions")
    reduced = vectors[:, :dimensions]
    if normalize:
        norms = np.linalg.norm(reduced, axis=1, keepdims=True)
        reduced = reduced / np.maximum(norms, 1e-12)
    return np.ascontiguousarray(reduced, dtype=np.float32)


def _encoded(vectors: np.ndarray, encoding_format: str) -> list:
    if encoding_format == "base64":
        return [base64.b64encode(row.tobytes()).decode("ascii") for row in vectors.astype("<f4", copy=False)]
    return list(vectors)


def build_embeddings_response(model: str, vectors: np.ndarray, prompt_tokens: int, encoding_format: str,
                              chunks: list[tuple[np.ndarray, np.ndarray]] | None = None) -> bytes:
    """`chunks` (chunking mode 'chunks'): per input, its windows' vectors [k, dim] and spans [k, 2], shown as
    data[i].chunks = [{"embedding", "start", "end"}]."""
    data = [{"object": "embedding", "index": i, "embedding": row}
            for i, row in enumerate(_encoded(vectors, encoding_format))]
    for item, (chunk_vectors, spans) in zip(data, chunks or []):
        item["chunks"] = [{"embedding": row, "start": int(start), "end": int(end)}
                          for row, (start, end) in zip(_encoded(chunk_vectors, encoding_format), spans)]
    body = {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def build_models_response(models: list[tuple[str, int]], prompts: list[dict] | None = None) -> bytes:
    """`prompts`: per model, {"prompts": {name: text}, "default_prompt_name": ...} shown beside its id."""
    return orjson.dumps({"object": "list", "data": [
        {"id": name, "object": "model", "created": created, "owned_by": "onnx-embedding-server", **extra}
        for (name, created), extra in zip(models, prompts or [{}] * len(models))]})

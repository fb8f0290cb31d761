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
from .values import check_text_lengths, is_int


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


def _parse_input(value: Any, max_inputs: int, max_input_chars: int
                 ) -> tuple[list[str] | None, list[list[int]] | None]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise invalid("'input' must be a string, a list of strings, a list of token ids or a list of such lists",
                      "input")
    if not value:
        raise invalid("'input' must not be empty", "input")
    if is_int(value[0]):  # one pre-tokenized input
        if not all(is_int(item) for item in value):
            raise invalid("'input' items must be all strings, all token ids, or all lists of token ids", "input")
        return None, [value]
    if len(value) > max_inputs:
        raise invalid(f"'input' has {len(value)} items; at most {max_inputs} are allowed per request", "input")
    if all(isinstance(item, str) for item in value):
        check_text_lengths(value, max_input_chars, lambda index: f"'input[{index}]'", "input")
        return value, None
    if all(isinstance(item, list) for item in value):
        for index, ids in enumerate(value):
            if not ids:
                raise invalid(f"'input[{index}]' is an empty list of token ids", "input")
            if not all(is_int(t) for t in ids):
                raise invalid(f"'input[{index}]' must be a list of integer token ids", "input")
        return None, value
    raise invalid("'input' items must be all strings, all token ids, or all lists of token ids", "input")


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
    if dimensions is not None and (not is_int(dimensions) or dimensions < 1):
        raise invalid("'dimensions' must be a positive integer", "dimensions")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise invalid("'user' must be a string", "user")
    return EmbeddingsRequest(model or None, texts, token_ids, encoding_format, dimensions, options_from_body(body))


def check_dimensions(dimensions: int | None, model_dimension: int, model: str) -> None:
    """`dimensions` (already a positive integer) is at most what the chosen model gives."""
    if dimensions is not None and dimensions > model_dimension:
        raise invalid(f"'dimensions' must be at most {model_dimension} for model {model}", "dimensions")


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

"""TEI compatibility: parse /embed and /tokenize bodies, build Text Embeddings Inference's shapes. No I/O.

Semantics follow TEI:
- `truncate` absent or null follows the server (`--truncate`, TEI's `--auto-truncate`); `false` rejects an
  input longer than max_seq_length with 422. `true` cannot override a server started with `--truncate false`.
- `truncation_direction` `Right` (default) or `Left` (keeps the special tokens, the prompt and the end of the
  text); `prompt_name` picks one of the model's prompts; `chunking` embeds long inputs in windows (a `chunks`
  request gets, per input, a list of {"embedding", "start", "end"}). See server/options.py.
- `normalize` (default true) L2-normalizes the output. Models that normalize inside their ONNX graph (the
  `normalize` parameter of config.pbtxt, e.g. all-MiniLM-L6-v2) can't return unnormalized vectors: for them
  `normalize: false` returns the model's unit-length output, which gives the same cosine similarities.
- `dimensions` keeps the first N values, then re-normalizes them when `normalize` is true.
- `model` (this server's extension: a TEI server serves one model) names the loaded model to use; absent,
  null or empty, the routes use the server's default model (`ModelRegistry.default`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from ..errors import ServerError, invalid
from ..options import DEFAULT, EmbeddingOptions, options_from_body
from ..repository import FP16, FP32, INT8
from .values import check_text_lengths, is_int


@dataclass(frozen=True)
class EmbedRequest:
    texts: list[str] | None
    token_ids: list[list[int]] | None
    normalize: bool
    truncate: bool | None
    dimensions: int | None
    options: EmbeddingOptions = DEFAULT

    @property
    def count(self) -> int:
        return len(self.texts if self.texts is not None else self.token_ids or [])


@dataclass(frozen=True)
class TokenizeRequest:
    texts: list[str]
    add_special_tokens: bool


def _object(body: Any) -> dict:
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object")
    if "inputs" not in body:
        raise invalid("`inputs` is required")
    return body


def requested_model(body: Any) -> str | None:
    """The model the body names in `model`, or None for the default one. A body that is not an object names
    none (its parser refuses it)."""
    if not isinstance(body, dict):
        return None
    name = body.get("model")
    if name is not None and not isinstance(name, str):
        raise invalid("`model` must be a string")
    return name or None


def _check_count(count: int, max_inputs: int) -> None:
    if count == 0:
        raise invalid("`inputs` cannot be empty")
    if count > max_inputs:
        raise invalid(f"batch size {count} > maximum allowed batch size {max_inputs}")


def _optional_bool(body: dict, key: str, default: bool | None) -> bool | None:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid(f"`{key}` must be a boolean")
    return value


def _check_text_lengths(texts: list[str], max_input_chars: int) -> None:
    check_text_lengths(texts, max_input_chars, lambda index: f"`inputs[{index}]`")


def _inputs(value: Any, max_inputs: int, max_input_chars: int) -> tuple[list[str] | None, list[list[int]] | None]:
    if isinstance(value, str):
        _check_text_lengths([value], max_input_chars)
        return [value], None
    if not isinstance(value, list):
        raise invalid("`inputs` must be a string, a list of token ids, or a list of either")
    if value and is_int(value[0]):  # one pre-tokenized input: its length is not a batch size
        if not all(is_int(item) for item in value):
            raise invalid("`inputs` items must be all strings, all token ids, or all non-empty lists of token ids")
        return None, [value]
    _check_count(len(value), max_inputs)
    if all(isinstance(item, str) for item in value):
        _check_text_lengths(value, max_input_chars)
        return value, None
    if all(isinstance(item, list) and item and all(is_int(t) for t in item) for item in value):
        return None, value
    raise invalid("`inputs` items must be all strings, all token ids, or all non-empty lists of token ids")


def parse_embed_request(body: Any, *, max_inputs: int, dimension: int, max_input_chars: int
                        ) -> EmbedRequest:
    body = _object(body)
    texts, token_ids = _inputs(body["inputs"], max_inputs, max_input_chars)
    options = options_from_body(body)
    dimensions = body.get("dimensions")
    if dimensions is not None and (not is_int(dimensions) or not 0 < dimensions <= dimension):
        raise invalid(f"`dimensions` must be an integer from 1 to {dimension} for this model")
    return EmbedRequest(texts, token_ids, normalize=bool(_optional_bool(body, "normalize", True)),
                        truncate=_optional_bool(body, "truncate", None), dimensions=dimensions, options=options)


def build_embed_response(vectors: np.ndarray) -> bytes:
    return orjson.dumps(vectors, option=orjson.OPT_SERIALIZE_NUMPY)


def build_chunks_response(chunks: list[tuple[np.ndarray, np.ndarray]]) -> bytes:
    """Chunking mode 'chunks': per input, a list of {"embedding", "start", "end"} (spans index the input)."""
    return orjson.dumps([[{"embedding": row, "start": int(start), "end": int(end)}
                          for row, (start, end) in zip(vectors, spans)] for vectors, spans in chunks],
                        option=orjson.OPT_SERIALIZE_NUMPY)


def parse_tokenize_request(body: Any, *, max_inputs: int, max_input_chars: int) -> TokenizeRequest:
    body = _object(body)
    inputs = body["inputs"]
    texts = [inputs] if isinstance(inputs, str) else inputs
    if not isinstance(texts, list):
        raise invalid("`inputs` must be a string or a list of strings")
    _check_count(len(texts), max_inputs)
    if not all(isinstance(text, str) for text in texts):
        raise invalid("`inputs` must be a string or a list of strings")
    _check_text_lengths(texts, max_input_chars)
    return TokenizeRequest(texts, bool(_optional_bool(body, "add_special_tokens", True)))


def simple_tokens(text: str, tokens: list[tuple[int, str, int, int, bool]], add_special_tokens: bool
                  ) -> list[dict[str, Any]]:
    """TEI's SimpleToken list: special tokens show their token and no offsets, others the text they cover."""
    return [
        {"id": token_id, "text": token, "special": True, "start": None, "stop": None} if special else
        {"id": token_id, "text": text[start:stop], "special": False, "start": start, "stop": stop}
        for token_id, token, start, stop, special in tokens
        if add_special_tokens or not special
    ]


# A SimpleToken's JSON without its text: {"id":123456,"text":"","special":false,"start":1234567,"stop":1234567},
TOKEN_JSON_BYTES = 72


def tokenize_response_bytes(token_lists: list[list[tuple[int, str, int, int, bool]]]) -> int:
    """About how many bytes the /tokenize response of these tokens (`Tokenizer.tokens` of each text) holds."""
    return sum(TOKEN_JSON_BYTES + (len(token) if special else stop - start)
               for tokens in token_lists for _, token, start, stop, special in tokens)


def least_tokenize_response_bytes(texts: list[str], max_seq_length: int, chars_per_token: int) -> int:
    """A low estimate of `tokenize_response_bytes` before tokenizing: at least one token per `chars_per_token`
    characters of each text, at most `max_seq_length` tokens."""
    return sum(min(-(-len(text) // chars_per_token), max_seq_length) for text in texts) * TOKEN_JSON_BYTES


def build_tokenize_response(texts: list[str], token_lists: list[list[tuple[int, str, int, int, bool]]],
                            add_special_tokens: bool) -> bytearray:
    """The JSON of every text's SimpleTokens, built one text at a time into one buffer: the dicts of every text at
    once, then their JSON, peaked at ~5x the response (2048 texts of 256 tokens: 30 MB, +157 MB); now ~1.1x."""
    body = bytearray(b"[")
    for index, (text, tokens) in enumerate(zip(texts, token_lists)):
        if index:
            body += b","
        body += orjson.dumps(simple_tokens(text, tokens, add_special_tokens))
    body += b"]"
    return body


_DTYPES = {FP32: "float32", FP16: "float16", INT8: "int8"}


@dataclass(frozen=True)
class InfoFields:
    model_id: str
    precision: str
    pooling: str
    max_concurrent_requests: int
    max_input_length: int
    max_batch_tokens: int
    max_batch_requests: int
    max_client_batch_size: int
    auto_truncate: bool
    version: str
    prompts: dict | None = None  # {"prompts": {name: text}, "default_prompt_name": ...}


def build_info(fields: InfoFields) -> bytes:
    return orjson.dumps({
        "model_id": fields.model_id,
        "model_sha": None,
        "model_dtype": _DTYPES.get(fields.precision, fields.precision),
        "served_model_name": fields.model_id,
        "model_type": {"embedding": {"pooling": fields.pooling}},
        "max_concurrent_requests": fields.max_concurrent_requests,
        "max_input_length": fields.max_input_length,
        "max_batch_tokens": fields.max_batch_tokens,
        "max_batch_requests": fields.max_batch_requests,
        "max_client_batch_size": fields.max_client_batch_size,
        "auto_truncate": fields.auto_truncate,
        "tokenization_workers": 1,
        "version": fields.version,
        "sha": None,
        "docker_label": None,
        **(fields.prompts or {}),
    })


def too_long(count: int, max_input_length: int) -> ServerError:
    return invalid(f"`inputs` must have at most {max_input_length} tokens, {count} input(s) have more and "
                   "`truncate` is false")

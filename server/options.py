"""Per-request embedding options (prompt, input type, truncation direction, chunking), protocol-neutral.

Every API parses its own spelling into one `EmbeddingOptions`: OpenAI and TEI from JSON body fields
(`options_from_body`), KServe v2 from the request's scalar `parameters` (`options_from_parameters`, which
takes a plain mapping so the HTTP and gRPC front ends share it). No I/O, no model knowledge: prompt names are
resolved against the model in `prompts.py`, windows are cut in `chunking.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from .errors import invalid
from .protocols.values import is_count

RIGHT, LEFT = "right", "left"
MEAN, CHUNKS, NONE = "mean", "chunks", "none"
CHUNK_MODES = (MEAN, CHUNKS)
DEFAULT_CHUNK_OVERLAP = 32
INPUT_TYPES = ("search_query", "search_document", "classification", "clustering")


@dataclass(frozen=True)
class Chunking:
    """Split inputs longer than max_seq_length into overlapping token windows; `mode` says what comes back."""

    mode: str  # MEAN: one token-weighted mean per input; CHUNKS: also one vector per window with its span
    overlap: int = DEFAULT_CHUNK_OVERLAP


@dataclass(frozen=True)
class EmbeddingOptions:
    prompt: str | None = None
    prompt_name: str | None = None
    input_type: str | None = None
    truncation_direction: str = RIGHT
    chunking: Chunking | None = None
    chunking_given: bool = False  # False: the server's default chunking applies

    @property
    def names_a_prompt(self) -> bool:
        return self.prompt is not None or self.prompt_name is not None or self.input_type is not None

    def with_default_chunking(self, default: Chunking | None) -> EmbeddingOptions:
        if self.chunking_given or default is None:
            return self
        return replace(self, chunking=default, chunking_given=True)


DEFAULT = EmbeddingOptions()


def _string(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid(f"'{name}' must be a string", name)
    return value


def _direction(value: Any) -> str:
    text = _string(value, "truncation_direction")
    if text is None:
        return RIGHT
    if text.lower() not in (RIGHT, LEFT):
        raise invalid(f"'truncation_direction' must be 'Right' or 'Left' (any case), not {text!r}",
                      "truncation_direction")
    return text.lower()


def _input_type(value: Any) -> str | None:
    text = _string(value, "input_type")
    if text is not None and text not in INPUT_TYPES:
        raise invalid(f"'input_type' must be one of {', '.join(INPUT_TYPES)}, not {text!r}", "input_type")
    return text


def _overlap(value: Any) -> int:
    if value is None:
        return DEFAULT_CHUNK_OVERLAP
    if not is_count(value):
        raise invalid("the chunk overlap must be a non-negative integer (tokens)", "chunking")
    return value


def parse_chunking(mode: Any, overlap: Any = None) -> Chunking | None:
    """`mode` 'mean' | 'chunks' | 'none' (None: no chunking) and the overlap in tokens (default 32)."""
    if mode is None or mode == NONE:
        _overlap(overlap)
        return None
    if mode not in CHUNK_MODES:
        raise invalid(f"the chunking mode must be 'mean', 'chunks' or 'none', not {mode!r}", "chunking")
    return Chunking(mode, _overlap(overlap))


def _chunking_field(value: Any) -> Chunking | None:
    """The JSON `chunking` field: {"mode": "mean" | "chunks" | "none", "overlap": 32}, or the mode alone."""
    if value is None or isinstance(value, str):
        return parse_chunking(value)
    if not isinstance(value, dict):
        raise invalid("'chunking' must be an object {\"mode\": \"mean\" | \"chunks\", \"overlap\": <tokens>}",
                      "chunking")
    unknown = sorted(set(value) - {"mode", "overlap"})
    if unknown:
        raise invalid(f"'chunking' has unknown field(s) {unknown}; expected 'mode' and 'overlap'", "chunking")
    if "mode" not in value:
        raise invalid("'chunking' needs a 'mode': 'mean', 'chunks' or 'none'", "chunking")
    return parse_chunking(value["mode"], value.get("overlap"))


def options_from_body(body: Mapping[str, Any]) -> EmbeddingOptions:
    """OpenAI extra body fields and TEI's: prompt_name, prompt, input_type, truncation_direction, chunking."""
    return EmbeddingOptions(
        prompt=_string(body.get("prompt"), "prompt"),
        prompt_name=_string(body.get("prompt_name"), "prompt_name"),
        input_type=_input_type(body.get("input_type")),
        truncation_direction=_direction(body.get("truncation_direction")),
        chunking=_chunking_field(body.get("chunking")),
        chunking_given="chunking" in body,
    )


PARAMETER_KEYS = ("prompt_name", "prompt", "input_type", "truncation_direction", "chunking", "chunk_overlap")


def options_from_parameters(parameters: Mapping[str, Any]) -> EmbeddingOptions:
    """KServe v2 request parameters (scalars): prompt_name, prompt, input_type, truncation_direction as
    strings, chunking 'mean' | 'chunks' | 'none' and chunk_overlap an integer. Other keys are ignored."""
    mode = _string(parameters.get("chunking"), "chunking")
    if parameters.get("chunk_overlap") is not None and mode in (None, NONE):
        raise invalid("'chunk_overlap' needs 'chunking' 'mean' or 'chunks'", "chunk_overlap")
    return EmbeddingOptions(
        prompt=_string(parameters.get("prompt"), "prompt"),
        prompt_name=_string(parameters.get("prompt_name"), "prompt_name"),
        input_type=_input_type(parameters.get("input_type")),
        truncation_direction=_direction(parameters.get("truncation_direction")),
        chunking=parse_chunking(mode, parameters.get("chunk_overlap")),
        chunking_given="chunking" in parameters,
    )

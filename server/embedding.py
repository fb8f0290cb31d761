"""One request's texts -> vectors, with the request's options: prompt, truncation direction, chunking.

Shared by every API: check the texts (empty, NUL), resolve the prompt, be admitted by the model from a
character estimate of the tokens (windows included), tokenize (inline when small, else on the model's
tokenizer thread), queue every sequence (windows included) as one job through the model's batcher, then put
each input's windows back together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from . import chunking
from . import repository as repo
from .admission import estimate_id_tokens, estimate_text_tokens, estimate_window_tokens
from .config import ServerConfig
from .errors import ServerError, invalid
from .model import Embeddings, ServedModel
from .options import CHUNKS, LEFT, Chunking, EmbeddingOptions
from .tokenizer import PREFIX_CHARS_PER_TOKEN, TextTokenizer, Tokenized, too_long_error

# A low estimate of tokens per character, to refuse a request whose windows surely exceed --max-inputs
# before tokenizing it (English averages about one token per 4-5 characters).
CHARS_PER_TOKEN_ESTIMATE = 16
# Characters of chunked inputs tokenized in one batch (`_text_groups`).
CHUNK_GROUP_CHARS = 256 * 1024


@dataclass(frozen=True)
class ChunkSet:
    """One input's windows: their vectors [k, dim] and character spans [k, 2] (start, end) in the input."""

    vectors: np.ndarray
    spans: np.ndarray


@dataclass(frozen=True)
class TextEmbeddings:
    result: Embeddings  # one vector per input (the weighted mean of its windows when chunked); usage counts all
    chunks: list[ChunkSet] | None  # per input, for chunking mode 'chunks'


@dataclass(frozen=True)
class _Prepared:
    tokenized: Tokenized
    counts: list[int] | None = None  # windows per input; None: one sequence per input
    spans: list[tuple[int, int]] | None = None
    weights: list[int] | None = None


def default_chunking(config: ServerConfig) -> Chunking | None:
    return None if config.chunking == "none" else Chunking(config.chunking, config.chunk_overlap)


def check_texts(texts: list[str]) -> None:
    """Empty and NUL-holding texts are refused, for every protocol, here and only here."""
    for index, text in enumerate(texts):
        if not text:
            raise invalid(f"input {index} is an empty string", "input")
        if "\x00" in text:
            raise invalid(f"input {index} contains a NUL character", "input")


def check_token_id_options(options: EmbeddingOptions) -> None:
    """Token-id inputs are embedded as given: they take no prompt and no chunking (defaults don't apply)."""
    if options.names_a_prompt:
        raise invalid("prompts apply to text inputs; token-id inputs are embedded as given", "prompt")
    if options.chunking is not None:
        raise invalid("chunking applies to text inputs; token-id inputs are embedded as given", "chunking")


def _check_window_estimate(texts: list[str], chunks: Chunking, max_seq_length: int, max_inputs: int) -> None:
    estimate = sum(chunking.estimated_windows(len(t), max_seq_length, chunks.overlap, CHARS_PER_TOKEN_ESTIMATE)
                   for t in texts)
    if estimate > max_inputs:
        raise invalid(f"the inputs would make at least {estimate} windows (estimated from their length); at most "
                      f"{max_inputs} are allowed per request (--max-inputs)", "input")


def estimated_chunk_floats(texts: list[str] | None, options: EmbeddingOptions, config: ServerConfig,
                           max_seq_length: int, dimension: int) -> int:
    """Numbers a 'chunks' response adds (each window's vector of `dimension` and its span), estimated low from
    the texts' lengths before tokenizing, for the response-size check (--max-response-bytes); 0 otherwise."""
    chunks = options.with_default_chunking(default_chunking(config)).chunking
    if texts is None or chunks is None or chunks.mode != CHUNKS:
        return 0
    windows = sum(chunking.estimated_windows(len(t), max_seq_length, chunks.overlap, CHARS_PER_TOKEN_ESTIMATE)
                  for t in texts)
    return windows * (dimension + 2)


def chunk_floats(chunks: list[ChunkSet] | None, dimension: int) -> int:
    """Numbers the windows of a 'chunks' response add (vector and span each), exactly."""
    return sum(len(c.spans) for c in chunks or []) * (dimension + 2)


def _splits(tokenizer: TextTokenizer, texts: list[str], prompt: str) -> list[chunking.Split]:
    encodings = tokenizer.encode_full([prompt + text for text in texts])
    return [chunking.split_encoding(e.ids, e.offsets, prefix=len(tokenizer.prefix), suffix=len(tokenizer.suffix),
                                    prompt_chars=len(prompt), text_chars=len(text))
            for e, text in zip(encodings, texts)]


def _left_split(tokenizer: TextTokenizer, text: str, tail: str, prompt: str) -> chunking.Split:
    """The split of `prompt + text` for left truncation, from `tail`, a suffix of `text` that ends in the same
    tokens (`TextTokenizer.kept_suffix`): its text tokens, and the prompt's tokens as the whole text gives them
    (the prompt's last word may run into the text's first one)."""
    if tail is text:
        return _splits(tokenizer, [text], prompt)[0]
    split = _splits(tokenizer, [tail], "")[0]
    if not prompt:
        return split
    head = _splits(tokenizer, [text[:tokenizer.max_seq_length * PREFIX_CHARS_PER_TOKEN]], prompt)[0]
    return replace(split, prompt=head.prompt)


def _truncate_left(tokenizer: TextTokenizer, texts: list[str], prompt: str) -> _Prepared:
    """Each long text is tokenized from a suffix that ends in the same kept tokens (`_left_split`)."""
    limit = tokenizer.max_seq_length
    tails = [tokenizer.kept_suffix(text) if len(text) > limit * PREFIX_CHARS_PER_TOKEN else text for text in texts]
    if all(tail is text for tail, text in zip(tails, texts)):
        splits = _splits(tokenizer, texts, prompt)
    else:
        splits = [_left_split(tokenizer, text, tail, prompt) for text, tail in zip(texts, tails)]
    too_long = [i for i, split in enumerate(splits) if split.length > limit]
    if too_long and not tokenizer.truncate:
        index = too_long[0]
        raise too_long_error(index, splits[index].length if tails[index] is texts[index] else None, limit)
    return _Prepared(Tokenized([chunking.truncate_left(s, limit) for s in splits], truncated=len(too_long)))


def _text_groups(texts: list[str]) -> list[list[str]]:
    """Consecutive texts in groups of at most CHUNK_GROUP_CHARS characters (a longer text alone): each group is
    tokenized in one batch, in parallel, and a group's encodings are all that is held at once."""
    groups: list[list[str]] = []
    size = CHUNK_GROUP_CHARS
    for text in texts:
        if size + len(text) > CHUNK_GROUP_CHARS:
            groups.append([])
            size = 0
        groups[-1].append(text)
        size += len(text)
    return groups


def _chunk(tokenizer: TextTokenizer, texts: list[str], prompt: str, chunks: Chunking, max_inputs: int
           ) -> _Prepared:
    """Inputs in groups (`_text_groups`), an input refused from a prefix before it is tokenized whole when it
    surely holds more tokens than the windows left may take: a request costs at most about the tokens its allowed
    windows hold, whatever its texts."""
    per_input: list[list[chunking.Window]] = []
    limit = tokenizer.max_seq_length
    room = limit - len(tokenizer.prefix) - len(tokenizer.suffix)
    used = 0  # windows so far
    try:
        for group in _text_groups(texts):
            for text in group:
                if chunks.overlap >= room and tokenizer.surely_longer_than(text, room):
                    raise invalid(f"the chunk overlap {chunks.overlap} must be smaller than the window, {room} "
                                  "tokens for this model", "chunking")
                if tokenizer.surely_longer_than(text, chunking.most_tokens(max_inputs - used, limit, chunks.overlap)):
                    raise chunking.TooManyWindows()
            for split in _splits(tokenizer, group, prompt):
                per_input.append(chunking.windows(split, limit, chunks.overlap, max_inputs - used))
                used += len(per_input[-1])
    except chunking.TooManyWindows:
        raise invalid(f"the inputs make more than {max_inputs} windows; at most {max_inputs} are allowed per "
                      "request (--max-inputs)", "input") from None
    counts = [len(w) for w in per_input]
    flat = [window for windows in per_input for window in windows]
    return _Prepared(Tokenized([w.sequence for w in flat], truncated=0), counts,
                     [(w.start, w.end) for w in flat], [w.weight for w in flat])


def prepare(tokenizer: TextTokenizer, texts: list[str], prompt: str, options: EmbeddingOptions, max_inputs: int
            ) -> _Prepared:
    """Tokenize `texts` for `options` (blocking). Right truncation without chunking is the plain tokenizer path."""
    if options.chunking is not None:
        return _chunk(tokenizer, texts, prompt, options.chunking, max_inputs)
    if options.truncation_direction == LEFT:
        return _truncate_left(tokenizer, texts, prompt)
    return _Prepared(tokenizer.encode_texts([prompt + text for text in texts] if prompt else texts))


def _assemble(prepared: _Prepared, result: Embeddings, chunks: Chunking | None, model_normalizes: bool
              ) -> TextEmbeddings:
    if prepared.counts is None or chunks is None:
        return TextEmbeddings(result, None)
    weights = np.asarray(prepared.weights, dtype=np.float64)
    spans = np.asarray(prepared.spans, dtype=np.int64).reshape(-1, 2)
    means, sets, start = [], [], 0
    for count in prepared.counts:
        rows = slice(start, start + count)
        means.append(result.vectors[start] if count == 1 else
                     chunking.weighted_mean(result.vectors[rows], weights[rows], model_normalizes=model_normalizes))
        sets.append(ChunkSet(result.vectors[rows], spans[rows]))
        start += count
    return TextEmbeddings(replace(result, vectors=np.stack(means).astype(np.float32, copy=False)),
                          sets if chunks.mode == CHUNKS else None)


def chunk_tensors(chunks: list[ChunkSet], dimension: int) -> dict[str, np.ndarray]:
    """KServe's chunk outputs (first dimension = the request's inputs): `chunk_embedding` [n, max_chunks, dim]
    FP32 zero-padded, `chunk_count` [n, 1] INT64 (config.pbtxt dims [1]: Triton exposes [batch, 1]; its
    `reshape { shape: [] }` is the model-side [batch]), `chunk_span` [n, max_chunks, 2] INT64 (start, end)."""
    widest = max((len(c.spans) for c in chunks), default=0)
    vectors = np.zeros((len(chunks), widest, dimension), dtype=np.float32)
    spans = np.zeros((len(chunks), widest, 2), dtype=np.int64)
    for row, chunk in enumerate(chunks):
        vectors[row, :len(chunk.spans)] = chunk.vectors
        spans[row, :len(chunk.spans)] = chunk.spans
    counts = np.asarray([len(c.spans) for c in chunks], dtype=np.int64).reshape(-1, 1)
    return {repo.OUTPUT_CHUNK_EMBEDDING: vectors, repo.OUTPUT_CHUNK_COUNT: counts, repo.OUTPUT_CHUNK_SPAN: spans}


def _estimated_tokens(model: ServedModel, texts: list[str], prompt: str, options: EmbeddingOptions) -> int:
    """The request's admission estimate (server/admission.py): its windows' tokens when chunked."""
    specials, limit = model.special_tokens, model.info.max_seq_length
    if options.chunking is None:
        return estimate_text_tokens(texts, limit, specials + len(prompt))  # the prompt precedes every text
    return estimate_window_tokens([len(t) for t in texts], limit, specials + len(prompt), options.chunking.overlap)


async def embed_texts(model: ServedModel, texts: list[str], options: EmbeddingOptions, config: ServerConfig, *,
                      timeout_ms: int | None = None,
                      on_truncated: Callable[[int], ServerError] | None = None) -> TextEmbeddings:
    """Embed `texts` with `options` (the server's default chunking applies when the request sets none).

    Goes through the model's admission (`ServedModel.embed_prepared`): the request reserves its estimated
    tokens, windows included, before anything is tokenized. `on_truncated` builds the error for a request that
    forbids truncation (TEI `truncate: false`) when some input was truncated; it is raised before anything is
    queued. The per-input character cap (--max-input-chars) is the protocol parsers' (checked on the raw body).
    """
    check_texts(texts)
    options = options.with_default_chunking(default_chunking(config))
    prompt = model.prompts.resolve(options)
    # Every input is tokenized with the prompt before it, so a prompt is bounded by what a window could hold
    # (prompt x inputs must not become gigabytes of strings), and by --max-input-chars.
    prompt_limit = min(config.max_input_chars, model.info.max_seq_length * PREFIX_CHARS_PER_TOKEN)
    if len(prompt) > prompt_limit:
        raise invalid(f"the prompt has {len(prompt)} characters; at most {prompt_limit} are allowed for this "
                      f"model (its max_seq_length x {PREFIX_CHARS_PER_TOKEN}, and --max-input-chars)", "prompt")
    if options.chunking is not None:
        _check_window_estimate(texts, options.chunking, model.info.max_seq_length, config.max_inputs)
    prepared, result = await model.embed_prepared(
        lambda served: _estimated_tokens(served, texts, prompt, options),
        lambda tokenizer: prepare(tokenizer, texts, prompt, options, config.max_inputs),
        lambda done: done.tokenized, sum(map(len, texts)) + len(prompt) * len(texts),
        timeout_ms=timeout_ms, check=_truncation_check(on_truncated))
    return _assemble(prepared, result, options.chunking, model.info.normalize)


def _truncation_check(on_truncated: Callable[[int], ServerError] | None) -> Callable[[Tokenized], None] | None:
    if on_truncated is None:
        return None

    def check(tokenized: Tokenized) -> None:
        if tokenized.truncated:
            raise on_truncated(tokenized.truncated)
    return check


async def embed_inputs(model: ServedModel, texts: list[str] | None, token_ids: list[list[int]] | None,
                       options: EmbeddingOptions, config: ServerConfig, *,
                       on_truncated: Callable[[int], ServerError] | None = None) -> TextEmbeddings:
    """A request's texts, or else its pre-tokenized inputs (OpenAI and TEI give one or the other), embedded."""
    if texts is not None:
        return await embed_texts(model, texts, options, config, on_truncated=on_truncated)
    return TextEmbeddings(await embed_token_ids(model, token_ids or [], options, on_truncated=on_truncated), None)


def truncate_ids_left(token_lists: list[list[int]], tokenizer: TextTokenizer) -> tuple[list[list[int]], int]:
    """Token-id inputs (without special tokens) cut to their last tokens that fit; and how many were cut."""
    room = tokenizer.max_seq_length - len(tokenizer.prefix) - len(tokenizer.suffix)
    if not tokenizer.truncate:
        return token_lists, 0
    cut = sum(len(ids) > room for ids in token_lists)
    return [ids[-room:] if len(ids) > room else ids for ids in token_lists], cut


def _encode_ids(tokenizer: TextTokenizer, token_lists: list[list[int]], direction: str) -> Tokenized:
    cut = 0
    if direction == LEFT:
        token_lists, cut = truncate_ids_left(token_lists, tokenizer)
    tokenized = tokenizer.encode_ids(token_lists)
    return replace(tokenized, truncated=tokenized.truncated + cut) if cut else tokenized


async def embed_token_ids(model: ServedModel, token_lists: list[list[int]], options: EmbeddingOptions, *,
                          timeout_ms: int | None = None,
                          on_truncated: Callable[[int], ServerError] | None = None) -> Embeddings:
    """Embed pre-tokenized inputs (the server adds the special tokens); honours the truncation direction.
    Admitted like texts (`ServedModel.embed_prepared`), from the exact id counts."""
    check_token_id_options(options)
    _, result = await model.embed_prepared(
        lambda served: estimate_id_tokens(token_lists, served.info.max_seq_length, served.special_tokens),
        lambda tokenizer: _encode_ids(tokenizer, token_lists, options.truncation_direction),
        lambda tokenized: tokenized, sum(map(len, token_lists)),
        timeout_ms=timeout_ms, check=_truncation_check(on_truncated))
    return result

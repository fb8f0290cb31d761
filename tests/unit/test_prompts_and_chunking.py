"""Pure logic of request options, prompt resolution and token windows (real MiniLM tokenizer, no model)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from server import chunking
from server.admission import estimate_window_tokens
from server.embedding import check_texts
from server.errors import ServerError
from server.options import Chunking, EmbeddingOptions, options_from_body, options_from_parameters
from server.prompts import PromptSet
from tests.export.tiny_models import minilm_path

PROMPTS = PromptSet({"query": "query: ", "passage": "passage: ", "clustering": "cluster: "}, "query")


def message(call) -> str:
    with pytest.raises(ServerError) as info:
        call()
    return info.value.message


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    loaded = Tokenizer.from_file(str(minilm_path() / "tokenizer.json"))
    loaded.no_truncation()
    loaded.no_padding()
    return loaded


def split(tokenizer: Tokenizer, text: str, prompt: str = "") -> chunking.Split:
    encoding = tokenizer.encode(prompt + text)
    return chunking.split_encoding(encoding.ids, encoding.offsets, prefix=1, suffix=1, prompt_chars=len(prompt),
                                   text_chars=len(text))


def test_body_fields_and_their_errors():
    options = options_from_body({"prompt_name": "query", "input_type": "search_document",
                                 "truncation_direction": "Left", "chunking": {"mode": "chunks", "overlap": 4}})
    assert options == EmbeddingOptions(None, "query", "search_document", "left", Chunking("chunks", 4), True)
    assert options_from_body({"chunking": "mean"}).chunking == Chunking("mean", 32)
    assert options_from_body({"chunking": {"mode": "none"}}) == EmbeddingOptions(chunking_given=True)
    assert "must be one of search_query" in message(lambda: options_from_body({"input_type": "query"}))
    assert "'Right' or 'Left'" in message(lambda: options_from_body({"truncation_direction": "up"}))
    assert "unknown field(s) ['size']" in message(lambda: options_from_body({"chunking": {"mode": "mean",
                                                                                          "size": 3}}))
    assert "non-negative integer" in message(lambda: options_from_body({"chunking": {"mode": "mean",
                                                                                     "overlap": -1}}))
    assert "'prompt' must be a string" in message(lambda: options_from_body({"prompt": 3}))


def test_kserve_parameters_are_scalars():
    options = options_from_parameters({"prompt": "x: ", "chunking": "chunks", "chunk_overlap": 0,
                                       "binary_data_output": True})
    assert options.prompt == "x: " and options.chunking == Chunking("chunks", 0)
    assert "'chunk_overlap' needs" in message(lambda: options_from_parameters({"chunk_overlap": 3}))
    assert "'mean', 'chunks' or 'none'" in message(lambda: options_from_parameters({"chunking": "all"}))


def test_server_default_chunking_applies_only_when_the_request_sets_none():
    default = Chunking("mean", 8)
    assert EmbeddingOptions().with_default_chunking(default).chunking == default
    assert options_from_body({"chunking": "none"}).with_default_chunking(default).chunking is None
    assert options_from_body({"chunking": "chunks"}).with_default_chunking(default).chunking.mode == "chunks"


def test_prompt_precedence():
    assert PROMPTS.resolve(EmbeddingOptions()) == "query: "
    assert PROMPTS.resolve(EmbeddingOptions(input_type="search_document")) == "passage: "
    assert PROMPTS.resolve(EmbeddingOptions(input_type="clustering")) == "cluster: "
    assert PROMPTS.resolve(EmbeddingOptions(input_type="classification")) == ""  # no match: no prompt
    assert PROMPTS.resolve(EmbeddingOptions(prompt_name="passage", input_type="search_query")) == "passage: "
    assert PROMPTS.resolve(EmbeddingOptions(prompt="", prompt_name="passage")) == ""
    assert "'query', 'passage', 'clustering'" in message(lambda: PROMPTS.resolve(EmbeddingOptions(prompt_name="q")))
    assert "defines no prompts" in message(lambda: PromptSet().resolve(EmbeddingOptions(prompt_name="query")))
    assert PromptSet().resolve(EmbeddingOptions(input_type="search_query")) == ""


def test_split_separates_specials_prompt_and_text_with_text_offsets(tokenizer):
    text = "Grüße aus Köln, unbelievable"
    parts = split(tokenizer, text, "query: ")
    assert parts.prefix.tolist() == [tokenizer.token_to_id("[CLS]")]
    assert parts.suffix.tolist() == [tokenizer.token_to_id("[SEP]")]
    assert parts.prompt.tolist() == tokenizer.encode("query: ", add_special_tokens=False).ids
    alone = tokenizer.encode(text, add_special_tokens=False)
    assert parts.text.tolist() == alone.ids and parts.offsets.tolist() == [list(o) for o in alone.offsets]
    assert parts.sequence().tolist() == tokenizer.encode("query: " + text).ids


def test_windows_cover_the_text_with_the_overlap_and_exact_spans(tokenizer):
    text = " ".join(f"word{i} unbelievable" for i in range(60))
    parts = split(tokenizer, text, "query: ")
    limit, overlap = 40, 5
    room = limit - 2 - len(parts.prompt)
    cut = chunking.windows(parts, limit, overlap, 10_000)
    assert len(cut) > 3 and all(len(w.sequence) <= limit for w in cut)
    assert sum(w.weight for w in cut) - overlap * (len(cut) - 1) == len(parts.text)
    starts = [i * (room - overlap) for i in range(len(cut))]
    for window, start in zip(cut, starts):
        stop = start + window.weight
        assert window.sequence.tolist() == [*parts.prefix, *parts.prompt, *parts.text[start:stop], *parts.suffix]
        assert (window.start, window.end) == (parts.offsets[start, 0], parts.offsets[stop - 1, 1])
    assert cut[0].start == 0 and cut[-1].end == len(text)
    short = chunking.windows(split(tokenizer, "hello there", "query: "), limit, overlap, 1)
    assert [(w.start, w.end, w.weight) for w in short] == [(0, 11, 2)]


def test_window_errors(tokenizer):
    parts = split(tokenizer, "many words here " * 20, "a very long prompt indeed: ")
    assert "leaves no room" in message(lambda: chunking.windows(parts, 8, 0, 10_000))
    assert "overlap 32 must be smaller than the window, 32 tokens" in message(lambda: chunking.windows(parts, 40, 32, 10_000))


def test_left_truncation_keeps_prefix_prompt_and_the_end(tokenizer):
    parts = split(tokenizer, "one two three four five six seven eight nine ten", "query: ")
    kept = chunking.truncate_left(parts, 8)
    assert kept.tolist() == [*parts.prefix, *parts.prompt, *parts.text[-4:], *parts.suffix]
    assert chunking.truncate_left(parts, 100).tolist() == parts.sequence().tolist()


def test_weighted_mean():
    vectors = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    mean = chunking.weighted_mean(vectors, np.array([3.0, 1.0]), model_normalizes=False)
    assert np.allclose(mean, [0.75, 0.25])
    unit = chunking.weighted_mean(vectors, np.array([3.0, 1.0]), model_normalizes=True)
    assert np.allclose(unit, np.array([3.0, 1.0]) / np.sqrt(10))


def test_empty_and_nul_texts_are_refused_on_every_path():
    assert "empty string" in message(lambda: check_texts(["ok", ""]))
    assert "NUL" in message(lambda: check_texts(["ok", "a\x00b"]))


def test_admission_estimate_of_a_chunked_text_covers_its_windows():
    # 10 specials+prompt tokens leave a room of 246 per window; stride 246 - 32 = 214.
    assert estimate_window_tokens([100], 256, 10, 32) == 110
    assert estimate_window_tokens([246, 247], 256, 10, 32) == 256 + 2 * 256
    assert estimate_window_tokens([246 + 214 * 3], 256, 10, 32) == 4 * 256
    # At most one token per character: the estimate is never below the windows the text can really make.
    text_tokens = 5000
    real_windows = len(range(0, text_tokens - 246, 214)) + 1
    assert estimate_window_tokens([text_tokens], 256, 10, 32) >= real_windows * 256 - 256
    assert chunking.estimated_windows(100, 256, 32, 16) == 1
    assert chunking.estimated_windows(16 * 1000, 256, 32, 16) == 1 + -(-(1000 - 256) // 222)


def test_windows_are_counted_before_any_is_built(tokenizer):
    """A long input with a large overlap (stride 1) would make thousands of windows: refused from the count."""
    parts = split(tokenizer, "word " * 3000, "")
    room = 40 - 2
    with pytest.raises(chunking.TooManyWindows):
        chunking.windows(parts, 40, room - 1, 100)
    assert len(chunking.windows(parts, 40, 0, 100)) == -(-3000 // room)


LEFT_SEED = int(os.environ.get("FUZZ_SEED") or random.randrange(2**32))


def byte_level_tokenizer(path) -> Path:
    """A small byte-level BPE (GPT-2 / RoBERTa style) trained here: BPE merges within a word from its start."""
    from tokenizers import models, pre_tokenizers, trainers

    trained = Tokenizer(models.BPE())
    trained.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    corpus = ["aaaa aaaaaaaa bread naive co-operate " * 20, "a" * 64, "the quick brown fox " * 30]
    trained.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, show_progress=False,
                                                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    trained.save(str(path / "tokenizer.json"))
    return path / "tokenizer.json"


@pytest.mark.parametrize("kind", ["wordpiece", "byte-level"])
def test_left_truncation_of_long_texts_keeps_the_tokens_of_the_whole_texts(kind, tmp_path):
    """Texts over 16 characters per kept token are tokenized from a suffix (`TextTokenizer.kept_suffix`) that
    starts at a word boundary, with the prompt's tokens as the whole text gives them. Fuzzed with a fresh seed."""
    from server.embedding import prepare
    from server.tokenizer import TextTokenizer

    print(f"FUZZ_SEED={LEFT_SEED}")
    limit = 256 if kind == "wordpiece" else 32
    path = minilm_path() / "tokenizer.json" if kind == "wordpiece" else byte_level_tokenizer(tmp_path)
    whole = TextTokenizer(Path(path), limit, truncate=True)
    rng = np.random.default_rng(LEFT_SEED)
    vocabulary = ["bread", "naïve", "Köln", "東京", "co-operate", "x", "12.5", "!", "well,", "unbelievable",
                  "a" * 600, "!" * 300, "aaaaaaa"]
    options = options_from_body({"truncation_direction": "left"})
    for _ in range(12):
        text = " ".join(rng.choice(vocabulary, size=int(rng.integers(900, 4000))))
        text += rng.choice(["", " " + "a" * 5001, "a" * 5001, " end."])
        prompt = str(rng.choice(["", "query: ", "abc", "Represent this"]))
        assert len(text) > limit * 16  # the suffix path
        full = whole.encode_full([prompt + text])[0]
        split = chunking.split_encoding(full.ids, full.offsets, prefix=len(whole.prefix), suffix=len(whole.suffix),
                                        prompt_chars=len(prompt), text_chars=len(text))
        kept = prepare(whole, [text], prompt, options, 2048).tokenized.sequences[0]
        assert np.array_equal(kept, chunking.truncate_left(split, limit)), (prompt, text[-80:])


@pytest.mark.parametrize("direction", ["right", "left"])
def test_a_text_refused_as_too_long_names_the_models_limit_and_no_other_number(direction):
    """With truncation off, a text too long to count whole is refused without a count: no bound of the
    counting shortcut (max_seq_length + its margin) shows up as if it were the model's."""
    from server.embedding import prepare
    from server.tokenizer import TextTokenizer

    strict = TextTokenizer(minilm_path() / "tokenizer.json", 256, truncate=False)
    options = options_from_body({"truncation_direction": direction})
    counted = message(lambda: prepare(strict, ["short", "word " * 300], "", options, 2048))
    assert counted.startswith("input 1 has 302 tokens, more than this model's max_seq_length 256")
    far = message(lambda: prepare(strict, ["short", "word " * 3000], "", options, 2048))
    assert far.startswith("input 1 has more tokens than this model's max_seq_length 256, and the server")
    assert "384" not in far and "more than 2" not in far

"""The offline ceiling: the raw ONNX Runtime session on the whole corpus, no HTTP, best batching found.

Every strategy times the full pipeline a server also pays (tokenize, order, pad, run), with the
server's own session options, after a warm-up; its throughput is the median over `passes` passes.
Each runs in two thread layouts on the same cores: the server's default (one caller with every CPU as
intra-op threads) and the tuned one (one caller thread per CPU sharing one session, one intra-op thread
each); the best row wins, and the best of each layout is kept too. `by_window` (the perf_analyzer
benchmark's ceiling) runs the default layout only, one window size per concurrency.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from benchmarks.onnx_model import (
    ModelFiles,
    OnnxEncoder,
    create_session,
    load_tokenizer,
    locate,
    pad,
)
from benchmarks.stats import summarize

Planner = Callable[[list[int]], list[list[int]]]
WINDOW_PREFIX = "windows of "


@dataclass(frozen=True)
class BatchingParams:
    max_batch_size: int
    max_batch_tokens: int
    batch_overhead_tokens: int

    def label(self) -> str:
        return f"plan_batches(size<={self.max_batch_size}, tokens<={self.max_batch_tokens}, overhead={self.batch_overhead_tokens})"


DEFAULT_PARAMS = BatchingParams(max_batch_size=64, max_batch_tokens=8192, batch_overhead_tokens=32)


def server_batching_params(config: Path | None) -> BatchingParams:
    """The batching limits the server would use for this model: config.pbtxt's, else the defaults."""
    if config is None:
        return DEFAULT_PARAMS
    from server.repository import PARAM_MAX_BATCH_TOKENS, RepositoryError, read_model_config

    try:
        model_config = read_model_config(config)
        tokens = model_config.parameters.get(PARAM_MAX_BATCH_TOKENS)
        return BatchingParams(
            max_batch_size=model_config.max_batch_size or DEFAULT_PARAMS.max_batch_size,
            max_batch_tokens=int(tokens.string_value) if tokens else DEFAULT_PARAMS.max_batch_tokens,
            batch_overhead_tokens=DEFAULT_PARAMS.batch_overhead_tokens,
        )
    except (RepositoryError, ValueError):
        return DEFAULT_PARAMS


def arrival_chunks(size: int) -> Planner:
    return lambda lengths: [list(range(i, min(i + size, len(lengths)))) for i in range(0, len(lengths), size)]


def sorted_chunks(size: int) -> Planner:
    def plan(lengths: list[int]) -> list[list[int]]:
        order = np.argsort(np.asarray(lengths), kind="stable").tolist()
        return [order[i : i + size] for i in range(0, len(order), size)]

    return plan


def planned(params: BatchingParams) -> Planner:
    from server.batching import plan_batches

    return lambda lengths: plan_batches(lengths, **asdict(params))


def windowed(params: BatchingParams, window: int) -> Planner:
    """plan_batches within each arrival-order window: the most a server with `window` requests in flight sees."""
    whole = planned(params)

    def plan(lengths: list[int]) -> list[list[int]]:
        batches = []
        for start in range(0, len(lengths), window):
            batches += [[start + i for i in batch] for batch in whole(lengths[start : start + window])]
        return batches

    return plan


def variants(params: BatchingParams) -> list[BatchingParams]:
    """The server's batching limits and a few neighbours, so the ceiling is the best of several splits."""
    size, tokens, overhead = params.max_batch_size, params.max_batch_tokens, params.batch_overhead_tokens
    found = {
        params,
        BatchingParams(size, tokens, max(1, overhead // 2)),
        BatchingParams(size, tokens, overhead * 2),
        BatchingParams(size * 2, tokens * 2, overhead),
    }
    return sorted(found, key=lambda p: (p.max_batch_size, p.batch_overhead_tokens))


def strategies(params: BatchingParams, arrival_order: bool = True, window: int = 64) -> dict[str, Planner]:
    chosen = {"arrival order, batches of 32": arrival_chunks(32)} if arrival_order else {}
    # Every split a server holding `window` texts could use (one text per run is `measure`'s single-text row).
    chosen.update(window_strategies(params, window, one_per_run=False))
    chosen["length-sorted, batches of 32"] = sorted_chunks(32)
    chosen.update({p.label(): planned(p) for p in variants(params)})
    return chosen


@dataclass(frozen=True)
class Layout:
    callers: int  # threads calling run() on the one session, each taking the next batch
    intra_op_threads: int

    def label(self) -> str:
        return f"{self.callers} thread(s) x {self.intra_op_threads} intra-op"


def layouts() -> list[Layout]:
    """The server's default layout first (one inference thread, every CPU as intra-op threads), then the tuned
    one (an instance per CPU, one intra-op thread each; the same layout when there is one CPU)."""
    from server.session import available_cpus

    cpus = available_cpus()
    return list(dict.fromkeys([Layout(1, cpus), Layout(cpus, 1)]))


def run_batched(encoder: OnnxEncoder, texts: Sequence[str], plan: Planner, callers: int = 1) -> float:
    """Seconds to embed every text: tokenize all, plan, then `callers` threads pad and run the batches."""
    start = time.perf_counter()
    encodings = encoder.tokenizer.encode_batch(list(texts))
    batches = iter(plan([len(e.ids) for e in encodings]))
    lock = threading.Lock()

    def caller() -> None:
        while True:
            with lock:
                batch = next(batches, None)
            if batch is None:
                return
            encoder.run(*pad([encodings[i] for i in batch]))

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


def single_latencies(encoder: OnnxEncoder, texts: Sequence[str]) -> list[float]:
    """Seconds per text, one text per run: the best a server could answer one lone request."""
    latencies = []
    for text in texts:
        start = time.perf_counter()
        encoder.run(*pad([encoder.tokenizer.encode(text)]))
        latencies.append(time.perf_counter() - start)
    return latencies


def measure(
    repository: str,
    model: str,
    texts: list[str],
    tokens: list[int],
    passes: int = 3,
    arrival_order: bool = True,
    window: int = 64,
) -> dict:
    """Run every strategy in every layout; returns throughput per row and single-text latency per layout."""
    files = locate(Path(repository), model)
    tokenizer = load_tokenizer(files.tokenizer, files.max_seq_length)
    total_tokens = sum(tokens)
    rows, single, best_by_layout, window_by_layout = [], {}, {}, {}
    for layout in layouts():
        encoder = warm_encoder(files, tokenizer, layout, texts)
        for label, plan in strategies(server_batching_params(files.config), arrival_order, window).items():
            seconds = [run_batched(encoder, texts, plan, layout.callers) for _ in range(passes)]
            rows.append(_row(f"{label} [{layout.label()}]", statistics.median(seconds), len(texts), total_tokens,
                             seconds))
            best = max(best_by_layout.get(layout.label(), 0.0), rows[-1]["texts_per_s"])
            best_by_layout[layout.label()] = best
            if label.startswith(WINDOW_PREFIX):
                window_by_layout[layout.label()] = max(window_by_layout.get(layout.label(), 0.0),
                                                       rows[-1]["texts_per_s"])
        latencies = single_latencies(encoder, texts)
        single[layout.label()] = {**summarize(latencies), "intra_op_threads": layout.intra_op_threads}
        rows.append(_row(f"one text per run [1 thread(s) x {layout.intra_op_threads} intra-op]", sum(latencies),
                         len(texts), total_tokens, [sum(latencies)]))
        # A server holding a window of requests may run them one at a time too.
        window_by_layout[layout.label()] = max(window_by_layout.get(layout.label(), 0.0), rows[-1]["texts_per_s"])
    best = max(rows, key=lambda r: r["texts_per_s"])
    served = layouts()[0]
    return {
        "model": model,
        "intra_op_threads": served.intra_op_threads,
        "layout": served.label(),
        "strategies": rows,
        "best": best["strategy"],
        "best_texts_per_s": best["texts_per_s"],
        "best_by_layout": best_by_layout,
        "single_latency": single[served.label()],
        "single_latency_by_layout": single,
        "window": window,
        "window_texts_per_s": max(window_by_layout.values(), default=math.nan),
        "window_by_layout": window_by_layout,
    }


def window_strategies(params: BatchingParams, window: int, one_per_run: bool = True) -> dict[str, Planner]:
    """How a server holding `window` requests of one text each could run them: one text per run (`one_per_run`),
    and, when it holds more than one, every batching split of `variants` within each arrival window of that size
    (no batch outgrows the window)."""
    if window < 1:
        raise ValueError("a window holds at least one text")
    chosen = {f"{WINDOW_PREFIX}{window} in arrival order, one text per run": arrival_chunks(1)} if one_per_run else {}
    if window > 1:
        within = dict.fromkeys(replace(p, max_batch_size=min(p.max_batch_size, window)) for p in variants(params))
        chosen.update({f"{WINDOW_PREFIX}{window} in arrival order, {p.label()} within each": windowed(p, window)
                       for p in within})
    return chosen


def by_window(repository: str, model: str, texts: list[str], windows: Sequence[int], passes: int = 3) -> dict:
    """The offline ceiling in the server's default layout, with the model's own batching limits, when it may
    only batch within arrival windows of each size (a closed loop of C clients sending one text each holds at
    most C texts). Strategies whose batches come out the same on these texts run once. Returns every
    strategy's row, and per window its best row."""
    files = locate(Path(repository), model)
    tokenizer = load_tokenizer(files.tokenizer, files.max_seq_length)
    served = layouts()[0]
    encoder = warm_encoder(files, tokenizer, served, texts)
    lengths = [len(e.ids) for e in tokenizer.encode_batch(list(texts))]
    params = server_batching_params(files.config)
    best: dict[int, dict] = {}
    rows = []
    for window in dict.fromkeys(windows):
        seen = set()
        for label, plan in window_strategies(params, window).items():
            batches = tuple(map(tuple, plan(lengths)))
            if batches in seen:
                continue
            seen.add(batches)
            seconds = [run_batched(encoder, texts, plan, served.callers) for _ in range(passes)]
            rows.append({"window": window, **_row(label, statistics.median(seconds), len(texts), sum(lengths),
                                                  seconds)})
            if rows[-1]["texts_per_s"] > best.get(window, {}).get("texts_per_s", 0.0):
                best[window] = rows[-1]
    return {"model": model, "layout": served.label(), "texts": len(texts), "passes": passes, "strategies": rows,
            "best_by_window": {str(w): row for w, row in best.items()}}


def warm_encoder(files: ModelFiles, tokenizer, layout: Layout, texts: Sequence[str]) -> OnnxEncoder:
    """The model's session with the server's options for `layout`'s intra-op threads, warmed up on a few texts."""
    from server.session import session_options

    encoder = OnnxEncoder(create_session(files.onnx, session_options(layout.intra_op_threads)), tokenizer)
    run_batched(encoder, texts[: min(len(texts), 256)], sorted_chunks(32), layout.callers)
    return encoder


def _row(label: str, seconds: float, texts: int, tokens: int, passes: list[float]) -> dict:
    return {
        "strategy": label,
        "seconds": seconds,
        "texts_per_s": texts / seconds,
        "tokens_per_s": tokens / seconds,
        "passes_s": passes,
    }

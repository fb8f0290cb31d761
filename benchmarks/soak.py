"""`python -m benchmarks.soak`: thousands of varied requests against our server, RSS sampled throughout.

Bounded in request count and time. RSS is flat when the largest sample of the last quarter is within
`--tolerance` of the median after warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from benchmarks.contenders import ContenderUnavailable, Setup, catalogue, started
from benchmarks.corpus import DEFAULT_SEED, DEFAULT_TSV, Corpus, load_corpus
from benchmarks.onnx_model import load_tokenizer, locate
from benchmarks.resources import Sampler

RESULTS = Path(__file__).resolve().parent / "results"
MB = 2**20
# (weight, fewest texts, most texts) per request
BATCH_SHAPE = ((0.60, 1, 1), (0.25, 2, 8), (0.12, 9, 64), (0.03, 65, 256))
INVALID_SHARE = 0.02


@dataclass(frozen=True)
class Verdict:
    warmup_s: float
    median_mb: float
    last_quarter_max_mb: float
    growth: float
    slope_mb_per_min: float
    flat: bool


def rss_verdict(samples: list[tuple[float, float]], warmup_fraction: float, tolerance: float) -> Verdict:
    """Judge (seconds, MB) samples: last-quarter max against the post-warm-up median."""
    if len(samples) < 8:
        raise ValueError("too few RSS samples to judge")
    end = samples[-1][0]
    warmup = end * warmup_fraction
    steady = [(t, mb) for t, mb in samples if t >= warmup]
    last_quarter = [mb for t, mb in samples if t >= end * 0.75]
    median = statistics.median(mb for _, mb in steady)
    peak = max(last_quarter)
    growth = peak / median - 1
    return Verdict(warmup, median, peak, growth, _slope(steady) * 60, growth <= tolerance)


def _slope(samples: list[tuple[float, float]]) -> float:
    """Least-squares MB per second."""
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_y = sum(y for _, y in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    return sum((t - mean_t) * (y - mean_y) for t, y in samples) / var if var else 0.0


def request_plan(corpus: Corpus, model: str, count: int, seed: int) -> list[dict]:
    """`count` seeded request bodies: varied batch sizes and formats, a few invalid on purpose."""
    rng = random.Random(seed)
    weights = [w for w, _, _ in BATCH_SHAPE]
    plan = []
    for _ in range(count):
        if rng.random() < INVALID_SHARE:
            plan.append(
                rng.choice(
                    [
                        {"model": model, "input": []},
                        {"model": "no-such-model", "input": "x"},
                        {"model": model, "input": "x", "encoding_format": "hex"},
                    ]
                )
            )
            continue
        _, fewest, most = rng.choices(BATCH_SHAPE, weights=weights)[0]
        texts = rng.sample(corpus.texts, rng.randint(fewest, most))
        plan.append(
            {
                "model": model,
                "input": texts[0] if len(texts) == 1 and rng.random() < 0.5 else texts,
                "encoding_format": rng.choice(["float", "base64"]),
            }
        )
    return plan


async def drive(url: str, plan: list[dict], concurrency: int, duration: float) -> Counter:
    import aiohttp

    outcomes: Counter = Counter()
    queue = iter(plan)
    deadline = time.monotonic() + duration

    async def client(session) -> None:
        for body in queue:
            if time.monotonic() > deadline:
                return
            try:
                async with session.post(url, json=body) as response:
                    await response.read()
                    outcomes[response.status] += 1
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                outcomes[type(exc).__name__] += 1

    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency), timeout=timeout
    ) as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
    return outcomes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--model-repository", type=Path, default=Path("models"))
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--duration", type=float, default=900.0, help="cap, seconds")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup-fraction", type=float, default=0.25)
    parser.add_argument("--tolerance", type=float, default=0.10)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--tsv", type=Path, default=DEFAULT_TSV)
    parser.add_argument("--quick", action="store_true", help="2000 requests, at most 90 s")
    parser.add_argument(
        "--out", type=Path, default=None, help="default benchmarks/results (quick: results/quick)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.duration = min(args.requests, 2000), min(args.duration, 90.0)
    args.out = args.out or (RESULTS / "quick" if args.quick else RESULTS)
    return args


def markdown(args: argparse.Namespace, verdict: Verdict, outcomes: Counter, elapsed: float, sent: int) -> str:
    state = "FLAT" if verdict.flat else "GROWING"
    return "\n".join(
        [
            "# Soak: RSS of `python -m server` under varied load",
            "",
            (
                f"{sent} requests in {elapsed:.0f} s (cap {args.requests} requests / {args.duration:.0f} s) at concurrency "
                f"{args.concurrency}: 1 to 256 texts per request, float and base64, {INVALID_SHARE:.0%} invalid on purpose."
            ),
            f"Outcomes: {dict(sorted((str(k), v) for k, v in outcomes.items()))}.",
            "",
            f"- warm-up: first {verdict.warmup_s:.0f} s ({args.warmup_fraction:.0%})",
            f"- post-warm-up median RSS: {verdict.median_mb:.1f} MB",
            f"- last-quarter max RSS: {verdict.last_quarter_max_mb:.1f} MB ({verdict.growth:+.1%}; tolerance {args.tolerance:.0%})",
            f"- post-warm-up trend: {verdict.slope_mb_per_min:+.2f} MB/min",
            f"- verdict: **{state}**",
            "",
            "![RSS over time](soak.png)",
            "",
        ]
    )


def plot(samples: list[tuple[float, float]], verdict: Verdict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(9, 4))
    axis.plot([t for t, _ in samples], [mb for _, mb in samples], label="server RSS")
    axis.axvline(verdict.warmup_s, color="grey", linestyle=":", label="end of warm-up")
    axis.axhline(verdict.median_mb, color="green", linestyle="--", label="post-warm-up median")
    axis.set_xlabel("seconds")
    axis.set_ylabel("MB")
    axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    files = locate(args.model_repository, args.model)
    corpus = load_corpus(
        load_tokenizer(files.tokenizer, files.max_seq_length), files.max_seq_length, tsv=args.tsv
    )
    plan = request_plan(corpus, args.model, args.requests, args.seed)
    with tempfile.TemporaryDirectory(prefix="soak-") as work_dir:
        contender = catalogue(Setup(args.model_repository, args.model, Path(), Path(work_dir)), files)[
            "ours"
        ]()
        try:
            with (
                started(contender, Path(work_dir)) as running,
                Sampler(running.process.pid, interval=0.5) as sampler,
            ):
                start = time.monotonic()
                outcomes = asyncio.run(
                    drive(running.url(contender.route), plan, args.concurrency, args.duration)
                )
                elapsed = time.monotonic() - start
        except ContenderUnavailable as exc:
            print(f"soak: our server did not start: {exc}", file=sys.stderr)
            return 2
    samples = [(t, rss / MB) for t, rss in sampler.samples]
    verdict = rss_verdict(samples, args.warmup_fraction, args.tolerance)
    sent = sum(outcomes.values())
    (args.out / "soak.json").write_text(
        json.dumps(
            {
                "samples": samples,
                "outcomes": dict(outcomes),
                "verdict": verdict.__dict__,
                "elapsed_s": elapsed,
            },
            default=str,
        )
    )
    (args.out / "soak.md").write_text(markdown(args, verdict, outcomes, elapsed, sent))
    plot(samples, verdict, args.out / "soak.png")
    print(markdown(args, verdict, outcomes, elapsed, sent))
    return 0 if verdict.flat else 1


if __name__ == "__main__":
    sys.exit(main())

"""Rendering a run: the machine's description, markdown tables, and the targets printed last."""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import subprocess
from collections.abc import Sequence

import psutil

from benchmarks.targets import Target

PACKAGES = (
    "onnxruntime",
    "torch",
    "sentence-transformers",
    "transformers",
    "tokenizers",
    "fastapi",
    "uvicorn",
    "aiohttp",
    "numpy",
)
SERVED_COLUMNS = (
    "contender",
    "load",
    "texts/s",
    "tokens/s",
    "p50 ms",
    "p99 ms",
    "probe p50 ms",
    "probe p99 ms",
    "errors",
    "RSS MB",
    "server CPU %",
    "gen CPU %",
    "other CPU %",
)


def machine() -> dict:
    return {
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "available_cpus": len(os.sched_getaffinity(0)),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in PACKAGES},
    }


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return platform.processor() or "unknown"
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return fields.get("Model name", "unknown").strip()


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def fmt(value, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def table(columns: Sequence[str], rows: Sequence[Sequence]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(fmt(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def load_label(point: dict) -> str:
    return (
        f"c={point['concurrency']}"
        if point["batch"] == 1
        else f"bulk {point['batch']}/req, c={point['concurrency']}"
    )


def served_rows(run: dict) -> list[list]:
    rows = []
    for name, entry in run["contenders"].items():
        for p in entry.get("points", []):
            rows.append(
                [
                    name,
                    load_label(p),
                    p["texts_per_s"],
                    p["tokens_per_s"],
                    p["p50_ms"],
                    p["p99_ms"],
                    p["probe_p50_ms"],
                    p["probe_p99_ms"],
                    p["errors"] + p["probe_errors"],
                    p["rss_mb"],
                    p["cpu_percent"],
                    p["generator_cpu_percent"],
                    p.get("other_cpu_percent"),
                ]
            )
    return rows


def ceiling_rows(ceiling: dict) -> list[list]:
    return [
        [s["strategy"], s["texts_per_s"], s["tokens_per_s"], s["seconds"]]
        for s in ceiling.get("strategies", [])
    ]


def targets_rows(targets: Sequence[Target]) -> list[list]:
    return [[t.name, t.measured(), t.wanted(), t.verdict] for t in targets]


def markdown(run: dict, targets: Sequence[Target]) -> str:
    m, s, c = run["machine"], run["settings"], run["corpus"]
    ceiling = run.get("ceiling") or {}
    single = ceiling.get("single_latency") or {}
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    parts = [
        "# Benchmark results",
        f"Run {run['started']} with `{run['command']}` ({run['elapsed_s']:.0f} s).",
        "## Machine",
        (
            f"- CPU: {m['cpu']}; {m['logical_cpus']} logical CPUs ({m['available_cpus']} available); {m['memory_gib']} GiB; "
            f"Linux {m['kernel']}; Python {m['python']}"
        ),
        f"- {versions}; infinity-emb {run.get('infinity_version', '-')} (own venv)",
        "- Shared machine: other work may run at the same time; compare ratios within this run, not across runs.",
        "## Workload",
        (
            f"- Corpus: {c['texts']} texts from STS-B dev sentences joined to varied lengths (seed {s['seed']}), "
            f"mean {c['mean_tokens']:.1f} tokens, max {c['max_tokens']}, {c['short_le_32']} of <= 32 tokens, "
            f"{c['truncated']} cut at max_seq_length {s['max_seq_length']}."
        ),
        (
            f"- Closed-loop aiohttp clients in their own process, one text per request at concurrency {s['concurrency']}, "
            f"and bulk requests of {s['bulk_size']} texts at concurrency {s['bulk_concurrency']}; each point: "
            f"{s['warmup_s']} s warm-up, then up to {s['passes']} corpus pass(es) or {s['duration_s']} s, whichever first; "
            f"`encoding_format` {s['encoding_format']}."
        ),
        (
            f"- A probe in another process GETs each contender's health route every {s['probe_interval_ms']} ms "
            "(keep-alive) during the measured window; its latency is the event loop's responsiveness."
        ),
        (
            "- RSS and CPU are the server's whole process tree (psutil), RSS the peak over the point; gen CPU is the "
            "load generator's own, other CPU everything else on the machine (probe, other users: noise) (100 % = one core)."
        ),
        "## Offline ceiling (raw ONNX Runtime session, no HTTP)",
        (
            f"Model {ceiling.get('model', '-')}, server session options, intra-op threads {ceiling.get('intra_op_threads', '-')}; "
            f"whole pipeline timed (tokenize, order, pad, run). Single-text latency p50 {fmt(single.get('p50_ms'), 2)} ms, "
            f"p99 {fmt(single.get('p99_ms'), 2)} ms."
        ),
        table(("strategy", "texts/s", "tokens/s", "seconds"), ceiling_rows(ceiling))
        if ceiling.get("strategies")
        else f"Ceiling not measured: {ceiling.get('error', 'skipped')}",
        "## Served",
        table(SERVED_COLUMNS, served_rows(run)),
        "Contenders: "
        + "; ".join(f"**{n}**: {e['description']}" for n, e in run["contenders"].items())
        + ".",
    ]
    skipped = {n: e["skipped"] for n, e in run["contenders"].items() if e.get("skipped")}
    if skipped:
        parts += ["Skipped: " + "; ".join(f"**{n}**: {reason}" for n, reason in skipped.items())]
    parts += ["## Targets", table(("target", "measured", "threshold", "result"), targets_rows(targets))]
    if run.get("notes"):
        parts += ["## Notes", *[f"- {note}" for note in run["notes"]]]
    parts += ["## Plot", "![throughput and probe latency vs concurrency](plot.png)"]
    return "\n\n".join(parts) + "\n"


def console(run: dict, targets: Sequence[Target]) -> str:
    lines = [table(SERVED_COLUMNS, served_rows(run)), ""]
    if run.get("ceiling", {}).get("strategies"):
        lines += [
            table(("ceiling strategy", "texts/s", "tokens/s", "seconds"), ceiling_rows(run["ceiling"])),
            "",
        ]
    lines += ["Targets:"] + [f"  {t.describe()}" for t in targets]
    return "\n".join(lines)

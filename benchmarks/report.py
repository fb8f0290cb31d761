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


def bullets(lines: Sequence[str]) -> str:
    return "\n".join(f"- {line}" for line in lines)


def machine_section(run: dict) -> list[str]:
    m = run["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    return [
        "## Machine",
        bullets(
            [
                (
                    f"CPU: {m['cpu']}; {m['logical_cpus']} logical CPUs ({m['available_cpus']} available); "
                    f"{m['memory_gib']} GiB; Linux {m['kernel']}; Python {m['python']}"
                ),
                (
                    f"{versions}; infinity-emb {run.get('infinity_version', '-')}, nvidia-pytriton "
                    f"{run.get('pytriton_version', '-')} (each in its own venv)"
                ),
                (
                    "Shared machine: other work may run at the same time (see other CPU %); compare ratios within this "
                    "run, not across runs."
                ),
            ]
        ),
    ]


def workload_section(run: dict) -> list[str]:
    s, c = run["settings"], run["corpus"]
    return [
        "## Workload",
        bullets(
            [
                (
                    f"Corpus: {c['texts']} texts from STS-B dev sentences joined to varied lengths (seed {s['seed']}), "
                    f"mean {c['mean_tokens']:.1f} tokens, max {c['max_tokens']}, {c['short_le_32']} of <= 32 tokens, "
                    f"{c['truncated']} cut at max_seq_length {s['max_seq_length']}."
                ),
                (
                    f"Closed-loop keep-alive HTTP/1.1 clients (a lean asyncio client, prebuilt requests, every reply parsed "
                    f"and its embeddings counted) in their own process, one text per request at concurrency "
                    f"{', '.join(map(str, s['concurrency']))}, and bulk requests of {s['bulk_size']} texts at concurrency "
                    f"{s['bulk_concurrency']}; each point: {s['warmup_s']} s warm-up, then up to {s['passes']} corpus "
                    f"pass(es) or {s['duration_s']} s, whichever first; `encoding_format` {s['encoding_format']}."
                ),
                (
                    f"A probe in another process GETs each contender's health route every {s['probe_interval_ms']} ms "
                    "(keep-alive) during the measured window, at a raised scheduling priority (nice -10 where permitted) so "
                    "that its own wake-ups are not what it measures: the event loop's responsiveness."
                ),
                (
                    "RSS and server CPU cover the server's whole process tree (psutil), RSS the peak over the point; gen "
                    "CPU is the load generator's own; other CPU is everything else on the machine (probe, other users: "
                    "noise); 100 % = one core."
                ),
            ]
        ),
    ]


def ceiling_section(run: dict) -> list[str]:
    return _ceiling_parts(run.get("ceiling") or {}, "## Offline ceiling")


def second_model_section(run: dict) -> list[str]:
    second = run.get("second_model")
    if not second:
        return []
    c = second["corpus"]
    about = (
        f"The ours-mpnet contender serves {second['model']} (fp32) on a {c['texts']}-text corpus of the same "
        f"recipe (mean {c['mean_tokens']:.1f} tokens with its tokenizer, {c['truncated']} cut at "
        "max_seq_length)."
    )
    ceiling = _ceiling_parts(second.get("ceiling") or {}, f"### Offline ceiling, {second['model']}")
    return [f"## Second model: {second['model']}", about, *ceiling]


def _ceiling_parts(ceiling: dict, heading: str) -> list[str]:
    if not ceiling.get("strategies"):
        return [heading, f"Not measured: {ceiling.get('error', 'skipped')}"]
    layout = ceiling.get("layout") or f"1 thread(s) x {ceiling.get('intra_op_threads')} intra-op"
    by_layout = ceiling.get("single_latency_by_layout") or {layout: ceiling["single_latency"]}
    singles = "; ".join(
        f"{name}: p50 {fmt(s['p50_ms'], 2)} ms, p99 {fmt(s['p99_ms'], 2)} ms" for name, s in by_layout.items()
    )
    best = "; ".join(f"{name}: {fmt(v)} texts/s" for name, v in (ceiling.get("best_by_layout") or {}).items())
    return [
        f"{heading} (raw ONNX Runtime session, no HTTP)",
        (
            f"Model {ceiling['model']}, the server's session options (inter-op 1, sequential, ORT_ENABLE_ALL), "
            f"every strategy in each thread layout on the same cores (the server's default: {layout}), "
            f"measured {ceiling.get('measured', 'at the start of the run')}; the whole pipeline is timed "
            f"(tokenize, order, pad, run), median of passes. Best per layout: {best or '-'}. Single text, "
            f"one per run ({singles}); the c=1 targets compare with the server's default layout."
        ),
        table(("strategy", "texts/s", "tokens/s", "seconds"), ceiling_rows(ceiling)),
    ]


def served_section(run: dict) -> list[str]:
    described = bullets([f"**{n}**: {e['description']}" for n, e in run["contenders"].items()])
    parts = ["## Served", table(SERVED_COLUMNS, served_rows(run)), described]
    skipped = [f"**{n}** skipped: {e['skipped']}" for n, e in run["contenders"].items() if e.get("skipped")]
    return parts + ([bullets(skipped)] if skipped else [])


def _served_points(run: dict, exclude: str = "null"):
    for name, entry in run["contenders"].items():
        if name != exclude:
            for point in entry.get("points", []):
                yield name, point


def generator_notes(run: dict) -> list[str]:
    found = []
    for p in run["contenders"].get("null", {}).get("points", []):
        same = [
            q["texts_per_s"]
            for _, q in _served_points(run)
            if (q["concurrency"], q["batch"]) == (p["concurrency"], p["batch"])
        ]
        if same:
            found.append(
                f"Load generator check ({load_label(p)}): {p['texts_per_s']:,.0f} texts/s against a canned server, "
                f"{p['texts_per_s'] / max(same):.1f}x the fastest contender at that load."
            )
    busiest = [
        p["generator_cpu_percent"]
        for _, p in _served_points(run)
        if not math.isnan(p["generator_cpu_percent"])
    ]
    if busiest:
        found.append(
            f"Load generator CPU (its own process) peaked at {max(busiest):.0f} % of one core against a real contender."
        )
    return found


def batching_notes(run: dict) -> list[str]:
    found = [
        f"{name} ({load_label(p)}): {p['mean_batch']:.1f} texts per model run on average (server /metrics)."
        for name, p in _served_points(run)
        if p.get("mean_batch")
    ]
    return found


def window_note(run: dict) -> list[str]:
    ceiling = run.get("ceiling") or {}
    window = ceiling.get("window")
    ours = next(
        (
            p
            for p in run["contenders"].get("ours", {}).get("points", [])
            if p["concurrency"] == window and p["batch"] == 1
        ),
        None,
    )
    if not window or not ours:
        return []
    return [
        (
            f"With {window} clients a server never holds more than {window} texts, so the whole-corpus sort is out of "
            f"its reach: the ceiling restricted to arrival windows of {window} does "
            f"{ceiling['window_texts_per_s']:.1f} texts/s, and ours at c={window} reaches "
            f"{ours['texts_per_s'] / ceiling['window_texts_per_s']:.2f}x of that."
        )
    ]


def notes(run: dict) -> list[str]:
    found = generator_notes(run) + batching_notes(run) + window_note(run)
    if run["contenders"].get("triton", {}).get("points"):
        found.append(
            "Triton (PyTriton) is driven through its KServe v2 HTTP route with JSON tensors (TEXT [1, 1] in, "
            "sentence_embedding out), the only protocol both servers share; its Python callable tokenizes "
            "with the published tokenizer.json and runs the same model.onnx. perf_analyzer's numbers for "
            "both servers come from `python -m benchmarks.perf` (results/perf_analyzer_<model>.md)."
        )
    if run["contenders"].get("infinity", {}).get("points"):
        found.append(
            "Infinity truncates at the model's max_position_embeddings (512), not 256, so its few long texts cost "
            "it more; with optimum 2.x its own ONNX optimization pass fails and it serves the plain export."
        )
    return found


def markdown(run: dict, targets: Sequence[Target]) -> str:
    parts = [
        "# Benchmark results",
        f"Run {run['started']} with `{run['command']}` ({run['elapsed_s']:.0f} s).",
        *machine_section(run),
        *workload_section(run),
        *ceiling_section(run),
        *second_model_section(run),
        *served_section(run),
        "## Targets",
        table(("target", "measured", "threshold", "result"), targets_rows(targets)),
    ]
    if run.get("notes"):
        parts += ["## Notes", bullets(run["notes"])]
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

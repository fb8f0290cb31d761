"""`python -m benchmarks.perf`: Triton's own load generator, perf_analyzer, against this server, Triton and the floor.

A second client, independent of the project's: the same command for every server and both protocols (KServe
v2 over HTTP and over gRPC, a BYTES input `TEXT` of one STS-B dev sentence per request, closed loop at each
concurrency):

    perf_analyzer -i http|grpc -u HOST:PORT -m MODEL --input-data texts.json --shape TEXT:1 --concurrency-range C:C

Each server is started alone on a repository holding only the model (the benchmark's contenders `ours` and `triton`,
and `floor`: the two protocol stacks in one process with canned answers and no model, at the concurrencies up to
FLOOR_MAX_CONCURRENCY), its RSS and CPU sampled over each point; at each concurrency the protocols run one after the
other on the same server, in `--rounds` rounds whose order alternates (HTTP, gRPC, then gRPC, HTTP, ...), so that
neither protocol always runs first on a machine whose speed drifts; a point is the median of its good rounds, and
every round, failed or not, is kept in the results. Prints texts/s, p50/p99 per point, issue 15's ratios (ours vs
Triton, HTTP) and issue 17's (our gRPC vs our HTTP; reported beside it, Triton's own gRPC vs HTTP, the floor's, and
the server CPU per request of each protocol), and writes `perf_analyzer_<model>.{json,md}` to the results folder.

Before the servers start (`--no-ceiling` skips it), the offline ceiling runs the same sentences through raw
ONNX Runtime in the server's default layout, one text per run or batches only within arrival windows of each
concurrency's size: beside the targets it reports how far ours is from it and the most ours / Triton could be
on this machine.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks import report
from benchmarks.ceiling import by_window as ceiling_by_window
from benchmarks.contenders import Contender, ContenderUnavailable, Setup, catalogue, free_port, started
from benchmarks.corpus import DEFAULT_TSV, read_sentences
from benchmarks.onnx_model import locate
from benchmarks.resources import Sampler
from benchmarks.stats import ratio
from benchmarks.targets import INFO, Target, difference
from server.repository import TEXT_INPUT

RESULTS = Path(__file__).resolve().parent / "results"
SERVERS = ("ours", "triton", "floor")
# The floor (canned answers) is measured up to this concurrency: beyond it a canned HTTP server answers ~20,000
# requests/s on this project's machines, and perf_analyzer's stabilization never ends.
FLOOR_MAX_CONCURRENCY = 8
PROTOCOLS = ("http", "grpc")
MB = 2**20
US_PER_MS = 1000.0


@dataclass(frozen=True)
class Client:
    """perf_analyzer as run for every point: the binary, the input data, the window and extra arguments."""

    binary: str
    data: Path
    interval_ms: int
    extra: tuple[str, ...]
    csv_dir: Path

    def argv(self, port: int, model: str, concurrency: int, interval_ms: int, csv: Path, protocol: str = "http"
             ) -> list[str]:
        return command(self.binary, port, model, self.data, concurrency, csv, interval_ms, self.extra, protocol)


@dataclass(frozen=True)
class PerfPoint:
    concurrency: int
    texts_per_s: float
    p50_ms: float
    p99_ms: float
    rss_mb: float
    cpu_percent: float
    error: str = ""
    protocol: str = "http"
    rounds: tuple[tuple[float, float], ...] = ()  # (texts/s, p50 ms) of every round when there were several


def median_round(measured: Sequence[PerfPoint]) -> PerfPoint:
    """One point for the rounds of one protocol at one concurrency: the median of the good rounds' texts/s, p50,
    p99 and CPU each (the mean of the two middle values when their number is even), the peak RSS of all. A
    failed round is not a measurement: it stays in `rounds` as NaN and the point's error counts it; when every
    round failed the point is the last failure. The error names the first failed round's reason."""
    good = [p for p in measured if _measured(p)]
    if not good:
        return measured[-1]
    failed = len(measured) - len(good)
    reason = next((p.error for p in measured if p.error), "")
    return dataclasses.replace(
        good[0],
        texts_per_s=statistics.median(p.texts_per_s for p in good),
        p50_ms=statistics.median(p.p50_ms for p in good),
        p99_ms=statistics.median(p.p99_ms for p in good),
        cpu_percent=statistics.median(p.cpu_percent for p in good),
        rss_mb=max(p.rss_mb for p in measured if not math.isnan(p.rss_mb)),
        error=f"{failed} of {len(measured)} rounds failed ({reason[:160]})" if failed else "",
        rounds=tuple((p.texts_per_s, p.p50_ms) if _measured(p) else (math.nan, math.nan) for p in measured)
        if len(measured) > 1 else (),
    )


def _measured(found: PerfPoint) -> bool:
    return not found.error and not math.isnan(found.texts_per_s)


def round_orders(protocols: Sequence[str], rounds: int) -> list[tuple[str, ...]]:
    """The protocols' order in each round: as given, then reversed, alternating."""
    return [tuple(protocols) if index % 2 == 0 else tuple(reversed(protocols)) for index in range(rounds)]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.perf",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model-repository", type=Path, default=Path("models"))
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument(
        "--servers", default=",".join(SERVERS),
        help="comma-separated, of: ours, triton, floor (the protocol stacks with canned answers and no model, "
             f"measured at concurrencies up to {FLOOR_MAX_CONCURRENCY})",
    )
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument("--protocols", default=",".join(PROTOCOLS), help="comma-separated, of: http, grpc")
    parser.add_argument("--perf-analyzer", help="the binary (default: next to python, else on PATH)")
    parser.add_argument(
        "--measurement-interval", type=int, default=5000, help="perf_analyzer's window, ms (its default)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3,
        help="measurements per point, protocols alternating in order; the point is their median",
    )
    parser.add_argument("--pa-args", default="", help="further perf_analyzer arguments (shell-quoted)")
    parser.add_argument("--tsv", type=Path, default=DEFAULT_TSV, help="STS-B file: its sentences are input")
    parser.add_argument("--triton-intra-op", type=int, default=None, help="ORT intra-op threads in Triton")
    parser.add_argument("--server-args", default="", help="more `python -m server` arguments (shell-quoted)")
    parser.add_argument(
        "--ceiling", action=argparse.BooleanOptionalAction, default=True,
        help="first measure the offline ceiling on the same sentences (the server's default layout and the "
             "model's batching limits, whatever --server-args says), batching within arrival windows of each "
             "concurrency, and report what it bounds",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.concurrency = list(dict.fromkeys(int(c) for c in args.concurrency.split(",") if c))
    if not args.concurrency or min(args.concurrency) < 1:
        parser.error("--concurrency: positive integers")
    if args.rounds < 1:
        parser.error("--rounds: at least 1")
    args.servers = [s for s in args.servers.split(",") if s]
    unknown = set(args.servers) - set(SERVERS)
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    args.protocols = [p for p in args.protocols.split(",") if p]
    if not args.protocols or set(args.protocols) - set(PROTOCOLS):
        parser.error(f"--protocols: a comma-separated list of {', '.join(PROTOCOLS)}")
    return args


def find_perf_analyzer(explicit: str | None) -> str:
    """The perf_analyzer binary: `explicit`, else the one next to this interpreter (`make perf-analyzer`),
    else the one on PATH."""
    beside_python = str(Path(sys.executable).parent / "perf_analyzer")
    candidates = [explicit] if explicit else [beside_python, "perf_analyzer"]
    for candidate in candidates:
        found = shutil.which(candidate)
        if found:
            return found
    raise SystemExit(f"perf_analyzer not found ({', '.join(candidates)}): `make perf-analyzer` installs it")


def input_data(sentences: Sequence[str], path: Path) -> Path:
    """perf_analyzer's --input-data file: one step per sentence, each the BYTES input TEXT of one element."""
    steps = [{TEXT_INPUT: [sentence]} for sentence in sentences]
    path.write_text(json.dumps({"data": steps}, ensure_ascii=False), encoding="utf-8")
    return path


def command(
    binary: str,
    port: int | str,
    model: str,
    data: Path,
    concurrency: int | str,
    csv_path: Path,
    interval_ms: int,
    extra: Sequence[str] = (),
    protocol: str = "http",
) -> list[str]:
    return [
        binary, "-i", protocol, "-u", f"127.0.0.1:{port}", "-m", model, "--input-data", str(data),
        "--shape", "TEXT:1", "--concurrency-range", f"{concurrency}:{concurrency}",
        "--measurement-interval", str(interval_ms), "-f", str(csv_path), *extra,
    ]  # fmt: skip


def parse_csv(text: str) -> dict:
    """texts/s and latency percentiles (ms) from perf_analyzer's -f CSV (one row per concurrency; latencies
    in microseconds; one inference is one text here)."""
    rows = list(csv.DictReader(text.splitlines()))
    if not rows:
        raise ValueError("perf_analyzer wrote no measurement")
    row = rows[-1]
    return {
        "concurrency": int(row["Concurrency"]),
        "texts_per_s": float(row["Inferences/Second"]),
        "p50_ms": float(row["p50 latency"]) / US_PER_MS,
        "p99_ms": float(row["p99 latency"]) / US_PER_MS,
    }


def grpc_port(running) -> int:
    """The server's gRPC port, as its command line gives it (the last `--grpc-port` wins, as in argparse)."""
    args = list(running.process.args)
    found = [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == "--grpc-port"]
    if not found or not found[-1].isdigit() or int(found[-1]) == 0:
        raise ValueError(f"{running.contender.name} has no fixed --grpc-port on its command line")
    return int(found[-1])


def measure_point(running, client: Client, concurrency: int, protocol: str = "http") -> PerfPoint:
    """One perf_analyzer run at `concurrency` over `protocol`; when it finds no stable window (a busy machine),
    once more with windows twice as long."""
    port = running.port if protocol == "http" else grpc_port(running)
    label = running.contender.name + ("" if protocol == "http" else f"-{protocol}")
    with Sampler(running.process.pid) as sampler:
        sampler.mark_start()
        for interval in (client.interval_ms, 2 * client.interval_ms):
            csv_path = client.csv_dir / f"{label}-c{concurrency}-{interval}ms.csv"
            argv = client.argv(port, running.contender.model, concurrency, interval, csv_path, protocol)
            result = run_perf_analyzer(argv, interval)
            if result.returncode == 0 or "stable measurement" not in result.stderr + result.stdout:
                break
        sampler.mark_stop()
    rss, cpu = sampler.peak_rss() / MB, sampler.cpu_percent()
    if result.returncode != 0 or not csv_path.is_file():
        reason = f"exit {result.returncode}: " + " ".join((result.stderr or result.stdout).split())[-500:]
        return PerfPoint(concurrency, math.nan, math.nan, math.nan, rss, cpu, reason, protocol)
    parsed = parse_csv(csv_path.read_text())
    return PerfPoint(concurrency, parsed["texts_per_s"], parsed["p50_ms"], parsed["p99_ms"], rss, cpu, "", protocol)


def run_perf_analyzer(argv: list[str], interval_ms: int) -> subprocess.CompletedProcess:
    timeout = 12 * interval_ms / 1000 + 180  # perf_analyzer's 10 windows at most, and its start-up
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 1, "", f"timed out after {timeout:.0f} s")


def run_server(contender: Contender, client: Client, concurrencies: Sequence[int], log_dir: Path,
               protocols: Sequence[str] = ("http",), rounds: int = 1) -> dict:
    """Every concurrency, and at each the protocols on the same server, `rounds` times in alternating order;
    a point is the median of its protocol's rounds."""
    entry = {"description": contender.description, "points": []}
    with started(contender, log_dir) as running:
        for concurrency in concurrencies:
            measured: dict[str, list[PerfPoint]] = {protocol: [] for protocol in protocols}
            for order in round_orders(protocols, rounds):
                for protocol in order:
                    found = _measure_or_fail(running, client, concurrency, protocol)
                    _show(contender.name, found)
                    measured[protocol].append(found)
            for protocol in protocols:
                point_found = median_round(measured[protocol])
                if rounds > 1:
                    _show(contender.name, point_found, "median of rounds")
                entry["points"].append(dataclasses.asdict(point_found))
    return entry


def _measure_or_fail(running, client: Client, concurrency: int, protocol: str) -> PerfPoint:
    try:
        return measure_point(running, client, concurrency, protocol)
    except ValueError as exc:
        return PerfPoint(concurrency, math.nan, math.nan, math.nan, math.nan, math.nan, str(exc), protocol)


def _show(name: str, found: PerfPoint, what: str = "") -> None:
    shown = name if found.protocol == "http" else f"{name} {found.protocol}"
    print(f"  [{shown}] c={found.concurrency}{f' ({what})' if what else ''}: {found.texts_per_s:.1f} texts/s, "
          f"p50 {found.p50_ms:.1f} ms, p99 {found.p99_ms:.1f} ms, RSS {found.rss_mb:.0f} MB {found.error}",
          flush=True)


def point(results: dict, server: str, concurrency: int, protocol: str = "http") -> dict:
    for found in (results.get("servers", {}).get(server) or {}).get("points", []):
        if (found["concurrency"] == concurrency and found.get("protocol", "http") == protocol
                and not math.isnan(found["texts_per_s"])):  # a point some of whose rounds failed still counts
            return found
    return {}


def evaluate(results: dict) -> list[Target]:
    """Issue 15's perf_analyzer targets: ours vs Triton at c=64 and c=8, and a lone request's p50."""

    def speedup(c: int) -> float:
        ours, triton = point(results, "ours", c), point(results, "triton", c)
        return ratio(ours.get("texts_per_s"), triton.get("texts_per_s"))

    ours_p50, triton_p50 = point(results, "ours", 1).get("p50_ms"), point(results, "triton", 1).get("p50_ms")
    return [
        Target("perf_analyzer c=64: ours / Triton texts/s", speedup(64), 2.5),
        Target("perf_analyzer c=8: ours / Triton texts/s", speedup(8), 2.0),
        Target(
            "perf_analyzer c=1: ours p50 - Triton p50",
            difference(ours_p50, triton_p50),
            0.0,
            True,
            "ms",
        ),
        *grpc_targets(results),
        *ceiling_bounds(results),
    ]


def ceiling_bounds(results: dict) -> list[Target]:
    """Reported, not judged: at each concurrency C, the offline ceiling running one text at a time or batches
    within arrival windows of C texts (what C clients sending one text each let a server hold) over Triton's
    texts/s, the most ours / Triton could be on this machine, and ours against that ceiling. None without a
    ceiling (`--no-ceiling`)."""
    by_window = (results.get("ceiling") or {}).get("best_by_window") or {}
    targets = []
    for window, best in sorted(by_window.items(), key=lambda item: int(item[0])):
        c, bound = int(window), best["texts_per_s"]
        targets += [
            Target(f"perf_analyzer c={c}: windows-of-{c} offline ceiling / Triton texts/s (the most ours / Triton "
                   "can be)", ratio(bound, point(results, "triton", c).get("texts_per_s")), INFO),
            Target(f"perf_analyzer c={c}: ours / windows-of-{c} offline ceiling",
                   ratio(point(results, "ours", c).get("texts_per_s"), bound), INFO),
        ]
    return targets


def grpc_targets(results: dict) -> list[Target]:
    """Issue 17's: our gRPC at least as fast as our HTTP at every concurrency, and a lone request's p50 lower;
    beside them, reported and not judged, the same two comparisons on Triton itself, measured the same way in
    the same run. No rows when no gRPC point was measured (`--protocols http`)."""
    ours = _protocol_rows(results, "ours", "ours", judged=True)
    if not ours:
        return []
    triton = _protocol_rows(results, "triton", "Triton", judged=False, note=" (the same comparison on Triton)")
    floor = _protocol_rows(results, "floor", "floor", judged=False,
                           note=" (the protocol stacks alone, canned answers)")
    costs = [*_cpu_rows(results, "ours", ""), *_cpu_rows(results, "floor", " (the protocol stacks alone)")]
    return ours + triton + floor + costs


def cpu_us_per_request(found: dict) -> float:
    """The server's CPU time per request (one text each), in microseconds, estimated: its CPU % (every thread of
    the process) sampled over the whole perf_analyzer run, start-up and stabilization windows included, at the
    texts/s of the measured window; for a point of several rounds, the median CPU % at the median texts/s. NaN
    without both."""
    cpu, texts = found.get("cpu_percent", math.nan), found.get("texts_per_s", math.nan)
    if not texts or math.isnan(cpu) or math.isnan(texts):
        return math.nan
    return cpu / 100 * 1e6 / texts


def _cpu_rows(results: dict, server: str, note: str) -> list[Target]:
    """Reported: `server`'s CPU per request over gRPC minus over HTTP at each concurrency with both measured."""
    points = (results.get("servers", {}).get(server) or {}).get("points", [])
    concurrencies = sorted({p["concurrency"] for p in points if p.get("protocol") == "grpc"})
    return [
        Target(f"perf_analyzer c={c}: {server} server CPU per request, gRPC - HTTP{note}",
               difference(cpu_us_per_request(point(results, server, c, "grpc")),
                          cpu_us_per_request(point(results, server, c))), INFO, True, "us")
        for c in concurrencies
    ]


def _protocol_rows(results: dict, server: str, label: str, *, judged: bool, note: str = "") -> list[Target]:
    """`server`'s gRPC / HTTP texts/s at each concurrency and its c=1 gRPC p50 - HTTP p50, named with `label`
    and `note`; judged (gRPC at least as fast, p50 not higher) or reported only; [] without gRPC points."""
    points = (results.get("servers", {}).get(server) or {}).get("points", [])
    if not any(p.get("protocol") == "grpc" for p in points):
        return []
    concurrencies = sorted({p["concurrency"] for p in points})
    targets = [
        Target(f"perf_analyzer c={c}: {label} gRPC / HTTP texts/s{note}",
               ratio(point(results, server, c, "grpc").get("texts_per_s"),
                     point(results, server, c).get("texts_per_s")), 1.0 if judged else INFO)
        for c in concurrencies
    ]
    grpc_p50, http_p50 = point(results, server, 1, "grpc").get("p50_ms"), point(results, server, 1).get("p50_ms")
    targets.append(Target(f"perf_analyzer c=1: {label} gRPC p50 - HTTP p50{note}",
                          difference(grpc_p50, http_p50),
                          0.0 if judged else INFO, True, "ms"))
    return targets


def _rounds_cell(found: dict) -> str:
    """Every round's texts/s (p50 ms) in the order measured, 'failed' for a failed one; '-' for one round."""
    return " / ".join("failed" if math.isnan(texts) else f"{texts:.1f} ({p50:.1f})"
                      for texts, p50 in found.get("rounds") or ()) or "-"


def _rounds_sentence(results: dict) -> str:
    rounds, protocols = results.get("rounds", 1), results.get("protocols", ["http"])
    order = ""
    if len(protocols) > 1 and rounds > 1:
        shown = [p.upper() if p == "http" else "gRPC" for p in protocols]
        order = (f"; at each concurrency the protocols alternate in order from round to round ({', '.join(shown)}, "
                 f"then {', '.join(reversed(shown))})")
    return (f"Each point is the median of its good rounds, of {rounds}{order}; every round is listed with its "
            "texts/s and p50.")


def markdown(results: dict, targets: Sequence[Target]) -> str:
    columns = ("server", "load", "texts/s", "p50 ms", "p99 ms", "RSS MB", "server CPU %", "CPU us / request",
               "rounds: texts/s (p50 ms)", "error")
    rows = [
        [name if p.get("protocol", "http") == "http" else f"{name} ({p['protocol']})", f"c={p['concurrency']}",
         p["texts_per_s"], p["p50_ms"], p["p99_ms"], p["rss_mb"], p["cpu_percent"], cpu_us_per_request(p),
         _rounds_cell(p), p["error"] or "-"]
        for name, entry in results["servers"].items()
        for p in entry.get("points", [])
    ]  # fmt: skip
    servers = results["servers"].items()
    described = [f"**{n}**: {e['description']}" for n, e in servers]
    described += [f"**{n}** skipped: {e['skipped']}" for n, e in servers if e.get("skipped")]
    protocols = " and ".join("gRPC" if p == "grpc" else "HTTP" for p in results.get("protocols", ["http"]))
    parts = [
        f"# perf_analyzer: this server, Triton and the protocol floor, KServe v2 over {protocols}",
        (f"Run {results['started']} with `{results['command']}` ({results['elapsed_s']:.0f} s), model "
         f"{results['model']}, {results['sentences']} STS-B dev sentences as input data, one per request."),
        f"Command per point: `{results['perf_analyzer_command']}`",
        _rounds_sentence(results),
        report.table(columns, rows),
        report.bullets(described),
        *_ceiling_section(results.get("ceiling")),
        "## Targets",
        report.table(("target", "measured", "threshold", "result"), report.targets_rows(targets)),
    ]
    return "\n\n".join(parts) + "\n"


def _ceiling_section(measured: dict | None) -> list[str]:
    if not measured:
        return []
    texts = measured["texts"]
    rows = [[f"c={w}", row["texts_per_s"], " / ".join(f"{texts / s:.1f}" for s in row["passes_s"]), row["strategy"]]
            for w, row in sorted(measured["best_by_window"].items(), key=lambda item: int(item[0]))]
    return [
        "## Offline ceiling on the same sentences",
        (f"Raw ONNX Runtime on the {texts} sentences, no server and no client, in the server's default layout "
         f"({measured['layout']}) with the model's batching limits, measured before the servers started (median "
         f"of {measured['passes']} passes; strategies whose batches come out the same run once): at each "
         "concurrency C it may run one text at a time or batch within arrival windows of C sentences, as many as "
         "C clients sending one each let a server hold. An estimate, not a proof: a server's window slides, and "
         "here the load generator shares the cores."),
        report.table(("load", "ceiling texts/s", "passes: texts/s", "best strategy"), rows),
    ]


def concurrencies_for(server: str, concurrencies: Sequence[int]) -> list[int]:
    """The concurrencies `server` is measured at: all of them, the floor's only up to FLOOR_MAX_CONCURRENCY."""
    return [c for c in concurrencies if server != "floor" or c <= FLOOR_MAX_CONCURRENCY]


def run_servers(args: argparse.Namespace, client: Client, work: Path) -> dict:
    server_args = tuple(shlex.split(args.server_args))
    if "grpc" in args.protocols:
        server_args += ("--grpc-port", str(free_port()))  # a fixed port perf_analyzer can be given
    setup = Setup(
        args.model_repository,
        args.model,
        Path("."),  # no sentence-transformers folder: no contender here needs one
        work,
        intra_op_threads=args.triton_intra_op,
        server_args=server_args,
    )
    factories = catalogue(setup, locate(args.model_repository, args.model))
    servers = {}
    for name in args.servers:
        print(f"[{name}] starting", flush=True)
        try:
            servers[name] = run_server(factories[name](), client, concurrencies_for(name, args.concurrency),
                                       args.out / "logs", args.protocols, args.rounds)
        except ContenderUnavailable as exc:
            reason = " ".join(str(exc).split())[-600:]
            print(f"[{name}] SKIPPED: {reason}", flush=True)
            servers[name] = {"description": name, "points": [], "skipped": reason}
    return servers


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = parse_args(argv)
    binary = find_perf_analyzer(args.perf_analyzer)
    csv_dir = args.out / "logs" / "perf_analyzer"
    csv_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    sentences = read_sentences(args.tsv)
    extra = tuple(shlex.split(args.pa_args))
    shown = command("perf_analyzer", "PORT", args.model, Path("texts.json"), "C", Path("out.csv"),
                    args.measurement_interval, extra, "|".join(args.protocols))  # fmt: skip
    results = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": shlex.join(["python", "-m", "benchmarks.perf", *(sys.argv[1:] if argv is None else argv)]),
        "model": args.model,
        "sentences": len(sentences),
        "perf_analyzer": binary,
        "perf_analyzer_command": shlex.join(shown),
        "protocols": args.protocols,
        "rounds": args.rounds,
    }
    if args.ceiling:
        print(f"offline ceiling on {len(sentences)} sentences, windows of {args.concurrency}", flush=True)
        results["ceiling"] = ceiling_by_window(str(args.model_repository), args.model, sentences, args.concurrency)
        print("  texts/s by window: " + ", ".join(f"{w}: {row['texts_per_s']:.1f}"
                                                  for w, row in results["ceiling"]["best_by_window"].items()),
              flush=True)
    with tempfile.TemporaryDirectory(prefix="perf-") as work_dir:
        data = input_data(sentences, Path(work_dir) / "texts.json")
        client = Client(binary, data, args.measurement_interval, extra, csv_dir)
        results["servers"] = run_servers(args, client, Path(work_dir))
    results["elapsed_s"] = time.monotonic() - start
    targets = evaluate(results)
    results["targets"] = [
        {"name": t.name, "value": t.value, "threshold": t.threshold, "verdict": t.verdict} for t in targets
    ]
    written = args.out / f"perf_analyzer_{args.model}.json", args.out / f"perf_analyzer_{args.model}.md"
    written[0].write_text(json.dumps(results, indent=1, default=str))
    written[1].write_text(markdown(results, targets))
    print("\n".join(["", "Targets (perf_analyzer):", *[f"  {t.describe()}" for t in targets]]))
    print(f"\nwrote {written[1]}, {written[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

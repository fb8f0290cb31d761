"""The perf_analyzer mode's pure pieces: its command, its input data, its CSV, the issue's ratios."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from benchmarks import perf, report

# Written by perf_analyzer 2.60 (-f) against this server; latencies in microseconds.
CSV = (
    "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,"
    "Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency\n"
    "1,76.6975,41,3691,641,17,8380,55,0,12483,20244,24020,40794\n"
)


def test_command_is_the_issues_form():
    argv = perf.command("pa", 8123, "m", Path("t.json"), 64, Path("o.csv"), 5000)
    assert " ".join(argv).startswith(
        "pa -i http -u 127.0.0.1:8123 -m m --input-data t.json --shape TEXT:1 --concurrency-range 64:64"
    )


def test_input_data_is_one_text_element_per_step(tmp_path):
    path = perf.input_data(["A man plays.", "Grüße ✓"], tmp_path / "t.json")
    steps = json.loads(path.read_text(encoding="utf-8"))["data"]
    assert steps == [{"TEXT": ["A man plays."]}, {"TEXT": ["Grüße ✓"]}]


def test_csv_gives_texts_per_second_and_milliseconds():
    parsed = perf.parse_csv(CSV)
    assert parsed == {"concurrency": 1, "texts_per_s": 76.6975, "p50_ms": 12.483, "p99_ms": 40.794}
    with pytest.raises(ValueError, match="no measurement"):
        perf.parse_csv(CSV.splitlines()[0])


def _point(c, texts, p50, error=""):
    return {"concurrency": c, "texts_per_s": texts, "p50_ms": p50, "error": error}


def test_targets_are_ratios_to_triton():
    results = {
        "servers": {
            "ours": {"points": [_point(1, 90, 10.0), _point(8, 180, 40), _point(64, 190, 300)]},
            "triton": {
                "points": [_point(1, 85, 11.0), _point(8, 88, 90), _point(64, math.nan, math.nan, "exit 2")]
            },
        }
    }
    c64, c8, c1 = perf.evaluate(results)
    assert c64.verdict == "n/a", "a failed point is not a measurement"
    assert c8.value == pytest.approx(180 / 88) and c8.verdict == "PASS"
    assert c1.value == pytest.approx(-1.0) and c1.verdict == "PASS"
    results["servers"]["ours"]["points"][0]["p50_ms"] = 11.5
    assert perf.evaluate(results)[2].verdict == "MISS"


def test_grpc_command_and_port_from_the_command_line():
    argv = perf.command("pa", 8124, "m", Path("t.json"), 1, Path("o.csv"), 5000, protocol="grpc")
    assert " ".join(argv).startswith("pa -i grpc -u 127.0.0.1:8124 -m m --input-data t.json --shape TEXT:1")

    class Running:
        class contender:  # noqa: N801 - the shape of contenders.Running
            name = "ours"

        class process:  # noqa: N801
            args = ["python", "-m", "server", "--grpc-port", "0", "--grpc-port", "8125"]

    assert perf.grpc_port(Running) == 8125
    Running.process.args = ["python", "-m", "server", "--grpc-port", "0"]
    with pytest.raises(ValueError, match="no fixed --grpc-port"):
        perf.grpc_port(Running)


def test_grpc_targets_are_ratios_to_our_http_on_the_same_server():
    def both(c, http, grpc, http_p50, grpc_p50):
        return [_point(c, http, http_p50), {**_point(c, grpc, grpc_p50), "protocol": "grpc"}]

    ours = [*both(1, 380, 400, 2.5, 2.4), *both(8, 500, 480, 13.5, 14.8), *both(64, 730, 740, 84, 80)]
    results = {"servers": {"ours": {"points": ours}, "triton": {"points": []}}}
    targets = {t.name: t for t in perf.evaluate(results)}
    assert targets["perf_analyzer c=1: ours gRPC / HTTP texts/s"].value == pytest.approx(400 / 380)
    assert targets["perf_analyzer c=8: ours gRPC / HTTP texts/s"].verdict == "MISS"
    assert targets["perf_analyzer c=64: ours gRPC / HTTP texts/s"].verdict == "PASS"
    p50 = targets["perf_analyzer c=1: ours gRPC p50 - HTTP p50"]
    assert p50.value == pytest.approx(-0.1) and p50.verdict == "PASS"
    assert targets["perf_analyzer c=64: ours / Triton texts/s"].verdict == "n/a"
    assert perf.evaluate(results)[:3] == perf.evaluate({"servers": {"ours": {"points": ours[::2]}}})[:3], \
        "the HTTP targets read HTTP points only"


def test_triton_gRPC_against_its_own_HTTP_is_reported_beside_ours_not_judged():
    def both(c, http, grpc, http_p50, grpc_p50):
        return [_point(c, http, http_p50), {**_point(c, grpc, grpc_p50), "protocol": "grpc"}]

    ours = [*both(1, 380, 400, 2.5, 2.4), *both(64, 730, 740, 84, 80)]
    triton = [*both(1, 200, 170, 4.5, 5.2), *both(64, 275, 287, 228, 218)]
    results = {"servers": {"ours": {"points": ours}, "triton": {"points": triton}}}
    targets = {t.name: t for t in perf.evaluate(results)}
    c1 = targets["perf_analyzer c=1: Triton gRPC / HTTP texts/s (the same comparison on Triton)"]
    assert c1.value == pytest.approx(170 / 200) and c1.verdict == "info"
    c64 = targets["perf_analyzer c=64: Triton gRPC / HTTP texts/s (the same comparison on Triton)"]
    assert c64.value == pytest.approx(287 / 275) and c64.verdict == "info"
    p50 = targets["perf_analyzer c=1: Triton gRPC p50 - HTTP p50 (the same comparison on Triton)"]
    assert p50.value == pytest.approx(0.7) and p50.verdict == "info"
    assert targets["perf_analyzer c=1: ours gRPC / HTTP texts/s"].verdict == "PASS", "ours is still judged"
    http_only = {"servers": {"ours": {"points": ours[::2]}, "triton": {"points": triton}}}
    assert not [t for t in perf.evaluate(http_only) if "gRPC" in t.name], "no gRPC rows when ours ran HTTP only"
    no_triton_grpc = {"servers": {"ours": {"points": ours}, "triton": {"points": triton[::2]}}}
    assert not [t for t in perf.evaluate(no_triton_grpc) if "Triton gRPC" in t.name]


def _measured(texts, p50, error=""):
    return perf.PerfPoint(8, texts, p50, 2 * p50, 270.0 + texts / 100, 190.0, error, "grpc")


def test_a_point_is_the_median_of_its_rounds_and_keeps_every_round():
    point = perf.median_round([_measured(300, 20), _measured(250, 25), _measured(310, 19)])
    assert (point.texts_per_s, point.p50_ms, point.p99_ms) == (300, 20, 40), "each the median of the rounds"
    assert point.rounds == ((300, 20), (250, 25), (310, 19)), "every round, in the order measured"
    assert point.rss_mb == pytest.approx(273.1), "the peak RSS over all rounds"
    even = perf.median_round([_measured(300, 20), _measured(250, 25)])
    assert (even.texts_per_s, even.p50_ms) == (275, 22.5), "of two middle rounds, their mean"


def test_a_failed_round_is_not_a_measurement():
    failed = _measured(math.nan, math.nan, "exit 2: no stable measurement")
    point = perf.median_round([failed, _measured(280, 21), _measured(290, 20)])
    assert point.texts_per_s == 285 and point.error == "1 of 3 rounds failed (exit 2: no stable measurement)"
    assert len(point.rounds) == 3 and math.isnan(point.rounds[0][0]) and point.rounds[1:] == ((280, 21), (290, 20))
    assert perf.median_round([failed, failed]).error, "no good round: the failure is the point"
    assert perf.median_round([_measured(280, 21)]).rounds == (), "one round has no spread to show"


def test_rounds_alternate_the_protocols_order():
    assert perf.round_orders(["http", "grpc"], 3) == [("http", "grpc"), ("grpc", "http"), ("http", "grpc")]
    assert perf.round_orders(["http"], 2) == [("http",), ("http",)]


def test_markdown_lists_every_round_and_the_order_of_protocols():
    found = dataclasses.asdict(perf.median_round([_measured(300, 20), _measured(250, 25), _measured(310, 19)]))
    results = {"servers": {"ours": {"description": "d", "points": [found]}}, "started": "s", "command": "c",
               "elapsed_s": 1.0, "model": "m", "sentences": 3, "perf_analyzer_command": "pa", "rounds": 3,
               "protocols": ["http", "grpc"]}
    text = perf.markdown(results, [])
    assert "| 300.0 (20.0) / 250.0 (25.0) / 310.0 (19.0) |" in text
    assert f"| {report.fmt(190.0)} | {report.fmt(190.0 / 100 * 1e6 / 300)} | 300.0 (20.0)" in text, \
        "the server's CPU %, then its CPU time per request"
    assert "(HTTP, gRPC, then gRPC, HTTP)" in text
    failed = dataclasses.asdict(perf.median_round([_measured(300, 20), _measured(math.nan, math.nan, "exit 2")]))
    results["servers"]["ours"]["points"] = [failed]
    assert "| 300.0 (20.0) / failed | 1 of 2 rounds failed (exit 2) |" in perf.markdown(results, [])


def test_a_point_with_some_failed_rounds_still_counts_for_the_targets():
    kept = dataclasses.asdict(perf.median_round([_measured(300, 20), _measured(math.nan, math.nan, "exit 2")]))
    results = {"servers": {"ours": {"points": [{**kept, "protocol": "http", "concurrency": 8}]},
                           "triton": {"points": [_point(8, 150, 30)]}}}
    assert perf.evaluate(results)[1].value == pytest.approx(2.0)


def test_ceiling_bounds_report_the_most_ours_over_triton_can_be_and_ours_against_the_ceiling():
    results = {
        "servers": {
            "ours": {"points": [_point(1, 200, 4.0), _point(8, 300, 25.0)]},
            "triton": {"points": [_point(1, 120, 7.0), _point(8, 200, 35.0)]},
        },
        "ceiling": {"best_by_window": {"8": {"texts_per_s": 450.0}, "1": {"texts_per_s": 380.0}}},
    }
    bounds = perf.ceiling_bounds(results)
    assert [t.name.split(":")[0] for t in bounds] == ["perf_analyzer c=1"] * 2 + ["perf_analyzer c=8"] * 2
    assert bounds[2].value == pytest.approx(450 / 200) and bounds[3].value == pytest.approx(300 / 450)
    assert all(t.verdict == "info" for t in bounds), "bounds are reported, not judged"
    assert bounds == perf.evaluate(results)[-4:]
    assert perf.ceiling_bounds({"servers": {}}) == [], "no ceiling measured (--no-ceiling): no rows"


def test_ceiling_section_lists_the_best_strategy_of_each_window_and_its_passes():
    best = {"8": {"strategy": "split B", "texts_per_s": 450.0, "passes_s": [0.02, 0.025, 0.0222]},
            "1": {"strategy": "windows of 1 in arrival order, one text per run", "texts_per_s": 380.0,
                  "passes_s": [0.025, 0.027, 0.026]}}
    measured = {"texts": 10, "layout": "1 thread(s) x 2 intra-op", "passes": 3, "best_by_window": best,
                "strategies": [{"window": 8, "strategy": "split A", "texts_per_s": 430.0}]}
    section = "\n".join(perf._ceiling_section(measured))
    assert "| c=8 | 450.0 | 500.0 / 400.0 / 450.5 | split B |" in section and "split A" not in section
    assert section.index("| c=1 |") < section.index("| c=8 |"), "windows in order of size"
    assert perf._ceiling_section(None) == []


def test_concurrency_must_be_positive_and_is_measured_once():
    assert perf.parse_args(["--concurrency", "8,1,8"]).concurrency == [8, 1]
    with pytest.raises(SystemExit):
        perf.parse_args(["--concurrency", "0,8"])


def _with_cpu(c, texts, p50, cpu, protocol="http"):
    return {**_point(c, texts, p50), "cpu_percent": cpu, "protocol": protocol}


def test_cpu_per_request_is_the_servers_cpu_time_at_its_rate():
    assert perf.cpu_us_per_request({"cpu_percent": 150.0, "texts_per_s": 500.0}) == pytest.approx(3000.0)
    assert math.isnan(perf.cpu_us_per_request({"cpu_percent": 150.0, "texts_per_s": math.nan}))
    assert math.isnan(perf.cpu_us_per_request({"cpu_percent": 150.0, "texts_per_s": 0.0}))
    assert math.isnan(perf.cpu_us_per_request({}))


def test_the_floor_and_each_protocols_cpu_per_request_are_reported_beside_ours_not_judged():
    ours = [_with_cpu(1, 300, 3.0, 190.0), _with_cpu(1, 290, 3.1, 190.0, "grpc"),
            _with_cpu(8, 520, 13.0, 190.0), _with_cpu(8, 500, 14.0, 190.0, "grpc")]
    floor = [_with_cpu(1, 8000, 0.10, 60.0), _with_cpu(1, 2600, 0.37, 78.0, "grpc"),
             _with_cpu(8, 17000, 0.43, 85.0), _with_cpu(8, 6400, 1.1, 110.0, "grpc")]
    results = {"servers": {"ours": {"points": ours}, "triton": {"points": []}, "floor": {"points": floor}}}
    targets = {t.name: t for t in perf.evaluate(results)}
    note = " (the protocol stacks alone, canned answers)"
    ratio8 = targets[f"perf_analyzer c=8: floor gRPC / HTTP texts/s{note}"]
    assert ratio8.value == pytest.approx(6400 / 17000) and ratio8.verdict == "info"
    p50 = targets[f"perf_analyzer c=1: floor gRPC p50 - HTTP p50{note}"]
    assert p50.value == pytest.approx(0.27) and p50.verdict == "info"
    floor_cpu = targets["perf_analyzer c=8: floor server CPU per request, gRPC - HTTP (the protocol stacks alone)"]
    assert floor_cpu.value == pytest.approx(110e4 / 6400 - 85e4 / 17000) and floor_cpu.verdict == "info"
    assert floor_cpu.measured() == f"{110e4 / 6400 - 85e4 / 17000:.0f} us"
    ours_cpu = targets["perf_analyzer c=1: ours server CPU per request, gRPC - HTTP"]
    assert ours_cpu.value == pytest.approx(190e4 / 290 - 190e4 / 300)
    assert targets["perf_analyzer c=8: ours gRPC / HTTP texts/s"].verdict == "MISS", "ours is still judged"
    without_floor = {"servers": {"ours": {"points": ours}, "triton": {"points": []}}}
    assert not [t for t in perf.evaluate(without_floor) if "floor" in t.name]


def test_the_floor_runs_at_the_concurrencies_perf_analyzer_can_measure_it():
    assert perf.concurrencies_for("floor", [1, 8, 64]) == [1, 8]
    assert perf.concurrencies_for("ours", [1, 8, 64]) == [1, 8, 64]
    assert "floor" in perf.parse_args([]).servers

"""The perf_analyzer mode's pure pieces: its command, its input data, its CSV, the issue's ratios."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks import perf

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

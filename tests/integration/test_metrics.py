"""/metrics parses as Prometheus text and Triton's counters move by exactly the requests made."""

from __future__ import annotations

import numpy as np
import requests
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families

MODEL = "all-MiniLM-L6-v2"
INT8 = MODEL + "-int8"
TRITON_FAMILIES = {
    "nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count",
    "nv_inference_exec_count", "nv_inference_request_duration_us", "nv_inference_queue_duration_us",
    "nv_inference_compute_input_duration_us",
    "nv_inference_compute_infer_duration_us", "nv_inference_compute_output_duration_us",
    "nv_inference_pending_request_count",
}


def scrape(server) -> dict[tuple[str, str], float]:
    """(sample name, model) -> value."""
    response = requests.get(server.url + "/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    values = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if "model" in sample.labels and "le" not in sample.labels:
                values[(sample.name, sample.labels["model"])] = sample.value
    return values


def families(server) -> dict[str, set[tuple[str, str]]]:
    text = requests.get(server.url + "/metrics", timeout=10).text
    return {f.name: {(s.labels.get("model"), s.labels.get("version")) for s in f.samples}
            for f in text_string_to_metric_families(text)}


def test_triton_families_are_exposed_per_model_and_version(minilm_server):
    found = families(minilm_server)
    assert TRITON_FAMILIES <= set(found)
    for name in TRITON_FAMILIES:
        assert {(MODEL, "1"), (INT8, "1")} <= found[name]
    assert "oes_batch_size" in found and "oes_truncated_inputs" in found


def test_counters_move_by_exactly_the_requests_made(minilm_server):
    before = scrape(minilm_server)
    with httpclient.InferenceServerClient(f"127.0.0.1:{minilm_server.port}") as client:
        for size in (1, 4):
            tensor = httpclient.InferInput("TEXT", [size, 1], "BYTES")
            tensor.set_data_from_numpy(np.array(["metrics text"] * size, dtype=object).reshape(-1, 1))
            client.infer(MODEL, [tensor])
    assert requests.post(minilm_server.url + "/embed", json={"inputs": ["a", "b", "c"]}, timeout=30).ok
    url = minilm_server.url + "/v1/embeddings"
    assert requests.post(url, json={"model": MODEL, "input": "d"}, timeout=30).ok
    rejected = requests.post(url, json={"model": MODEL, "input": ""}, timeout=30)
    assert rejected.status_code == 400
    after = scrape(minilm_server)

    def delta(name, model=MODEL):
        return after[(name, model)] - before[(name, model)]

    assert delta("nv_inference_request_success") == 4
    assert delta("nv_inference_count") == 1 + 4 + 3 + 1
    assert delta("nv_inference_request_failure") == 0
    assert delta("nv_inference_exec_count") == delta("oes_batch_size_count") >= 1
    assert delta("oes_batch_size_sum") == delta("nv_inference_count")
    assert delta("nv_inference_queue_duration_us") >= 0 and delta("nv_inference_compute_infer_duration_us") > 0
    assert after[("nv_inference_pending_request_count", MODEL)] == 0
    assert delta("nv_inference_request_success", INT8) == 0 and delta("nv_inference_count", INT8) == 0

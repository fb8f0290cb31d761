"""deploy/kserve/grpc: the KServe ServingRuntime for KServe v2 over gRPC (one h2c port, the server's gRPC port)."""

from __future__ import annotations

import pytest

from .oes_deploy_helpers import GRPC_PORT, KSERVE_DIR, LIVE_PATH, OES_ENV, SERVER_PORT, arg_value, env_map, is_server_route, load_docs, one

kubernetes_validate = pytest.importorskip("kubernetes_validate")

HTTP_RUNTIME = one(load_docs(KSERVE_DIR), "ServingRuntime")
RUNTIME = one(load_docs(KSERVE_DIR / "grpc"), "ServingRuntime")
CONTAINER = RUNTIME["spec"]["containers"][0]


def test_grpc_runtime_has_one_h2c_port_that_is_the_servers_grpc_port():
    assert RUNTIME["apiVersion"] == "serving.kserve.io/v1alpha1"
    assert RUNTIME["metadata"]["name"] != HTTP_RUNTIME["metadata"]["name"]
    assert RUNTIME["spec"]["protocolVersions"] == ["grpc-v2"]
    assert CONTAINER["ports"] == [{"name": "h2c", "containerPort": GRPC_PORT, "protocol": "TCP"}]
    args = CONTAINER["args"]
    assert int(arg_value(args, "--grpc-port")) == GRPC_PORT and int(arg_value(args, "--port")) == SERVER_PORT
    assert set(env_map(CONTAINER)) <= OES_ENV


def test_grpc_runtime_probes_and_image():
    assert CONTAINER["readinessProbe"]["grpc"] == {"port": GRPC_PORT, "service": ""}
    live = CONTAINER["livenessProbe"]["httpGet"]
    assert live["path"] == LIVE_PATH and is_server_route(live["path"]) and live["port"] == SERVER_PORT
    assert CONTAINER["image"] == HTTP_RUNTIME["spec"]["containers"][0]["image"]
    # ServingRuntimes on the default onnx format: only the HTTP runtime is picked automatically.
    assert all(not f.get("autoSelect") for f in RUNTIME["spec"]["supportedModelFormats"])


def test_grpc_runtime_container_is_a_valid_kubernetes_container():
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {"containers": [CONTAINER]}}
    kubernetes_validate.validate(pod, "1.30.0", strict=True)

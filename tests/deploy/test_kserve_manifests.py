"""deploy/kserve: ServingRuntime + InferenceService (CRDs: no schema shipped, so structure is checked here;
the runtime's container is validated as a real Kubernetes Container by wrapping it in a Pod)."""

from __future__ import annotations

import pytest
from .oes_deploy_helpers import (
    DEFAULT_SHUTDOWN_GRACE_S,
    K8S_DIR,
    KSERVE_DIR,
    LIVE_PATH,
    METRICS_PATH,
    OES_ENV,
    READY_PATH,
    SERVER_PORT,
    arg_value,
    env_map,
    is_server_route,
    load_docs,
    one,
    resolve_port,
)

kubernetes_validate = pytest.importorskip("kubernetes_validate")

DOCS = load_docs(KSERVE_DIR)
RUNTIME = one(DOCS, "ServingRuntime")
ISVC = one(DOCS, "InferenceService")
CONTAINER = RUNTIME["spec"]["containers"][0]
KSERVE_MODEL_DIR = "/mnt/models"  # where KServe's storage initializer puts storageUri


def test_api_versions_and_names():
    assert RUNTIME["apiVersion"] == "serving.kserve.io/v1alpha1"
    assert ISVC["apiVersion"] == "serving.kserve.io/v1beta1"
    assert RUNTIME["metadata"]["name"] and ISVC["metadata"]["name"]
    # InferenceService names become DNS labels.
    assert ISVC["metadata"]["name"] == ISVC["metadata"]["name"].lower()


def test_serving_runtime_declares_onnx_over_v2():
    spec = RUNTIME["spec"]
    formats = {f["name"] for f in spec["supportedModelFormats"]}
    assert "onnx" in formats
    assert "v2" in spec["protocolVersions"]
    assert spec.get("multiModel", False) is False
    for f in spec["supportedModelFormats"]:
        assert set(f) <= {"name", "version", "autoSelect", "priority"}
        if "priority" in f:
            assert f["priority"] > 0 and f.get("autoSelect") is True


def test_runtime_container_points_at_the_kserve_model_repository():
    assert CONTAINER["name"] == "kserve-container"
    assert CONTAINER["command"] == ["python", "-m", "server"]
    args = CONTAINER["args"]
    assert arg_value(args, "--model-repository") == KSERVE_MODEL_DIR
    assert int(arg_value(args, "--port")) == SERVER_PORT
    assert arg_value(args, "--host") == "0.0.0.0"
    env = env_map(CONTAINER)
    assert set(env) <= OES_ENV, set(env) - OES_ENV
    assert env["OES_MODEL_REPOSITORY"]["value"] == KSERVE_MODEL_DIR


def test_runtime_image_is_the_one_the_deployment_uses():
    deployment = one(load_docs(K8S_DIR), "Deployment")
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert CONTAINER["image"] == image


def test_runtime_ports_and_probes_match_the_server():
    assert [p["containerPort"] for p in CONTAINER["ports"]] == [SERVER_PORT]
    assert CONTAINER["readinessProbe"]["httpGet"]["path"] == READY_PATH
    assert CONTAINER["livenessProbe"]["httpGet"]["path"] == LIVE_PATH
    for key in ("readinessProbe", "livenessProbe"):
        get = CONTAINER[key]["httpGet"]
        assert is_server_route(get["path"])
        assert resolve_port(get["port"], CONTAINER) == SERVER_PORT
    ann = RUNTIME["spec"]["annotations"]
    assert int(ann["prometheus.kserve.io/port"]) == SERVER_PORT
    assert ann["prometheus.kserve.io/path"] == METRICS_PATH


def test_runtime_container_is_a_valid_kubernetes_container():
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {"containers": [CONTAINER]}}
    kubernetes_validate.validate(pod, "1.30.0", strict=True)
    broken = {**pod, "spec": {"containers": [{**CONTAINER, "args": "--model-repository /mnt/models"}]}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.30.0", strict=True)
    sc = CONTAINER["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0


def test_inference_service_uses_the_runtime():
    predictor = ISVC["spec"]["predictor"]
    model = predictor["model"]
    assert model["runtime"] == RUNTIME["metadata"]["name"]
    assert model["modelFormat"]["name"] in {f["name"] for f in RUNTIME["spec"]["supportedModelFormats"]}
    assert model["protocolVersion"] in RUNTIME["spec"]["protocolVersions"]
    assert model["storageUri"].split("://")[0] in {"pvc", "s3", "gs", "azure", "https", "hf", "oci"}
    assert int(model["resources"]["limits"]["nvidia.com/gpu"]) == 1
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "x"},
        "spec": {"containers": [{"name": "c", "image": "i", "resources": model["resources"]}]},
    }
    kubernetes_validate.validate(pod, "1.30.0", strict=True)


def test_inference_service_drains_like_the_deployment():
    predictor = ISVC["spec"]["predictor"]
    grace = env_map(CONTAINER).get("OES_SHUTDOWN_GRACE_S", {}).get("value", DEFAULT_SHUTDOWN_GRACE_S)
    assert predictor["terminationGracePeriodSeconds"] > float(grace)
    assert ISVC["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    assert 1 <= predictor["minReplicas"] <= predictor["maxReplicas"]

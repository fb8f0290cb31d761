"""deploy/kubernetes: schemas (kubernetes-validate, offline), probes/ports vs the server, drain timing."""

from __future__ import annotations

import copy
import re

import pytest
import yaml
from .oes_deploy_helpers import (
    DEFAULT_SHUTDOWN_GRACE_S,
    K8S_DIR,
    KSERVE_DIR,
    LIVE_PATH,
    METRICS_PATH,
    OES_ENV,
    READY_PATH,
    GRPC_PORT,
    SERVER_PORT,
    env_map,
    is_server_route,
    load_dockerfile,
    load_docs,
    one,
    resolve_port,
    sleep_seconds,
)

kubernetes_validate = pytest.importorskip("kubernetes_validate")

K8S = load_docs(K8S_DIR)
DEPLOYMENT = one(K8S, "Deployment")
POD = DEPLOYMENT["spec"]["template"]
CONTAINER = POD["spec"]["containers"][0]
# Oldest Kubernetes these manifests promise to work on, and the newest the validator knows.
K8S_VERSIONS = ["1.30.0", kubernetes_validate.utils.latest_version()]
KSERVE_KINDS = {"ServingRuntime", "ClusterServingRuntime", "InferenceService"}


def test_yaml_parses_and_has_the_expected_objects():
    files = sorted(p.name for p in K8S_DIR.glob("*.yaml"))
    assert files, "no manifests"
    for path in list(K8S_DIR.glob("*.yaml")) + list(KSERVE_DIR.glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        assert docs, f"{path} is empty"
        for d in docs:
            assert {"apiVersion", "kind", "metadata"} <= d.keys(), path
    kinds = {(d["apiVersion"], d["kind"]) for _, d in K8S}
    assert ("apps/v1", "Deployment") in kinds
    assert ("v1", "Service") in kinds
    assert ("autoscaling/v2", "HorizontalPodAutoscaler") in kinds
    assert ("policy/v1", "PodDisruptionBudget") in kinds


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_builtin_objects_validate_against_the_kubernetes_schemas(version):
    checked = 0
    for path, doc in K8S + load_docs(KSERVE_DIR):
        if doc["kind"] in KSERVE_KINDS:
            continue  # CRDs: no schema shipped; checked by hand in test_kserve_manifests.py
        kubernetes_validate.validate(doc, version, strict=True)
        checked += 1
    assert checked >= 4


def test_the_validator_rejects_a_broken_deployment():
    bad = copy.deepcopy(DEPLOYMENT)
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}  # typo'd field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSIONS[0], strict=True)
    bad = copy.deepcopy(DEPLOYMENT)
    bad["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "45"  # wrong type
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSIONS[0], strict=True)


# -------------------------------------------------------------------------------------- probes and ports


def test_container_port_is_the_server_port_and_the_image_expose():
    ports = {p["name"]: p["containerPort"] for p in CONTAINER["ports"]}
    assert ports == {"http": SERVER_PORT, "grpc": GRPC_PORT}
    exposed = [int(p.split("/")[0]) for i in load_dockerfile().final.all("EXPOSE") for p in i.args.split()]
    assert exposed == [SERVER_PORT, GRPC_PORT]
    args = CONTAINER.get("args", [])
    if "--port" in args:
        assert int(args[args.index("--port") + 1]) == SERVER_PORT


def test_probes_hit_server_routes_on_the_server_port():
    probes = {k: CONTAINER[k] for k in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["httpGet"]["path"] == READY_PATH
    assert probes["livenessProbe"]["httpGet"]["path"] == LIVE_PATH
    for name, probe in probes.items():
        path = probe["httpGet"]["path"]
        assert is_server_route(path), f"{name}: {path} is not served"
        assert resolve_port(probe["httpGet"]["port"], CONTAINER) == SERVER_PORT, name


def test_startup_probe_allows_for_model_load():
    sp = CONTAINER["startupProbe"]
    budget = sp.get("initialDelaySeconds", 0) + sp.get("periodSeconds", 10) * sp.get("failureThreshold", 3)
    assert budget >= 180, f"startupProbe gives up after {budget}s: too short for model load + CUDA init + warm-up"
    assert sp["httpGet"]["path"] == READY_PATH
    # Once started, a stuck pod still goes out of rotation fast.
    rp = CONTAINER["readinessProbe"]
    assert rp["periodSeconds"] * rp["failureThreshold"] <= 15


def test_drain_fits_in_the_termination_grace_period():
    grace = POD["spec"]["terminationGracePeriodSeconds"]
    env = env_map(CONTAINER)
    shutdown = float(env["OES_SHUTDOWN_GRACE_S"]["value"]) if "OES_SHUTDOWN_GRACE_S" in env else DEFAULT_SHUTDOWN_GRACE_S
    prestop = sleep_seconds(CONTAINER["lifecycle"]["preStop"])
    assert prestop > 0, "preStop sleep lets endpoints stop routing before SIGTERM"
    assert grace > prestop + shutdown, f"terminationGracePeriodSeconds {grace} <= preStop {prestop} + drain {shutdown}"
    # The image's own default drain time agrees with the manifest.
    assert int(load_dockerfile().final.env()["OES_SHUTDOWN_GRACE_S"]) == shutdown


def test_sleep_seconds_reads_both_prestop_styles():
    assert sleep_seconds({"exec": {"command": ["sleep", "7"]}}) == 7
    assert sleep_seconds({"exec": {"command": ["/bin/sh", "-c", "sleep 3"]}}) == 3
    assert sleep_seconds({"sleep": {"seconds": 4}}) == 4
    with pytest.raises(AssertionError):
        sleep_seconds({"exec": {"command": ["true"]}})


# ---------------------------------------------------------------------------------------- pod settings


def test_gpu_limit_and_toleration():
    limits = CONTAINER["resources"]["limits"]
    assert int(limits["nvidia.com/gpu"]) == 1
    assert "nvidia.com/gpu" not in CONTAINER["resources"].get("requests", {}) or int(
        CONTAINER["resources"]["requests"]["nvidia.com/gpu"]
    ) == int(limits["nvidia.com/gpu"])
    env = env_map(CONTAINER)
    assert env["OES_DEVICE"]["value"] == "gpu", "a GPU pod must not silently fall back to CPU"
    assert any(t.get("key") == "nvidia.com/gpu" for t in POD["spec"].get("tolerations", []))


def test_runs_as_the_images_non_root_user():
    pod_sc = POD["spec"]["securityContext"]
    ctr_sc = CONTAINER["securityContext"]
    assert pod_sc["runAsNonRoot"] is True
    user = load_dockerfile().final.last("USER").args.split(":")
    assert pod_sc["runAsUser"] == int(user[0]) != 0
    assert pod_sc["runAsGroup"] == int(user[1])
    assert ctr_sc["allowPrivilegeEscalation"] is False
    assert ctr_sc["capabilities"]["drop"] == ["ALL"]
    # A read-only root filesystem needs a writable /tmp.
    if ctr_sc.get("readOnlyRootFilesystem"):
        assert any(m["mountPath"] == "/tmp" for m in CONTAINER.get("volumeMounts", []))


def test_prometheus_scrape_annotations():
    ann = POD["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true"
    assert int(ann["prometheus.io/port"]) == SERVER_PORT
    assert ann["prometheus.io/path"] == METRICS_PATH
    assert is_server_route(ann["prometheus.io/path"])


def test_env_is_the_server_contract():
    env = env_map(CONTAINER)
    unknown = set(env) - OES_ENV
    assert not unknown, f"not server settings (typo?): {unknown}"
    assert {"OES_DEVICE", "OES_SHUTDOWN_GRACE_S", "OES_CUDA_OPTIONS"} <= set(env)
    opts = env["OES_CUDA_OPTIONS"]["value"].split(",")
    kv = dict(o.split("=", 1) for o in opts)
    assert all(re.fullmatch(r"[a-z_]+", k) and v for k, v in kv.items()), kv
    assert kv["arena_extend_strategy"] in ("kNextPowerOfTwo", "kSameAsRequested")
    assert int(kv["gpu_mem_limit"]) > 0
    # Values are strings (env vars), the API key comes from a Secret, never inline.
    assert all("value" not in e or isinstance(e["value"], str) for e in env.values())
    if "OES_API_KEY" in env:
        assert "valueFrom" in env["OES_API_KEY"] and "value" not in env["OES_API_KEY"]


def test_served_models_exist_in_the_image():
    name = load_dockerfile().global_args["MODEL_NAME"]
    exported = {name, f"{name}-int8", f"{name}-fp16"}
    models = env_map(CONTAINER).get("OES_MODELS", {}).get("value")
    if models is not None:
        assert set(models.split(",")) <= exported, models
        assert models == load_dockerfile().image_env("gpu")["OES_MODELS"]


def test_command_and_repository_match_the_image():
    assert CONTAINER["command"] == load_dockerfile().final.last("CMD").exec_form()
    args = CONTAINER["args"]
    repo = args[args.index("--model-repository") + 1]
    assert repo == load_dockerfile().final.env()["OES_MODEL_REPOSITORY"]


def test_rollout_keeps_capacity():
    ru = DEPLOYMENT["spec"]["strategy"]["rollingUpdate"]
    assert ru["maxUnavailable"] == 0 and ru["maxSurge"] >= 1


# --------------------------------------------------------------------------- Service, HPA and PDB wiring


def _selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def test_selectors_match_the_pods():
    labels = POD["metadata"]["labels"]
    assert _selects(DEPLOYMENT["spec"]["selector"]["matchLabels"], labels)
    service = one(K8S, "Service")
    assert _selects(service["spec"]["selector"], labels)
    pdb = one(K8S, "PodDisruptionBudget")
    assert _selects(pdb["spec"]["selector"]["matchLabels"], labels)
    assert not _selects({"app.kubernetes.io/name": "something-else"}, labels)


def test_service_targets_the_server_ports():
    ports = {p["name"]: p for p in one(K8S, "Service")["spec"]["ports"]}
    assert set(ports) == {"http", "grpc"}
    assert ports["http"]["port"] == SERVER_PORT
    assert resolve_port(ports["http"]["targetPort"], CONTAINER) == SERVER_PORT
    assert ports["grpc"]["port"] == GRPC_PORT and ports["grpc"]["appProtocol"] == "kubernetes.io/h2c"
    assert resolve_port(ports["grpc"]["targetPort"], CONTAINER) == GRPC_PORT


def test_hpa_scales_this_deployment():
    hpa = one(K8S, "HorizontalPodAutoscaler")
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["apiVersion"], ref["kind"], ref["name"]) == ("apps/v1", "Deployment", DEPLOYMENT["metadata"]["name"])
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    metrics = hpa["spec"]["metrics"]
    assert metrics
    for m in metrics:
        if m["type"] == "Resource" and m["resource"]["target"]["type"] == "Utilization":
            # Utilization is relative to requests: the container must request that resource.
            assert m["resource"]["name"] in CONTAINER["resources"]["requests"]


def test_pdb_never_blocks_a_drain_at_min_replicas():
    pdb = one(K8S, "PodDisruptionBudget")["spec"]
    min_replicas = one(K8S, "HorizontalPodAutoscaler")["spec"]["minReplicas"]
    if "maxUnavailable" in pdb:
        assert int(pdb["maxUnavailable"]) >= 1
    else:
        assert int(pdb["minAvailable"]) < min_replicas

"""The deployment files against the real server code: every OES_* value and CLI arg they set is accepted
by `server.config.parse_config`, and every probe / scrape path is a GET route the app registers."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .oes_deploy_helpers import (
    K8S_DIR,
    KSERVE_DIR,
    LIVE_PATH,
    METRICS_PATH,
    OES_ENV,
    READY_PATH,
    ROOT,
    SERVER_PORT,
    env_map,
    load_dockerfile,
    load_docs,
    one,
)

import server.app as server_app  # noqa: E402  (a broken import must fail, not skip)
import server.config as config  # noqa: E402

DEPLOYMENT = one(load_docs(K8S_DIR), "Deployment")["spec"]["template"]["spec"]["containers"][0]
RUNTIME = one(load_docs(KSERVE_DIR), "ServingRuntime")["spec"]["containers"][0]
SERVER_ENV = {config.env_name(flag) for flag, *_ in config._OPTIONS}


def _routes(app):
    for resource in app.router.resources():
        family = resource.get_info().get("app")  # a sub-application (/v1, /v2): its routes carry the prefix
        yield from _routes(family) if family is not None else resource


def get_routes() -> set[str]:
    app = server_app.create_app(config.ServerConfig(grpc=False))
    return {route.resource.canonical for route in _routes(app) if route.method in ("GET", "*")}


def literal_env(container: dict) -> dict[str, str]:
    return {k: v["value"] for k, v in env_map(container).items() if "value" in v}


def test_contract_env_names_are_real_server_settings():
    assert OES_ENV <= SERVER_ENV, OES_ENV - SERVER_ENV


@pytest.mark.parametrize("container", [DEPLOYMENT, RUNTIME], ids=["deployment", "servingruntime"])
def test_manifest_args_and_env_parse(container):
    env = literal_env(container)
    assert set(env_map(container)) <= SERVER_ENV
    cfg = config.parse_config(container["args"], environ=env)
    assert cfg.port == SERVER_PORT
    assert cfg.host == "0.0.0.0"
    assert cfg.device == env.get("OES_DEVICE", "config")
    assert str(cfg.model_repository) == env.get("OES_MODEL_REPOSITORY", str(cfg.model_repository))
    if "OES_SHUTDOWN_GRACE_S" in env:
        assert cfg.shutdown_grace_s == float(env["OES_SHUTDOWN_GRACE_S"])
    if "OES_CUDA_OPTIONS" in env:
        assert dict(cfg.cuda_options)["gpu_mem_limit"].isdigit()


@pytest.mark.parametrize("device", ["gpu", "cpu"])
def test_image_env_alone_configures_the_server(device):
    env = {k: v for k, v in load_dockerfile().image_env(device).items() if k.startswith("OES_")}
    assert set(env) <= SERVER_ENV
    cfg = config.parse_config([], environ=env)  # the image's CMD passes no flags
    assert (cfg.host, cfg.port, str(cfg.model_repository), cfg.device) == ("0.0.0.0", SERVER_PORT, "/models", device)
    assert all("$" not in v for v in env.values()), env
    assert cfg.shutdown_grace_s == float(env["OES_SHUTDOWN_GRACE_S"])


def test_a_bad_value_would_be_rejected():
    with pytest.raises(SystemExit):
        config.parse_config([], environ={"OES_DEVICE": "tpu"})
    with pytest.raises(SystemExit):
        config.parse_config([], environ={"OES_CUDA_OPTIONS": "gpu_mem_limit"})


def test_probe_and_scrape_paths_are_registered_get_routes():
    routes = get_routes()
    for path in (READY_PATH, LIVE_PATH, METRICS_PATH):
        assert path in routes, f"{path} not served; server GET routes: {sorted(routes)}"
    for container in (DEPLOYMENT, RUNTIME):
        for key in ("startupProbe", "readinessProbe", "livenessProbe"):
            if key in container:
                assert container[key]["httpGet"]["path"] in routes


def test_python_m_server_help_works_without_a_repository():
    """The Dockerfile runs it at build time to prove the runtime install set imports the server."""
    r = subprocess.run([sys.executable, "-m", "server", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "--model-repository" in r.stdout

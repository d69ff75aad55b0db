# paperchat: make chat (the main job), make test (the whole suite), make bench.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
DATA ?= $(CURDIR)/data
PAPERS ?=
export PAPERCHAT_DATA_DIR ?= $(DATA)
export GRADIO_ANALYTICS_ENABLED := False
HAS_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)

.PHONY: setup setup-app setup-llm chat ingest test test-fast lint bench bench-small clean

setup: setup-app setup-llm  ## create .venv (app) and .venv-llm (model server)

setup-app: $(BIN)/.installed
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
ifeq ($(HAS_GPU),1)
	$(BIN)/pip install -q -e '.[gpu,dev,ray,onnx]'
	scripts/check_torch.sh $(BIN)/python cuda  # never the local CPU wheel; fails without CUDA
else
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[cpu,dev,ray,onnx]'
	scripts/check_torch.sh $(BIN)/python cpu
endif
	touch $@

setup-llm:
	scripts/setup_llm.sh .venv-llm "$(PAPERCHAT_DATA_DIR)"

ingest: setup-app  ## the reading list, or PAPERS=dir for local PDFs
	$(BIN)/paperchat ingest $(PAPERS) || echo "(some items failed; see the summary above)"

chat: setup ingest  ## set up, ingest, start the model server if needed, open the chat
	scripts/chat.sh

test: setup  ## set up, start the model server, run every test
	scripts/run_tests.sh

test-fast: setup-app  ## the inner loop (< 2 min): no model server, browser or whole-corpus library
	$(BIN)/ruff check .
	$(BIN)/pytest -q -m "not slow and not llm and not browser and not corpus"

lint: setup-app
	$(BIN)/ruff check . && $(BIN)/mypy

bench: setup
	scripts/run_benchmarks.sh full

bench-small: setup
	scripts/run_benchmarks.sh small

clean:
	rm -rf $(VENV) .venv-llm .pytest_cache .mypy_cache .ruff_cache

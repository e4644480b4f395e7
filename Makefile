# The hub's commands. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
# uv from PATH, else the one pip installed for python3 (`pip install uv`).
UV ?= $(shell command -v uv 2>/dev/null || echo python3 -m uv)
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
# The contracts as last released: buf breaking compares protos/ against it.
BASELINE := protos/baseline.binpb

.PHONY: help install generate check-generated lint breaking baseline format typecheck pytest test run bench

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: $(BIN)/vkp ## Create .venv and install the hub with its locked dependencies

$(BIN)/vkp: pyproject.toml uv.lock
	$(UV) sync --frozen --python python3.11
	@touch $@

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

bench: install ## Benchmarks, each figure beside a baseline measured in the same run
	$(BIN)/python bench/run.py

# Flight-delay MLOps platform. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export MLOPS_HOME ?= $(CURDIR)/.mlops
export DAGSTER_HOME ?= $(MLOPS_HOME)/dagster_home
export MLOPS_PROFILE ?= local
export GX_ANALYTICS_ENABLED ?= false
START ?= 2013-01-01
END ?= 2013-01-31
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup demo test test-slow lint format typecheck up clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 is required, found {sys.version}"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) ## create .venv with the pinned dependencies (idempotent)
	@mkdir -p $(DAGSTER_HOME) $(MLOPS_HOME)/feast

demo: setup ## run ingestion -> validation -> features -> online store for START..END (default January 2013)
	$(BIN)/python -m dagster_project demo --start $(START) --end $(END)

test: setup ## run the test suite (fast tests; slow end-to-end ones: make test-slow)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-slow: setup ## run only the slow end-to-end tests
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

lint: setup ## ruff lint + format check + mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy dagster_project

format: setup ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: setup ## mypy over the code location
	$(BIN)/mypy dagster_project

up: setup ## start the Dagster UI + daemon on http://127.0.0.1:3000 (Ctrl-C stops it)
	@echo "Dagster UI: http://127.0.0.1:3000  (DAGSTER_HOME=$(DAGSTER_HOME))"
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

clean: ## remove all local state (.mlops), keeping .venv
	rm -rf $(MLOPS_HOME)

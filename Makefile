# QuantaEnergi Workstation. Two commands for a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench soak package venv system-deps lock clean

# The venv is rebuilt only when the project's dependencies change.
$(STAMP): pyproject.toml constraints.txt
	@tools/system-deps.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

venv: $(STAMP)

system-deps:
	@tools/system-deps.sh

run: $(STAMP)
	$(BIN)/quantaenergi $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check app tests installer tools
	$(BIN)/ruff format --check app tests
	$(BIN)/lint-imports
	$(BIN)/mypy app

# Whole suite offscreen; the PostgreSQL fixture starts a throw-away server itself.
test: $(STAMP) lint
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest tests --ignore=tests/benchmarks -q $(PYTEST_ARGS)

bench: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest tests/benchmarks -s -q -p no:cacheprovider

# The full desk-database soak: 10,000 trades, 250 kills, 200 network cuts, 20 database restarts.
soak: $(STAMP)
	QE_SOAK=full QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest tests/benchmarks/test_bench_sync.py -k soak -s -q -p no:cacheprovider -o faulthandler_timeout=0

package: $(STAMP)
	$(BIN)/python installer/build.py

# Refresh the pinned versions (after changing dependencies in pyproject.toml).
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/python -m pip install -q -e ".[dev]"
	.lockenv/bin/python -m pip freeze --exclude-editable | grep -v '^-e' > constraints.txt
	rm -rf .lockenv

clean:
	rm -rf $(VENV) build dist .bench .pytest_cache .ruff_cache

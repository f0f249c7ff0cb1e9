# Every target installs what it needs itself: a clean clone needs only python3, a JDK 17 and Maven.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP := $(VENV)/.synced-stamp
PYTEST_ARGS ?=

.PHONY: install test lint format bench demo demo-restore proto clean

install: $(STAMP)

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(STAMP): $(BIN)/uv pyproject.toml uv.lock
	$(BIN)/uv sync --frozen --quiet
	touch $@

test: $(STAMP)
	$(BIN)/python -m tools.localcluster fetch
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests tools bench
	$(BIN)/ruff format --check src tests tools bench
	$(BIN)/mypy src tools
	$(BIN)/lint-imports --no-cache

format: $(STAMP)
	$(BIN)/ruff format src tests tools bench
	$(BIN)/ruff check --fix src tests tools bench

bench: $(STAMP)
	$(BIN)/python -m tools.localcluster fetch
	$(BIN)/python -m bench

demo: $(STAMP)
	$(BIN)/python -m tools.localcluster fetch
	$(BIN)/python -m tools.demo

demo-restore: $(STAMP)
	$(BIN)/python -m tools.localcluster fetch
	$(BIN)/python -m tools.demo restore

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

proto: $(STAMP)
	$(BIN)/python tools/genproto.py

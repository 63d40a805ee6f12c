# One entry point per task; CI (.ci/run) calls `make test`.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test check style types bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The embedded demo: SQLite + the in-memory broker, nothing else to install.
demo: $(STAMP)
	$(BIN)/livesync demo

## The whole test suite (style, types, then pytest).
test: $(STAMP) check
	$(BIN)/pytest

check: style types

style: $(STAMP)
	$(BIN)/ruff check livesync tests bench migrations
	$(BIN)/ruff format --check livesync tests bench migrations

types: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/write_overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info livesync-demo.db

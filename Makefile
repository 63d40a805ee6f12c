# One entry point per task; CI (.ci/run) calls `make test`.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

JS := client-js
JS_STAMP := $(JS)/node_modules/.installed
DASH := examples/dashboard
DASH_STAMP := $(DASH)/node_modules/.installed
TODO := examples/todo
TODO_STAMP := $(TODO)/node_modules/.installed

.PHONY: install demo test check style types pytest js js-unit js-integration js-examples bench bench-quick clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The embedded demo: SQLite + the in-memory broker, nothing else to install.
demo: $(STAMP)
	$(BIN)/livesync demo

$(JS_STAMP): $(JS)/package.json $(JS)/package-lock.json
	cd $(JS) && npm ci --no-audit --no-fund --loglevel=error
	touch $(JS_STAMP)

$(DASH_STAMP): $(DASH)/package.json $(DASH)/package-lock.json
	cd $(DASH) && npm ci --no-audit --no-fund --loglevel=error
	touch $(DASH_STAMP)

$(TODO_STAMP): $(TODO)/package.json $(TODO)/package-lock.json
	cd $(TODO) && npm ci --no-audit --no-fund --loglevel=error
	touch $(TODO_STAMP)

## The whole test suite: style, types, pytest, then the JavaScript client's tests.
test: check pytest js

pytest: $(STAMP)
	$(BIN)/pytest

## The JavaScript client: tsc, unit tests, then integration and browser tests against
## real gateways (PostgreSQL + Redis; chromium for the browser test).
js: js-unit js-integration js-examples

js-unit: $(JS_STAMP)
	cd $(JS) && npm test

js-integration: $(STAMP) $(JS_STAMP)
	cd $(JS) && node --test --test-concurrency=1 test/integration/ test/browser/

## The examples in a real browser: the dashboard (two pages, writes, restarts, lag at 200
## writes/s) and the to-do list (two pages in sync, refused writes shown and rolled back).
js-examples: $(STAMP) $(DASH_STAMP) $(TODO_STAMP)
	cd $(DASH) && npm test
	cd $(TODO) && npm test

check: style types

style: $(STAMP)
	$(BIN)/ruff check livesync tests bench migrations examples
	$(BIN)/ruff format --check livesync tests bench migrations examples

types: $(STAMP)
	$(BIN)/mypy

## Every benchmark (about 20 minutes on 2 cores): bench/results/<date>.json, the generated part
## of docs/performance.md and its plots. `make bench-quick` is a smoke run of a few minutes.
$(BENCH_STAMP): $(STAMP) pyproject.toml bench/package.json bench/package-lock.json
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	cd bench && npm ci --no-audit --no-fund --loglevel=error
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench

bench-quick: $(BENCH_STAMP)
	$(BIN)/python -m bench --quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info livesync-demo.db \
		$(JS)/node_modules $(DASH)/node_modules $(TODO)/node_modules bench/node_modules test-artifacts

# The README's two commands: `make demo` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NODE_STAMP := node_modules/.package-lock.json

.PHONY: setup demo test lint typecheck unit chaos fuzz bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

setup: $(STAMP) $(NODE_STAMP)

demo: setup
	$(BIN)/rolecall demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy
	$(BIN)/mypy --platform win32 -p rolecall.worker -p rolecall.storage -p rolecall.schemas

unit: setup
	$(BIN)/python -m pytest

test: lint typecheck unit

chaos: setup
	$(BIN)/python -m pytest -m chaos tests/test_chaos.py -s -o addopts=""

# the message decoder and the archive extractor, 10,000 hypothesis cases each (tests/test_fuzz.py)
fuzz: setup
	$(BIN)/python -m pytest -m fuzz tests/test_fuzz.py -o addopts=""

bench: setup
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache

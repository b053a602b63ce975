# One entry point for humans, CI and benchmarks. `make test` works on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install lint typecheck test unit integration bench demo clean

$(STAMP): pyproject.toml
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server (Debian package)"; \
	  (apt-get install -y redis-server >/dev/null 2>&1 || \
	   (apt-get update >/dev/null && apt-get install -y redis-server >/dev/null)); }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -q tests/unit tests/component

integration: install
	$(BIN)/pytest -q -m integration tests/integration

test: lint typecheck
	$(BIN)/pytest -q

bench: install
	$(BIN)/python -m bench.throughput

demo: install
	$(BIN)/leadpulse demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

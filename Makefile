# One entry point for humans, CI and benchmarks. `make test` works on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install lint typecheck test unit integration bench demo clean

$(STAMP): pyproject.toml
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v docker-compose >/dev/null 2>&1 || missing="$$missing docker-compose"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get install -y $$missing >/dev/null 2>&1 || \
	  { apt-get update >/dev/null && apt-get install -y $$missing >/dev/null; }; \
	fi
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

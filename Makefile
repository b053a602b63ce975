# One entry point for humans, CI and benchmarks. `make test` works on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install lint typecheck test unit integration mutate bench demo clean

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
	$(BIN)/pip install -q -e '.[dev,test]'
	@touch $(STAMP)

# analytics.js (npm) and Debian's Chromium, for the browser tests
BROWSER_STAMP := tests/browser/node_modules/.installed

$(BROWSER_STAMP): tests/browser/package.json tests/browser/package-lock.json
	@test -x /usr/bin/chromium || { \
	  echo "installing Debian package: chromium"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >/dev/null 2>&1 || \
	  { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >/dev/null; }; }
	cd tests/browser && npm ci --no-audit --no-fund
	@touch $(BROWSER_STAMP)

# the real AsyncAPI parser (npm), for tests/asyncapi
ASYNCAPI_STAMP := tests/asyncapi/node_modules/.installed

$(ASYNCAPI_STAMP): tests/asyncapi/package.json tests/asyncapi/package-lock.json
	@command -v node >/dev/null 2>&1 || { echo "tests/asyncapi needs Node.js 20+ (node)"; exit 1; }
	cd tests/asyncapi && npm ci --no-audit --no-fund
	@touch $(ASYNCAPI_STAMP)

install: $(STAMP) $(BROWSER_STAMP) $(ASYNCAPI_STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy reads streams/, scoring/, schemas/ as leadpulse.* (how they install) through links
TYPECHECK_TREE := $(VENV)/typecheck/leadpulse

typecheck: install
	@mkdir -p $(TYPECHECK_TREE)
	@for p in streams scoring schemas; do ln -sfn ../../../$$p $(TYPECHECK_TREE)/$$p; done
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -q tests/unit tests/component

integration: install
	$(BIN)/pytest -q -m integration tests/integration

test: lint typecheck
	$(BIN)/pytest -q

# Mutation testing of scoring/ against tests/unit + tests/component (mutmut, configured in
# pyproject.toml); not part of `make test`: it takes a long while. Results stay in mutants/
# (`.venv/bin/mutmut show NAME` shows one mutant); a rerun only retests what changed.
mutate: install
	$(BIN)/mutmut run
	$(BIN)/mutmut results

# `make bench` (throughput), `make bench BENCH=collector`, `BENCH=latency`, `BENCH=sweep`,
# `BENCH=delivery`
BENCH ?= throughput
bench: install
	$(BIN)/python -m bench.$(BENCH)

demo: install
	$(BIN)/leadpulse demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis mutants

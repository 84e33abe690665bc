# seiwallet's tasks. Each is idempotent and quick the second time: installs are remembered by
# stamp files (.venv/.installed, node_modules/.installed) that are newer than what they installed from.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

VENV := .venv
BIN := $(VENV)/bin
PYTHON ?= python3
VENV_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
SYSTEM_PACKAGES := postgresql-15 softhsm2 chromium fonts-liberation
CREATECLUSTER_CONF := /etc/postgresql-common/createcluster.d/seiwallet.conf
ALEMBIC := $(BIN)/alembic -c src/seiwallet/db/alembic.ini

.PHONY: help deps venv node system-deps lint test demo bench migration clean distclean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

deps: venv node system-deps ## everything the tests and the demo need

venv: $(VENV_STAMP) ## the Python virtualenv with seiwallet installed editable, with dev tools

$(VENV_STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

node: $(NODE_STAMP) ## the pinned chain tooling (anvil, solc, contracts) from package-lock.json

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# PostgreSQL's binaries for the throwaway test cluster, SoftHSM2 for the PKCS#11 signer tests,
# Debian's Chromium (driven by Playwright; `playwright install` is never run, no browser is
# downloaded) and Liberation fonts so that screenshots render the same everywhere.
# dpkg decides: nothing is fetched when all are installed.
system-deps: ## Debian packages: postgresql-15, softhsm2, chromium, fonts-liberation (installs as root when missing)
	@if ! command -v dpkg >/dev/null; then \
	  echo "system-deps: not a Debian system; install PostgreSQL 15, SoftHSM2 and Chromium" \
	       "(at /usr/bin/chromium) yourself (or set SEIWALLET_TEST_POSTGRES_URL)" >&2; \
	  exit 0; \
	fi; \
	missing=""; \
	for package in $(SYSTEM_PACKAGES); do \
	  dpkg -s "$$package" 2>/dev/null | grep -q '^Status: install ok installed' \
	    || missing="$$missing $$package"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "error: missing Debian packages:$$missing; run 'sudo make system-deps'" >&2; \
	  exit 1; \
	fi; \
	mkdir -p "$$(dirname $(CREATECLUSTER_CONF))"; \
	echo 'create_main_cluster = false' > $(CREATECLUSTER_CONF); \
	apt-get update; \
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing

lint: venv ## ruff (lint + format), mypy --strict, import contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy src
	$(BIN)/lint-imports

test: deps lint ## lint, then every test on SQLite and PostgreSQL
	$(BIN)/pytest

demo: venv node ## the whole platform on the local chain: seiwallet up
	$(BIN)/seiwallet up

bench: deps ## every benchmark, quick mode
	@shopt -s nullglob; scripts=(bench/*.py); \
	if [ $${#scripts[@]} -eq 0 ]; then echo "no benchmarks in bench/"; exit 0; fi; \
	for script in "$${scripts[@]}"; do \
	  echo "== $$script"; \
	  $(BIN)/python "$$script" --quick; \
	done

# Autogenerate compares the models with a scratch SQLite database migrated to head, so the
# revision holds only what changed. Review it, then commit it with the models.
migration: venv ## new Alembic revision from the models: make migration m="add invoices"
	@if [ -z "$(m)" ]; then echo 'usage: make migration m="what the revision changes"' >&2; exit 2; fi
	@scratch=$$(mktemp -d); trap 'rm -rf "$$scratch"' EXIT; \
	url="sqlite:///$$scratch/migration.sqlite3"; \
	$(ALEMBIC) -x url="$$url" upgrade head; \
	$(ALEMBIC) -x url="$$url" revision --autogenerate -m "$(m)"

clean: ## caches and build output (keeps .venv and node_modules)
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache src/*.egg-info bench/results
	find . -path ./.venv -prune -o -path ./node_modules -prune -o \
	  -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean ## also the virtualenv and node_modules
	rm -rf $(VENV) node_modules

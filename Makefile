# Nestpoint developer commands. `make help` lists them.
#
# A fresh machine needs only Python 3.11+ and make: every target that runs code first
# installs what is missing (uv, then the project's virtual environment in .venv).

.DEFAULT_GOAL := help
SHELL := /bin/bash

# uv on PATH, or the one `make install` put into Python's site-packages.
UV = $(shell command -v uv 2>/dev/null || echo python3 -m uv)
# Run a command in the project's environment without re-resolving it.
RUN = $(UV) run --no-sync
# Installing again is needed only when the dependency declarations change.
INSTALLED := .venv/.nestpoint-installed
DEPENDENCY_FILES := pyproject.toml $(wildcard uv.lock plugins/*/pyproject.toml)

.PHONY: help install run test lint format services migrate serve worker demo clean

help: ## List the targets
	@echo "Usage: make <target>"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: $(INSTALLED) ## Install uv if missing, then the project and its dev tools into .venv

$(INSTALLED): $(DEPENDENCY_FILES)
	@scripts/install.sh
	@touch $@

run: install ## Start the demo: migrate SQLite, add example tenants, print keys, serve on :8000
	$(RUN) nestpoint demo

test: install ## The whole check: lint, types, imports, tests on SQLite and on PostgreSQL + Redis
	@scripts/test.sh

lint: install ## ruff check, ruff format --check, mypy and import-linter contracts
	@scripts/test.sh --lint-only

format: install ## Rewrite files with ruff format and apply ruff's safe fixes
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

services: ## Start PostgreSQL and Redis in CI (CI=true) if down, and wait until they answer
	@scripts/ensure-services.sh

migrate: install ## Apply database migrations (NESTPOINT_MIGRATION_DATABASE_URL, else the app's URL)
	$(RUN) nestpoint migrate

serve: install ## Serve the API (in-process worker unless NESTPOINT_REDIS_URL is set)
	$(RUN) nestpoint serve

worker: install ## Run a Dramatiq worker and the periodic scheduler (needs NESTPOINT_REDIS_URL)
	$(RUN) nestpoint worker

demo: install ## Prepare the demo and print fresh keys, without serving (see `make run`)
	$(RUN) nestpoint demo --no-serve

.PHONY: bench
bench: install ## Benchmarks (bench/README.md): HTTP vs pgbench ceiling, batch jobs vs psql
	@UV_RUN="$(RUN)" bench/run.sh $(BENCH_ARGS)

clean: ## Remove caches and the embedded demo database (keeps .venv)
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -f var/nestpoint.db var/nestpoint.db-wal var/nestpoint.db-shm

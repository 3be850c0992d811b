# restore-assets: `make demo` and `make test` set everything up, then run.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-stamp
PG_STAMP := $(VENV)/.pg-stamp
DEMO_ROOT ?= .demo
PYTEST_ARGS ?=
# two pytest workers (pytest-xdist), one test module per worker: most tests wait on PostgreSQL
PYTEST_WORKERS ?= 2

.PHONY: setup demo test lint bench cdk-synth clean

CHROMIUM_STAMP := $(VENV)/.chromium-stamp

setup: $(STAMP) $(PG_STAMP) $(CHROMIUM_STAMP)

# Debian's chromium for the real-browser e2e test (Playwright drives it; no browser download).
$(CHROMIUM_STAMP): scripts/ensure-chromium.sh | $(STAMP)
	bash scripts/ensure-chromium.sh
	touch $@

# PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup): install Debian's package if missing.
$(PG_STAMP): scripts/ensure-postgres.sh | $(STAMP)
	bash scripts/ensure-postgres.sh
	touch $@

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,cdk]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup lint
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

demo: setup
	$(BIN)/restore-assets demo run --root $(DEMO_ROOT)

bench: setup
	$(BIN)/python bench/ddl_bench.py
	$(BIN)/python bench/restore_bench.py
	$(BIN)/python bench/compare_bench.py

cdk-synth: setup
	cd infra/cdk && ../../$(BIN)/python app.py

clean:
	-$(BIN)/restore-assets fleet down --root $(DEMO_ROOT) --purge
	rm -rf $(VENV)

# Two commands do everything on a fresh machine:
#   make demo   install, then run the whole pipeline on embedded defaults
#   make test   install, then run the test suite
.PHONY: setup demo demo-replicas test lint bench clean

VENV := .venv
PY := $(VENV)/bin/python
RECSYS := $(VENV)/bin/recsys
DEMO_LAKE ?= ./lake
DEMO_DATE ?= 2026-11-27

setup:
	@bash scripts/setup.sh

demo: setup
	@bash scripts/demo.sh

# The production shape on one machine: two replicas, one Redis, nginx in front.
demo-replicas: setup
	@DEMO_REPLICAS=2 DEMO_LIVE_STORE=redis bash scripts/demo.sh

# lint, types, the layering contracts (pyproject's [tool.importlinter]), then the suite
# (scripts/test.sh: two shards side by side, then the rehearsal alone; RECSYS_TEST_SERIAL=1: one process)
test: setup
	$(VENV)/bin/ruff check recsys dags plugins tests benchmarks
	$(VENV)/bin/ruff format --check recsys dags plugins tests benchmarks
	$(VENV)/bin/mypy recsys
	$(VENV)/bin/lint-imports
	@bash scripts/test.sh

lint: setup
	$(VENV)/bin/ruff check recsys dags plugins tests benchmarks
	$(VENV)/bin/ruff format --check recsys dags plugins tests benchmarks
	$(VENV)/bin/mypy recsys
	$(VENV)/bin/lint-imports

clean:
	rm -rf lake registry runs mlruns .airflow .pytest_cache .mypy_cache .ruff_cache

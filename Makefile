# Two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test check proto bench loadtest clean venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,loadtest]'
	touch $(STAMP)

venv: $(STAMP)

## make run: start the node on an embedded PostgreSQL with demo data (Ctrl-C stops it)
run: $(STAMP)
	$(VENV)/bin/idnode serve --demo

## make test: the whole suite, against real PostgreSQL, gRPC and HTTP servers on loopback
## (.ci/test-deps.sh first: the Debian packages of the Java interop clients and Chromium)
test: check
	.ci/test-deps.sh
	$(PY) -m pytest -q $(PYTEST_ARGS)

## make check: the static checks (seconds): ruff, mypy (strict on core/, crypto/, store/) and
## the layer contracts (import-linter; pyproject.toml [tool.importlinter])
check: $(STAMP)
	$(VENV)/bin/ruff check idnode tests bench loadtest
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

## make proto: regenerate idnode/v1 from proto/ (tests fail when it is stale)
proto: $(STAMP)
	$(PY) -m idnode.protogen

## make bench: benchmark scripts, ratios against same-run baselines (docs/PERFORMANCE.md)
bench: $(STAMP)
	$(PY) bench/run_all.py

## make loadtest: capacity run with locust, report and plots in loadtest/out (docs/CAPACITY.md)
loadtest: $(STAMP)
	$(PY) loadtest/capacity.py $(LOADTEST_ARGS)

clean:
	rm -rf $(VENV) .idnode .pytest_cache

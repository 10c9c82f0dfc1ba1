# blindmatch developer entry points. Every target creates .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test test-slow serve bench lint fuzz reliability clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip >/dev/null
	$(PY) -m pip install -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/blindmatch sim run --quick --out runs/quick

test: $(STAMP)
	$(PY) -m pytest -m "not slow" -q -n 2 --dist loadgroup

test-slow: $(STAMP)
	$(PY) -m pytest -m slow -q

serve: $(STAMP)
	test -d runs/demo/set || $(VENV)/bin/blindmatch demo --out runs/demo --build-only
	$(VENV)/bin/blindmatch serve --db runs/demo/set --host 127.0.0.1 --port 8000

bench: $(STAMP)
	$(VENV)/bin/blindmatch bench --suite all --out runs/bench

# Every package: ruff, then mypy --strict (tools/typecheck.sh maps the folders onto blindmatch.*).
LINT_DIRS := protocol client server sim bench reliability blindmatch tests fuzz

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_DIRS)
	MYPY=$(VENV)/bin/mypy tools/typecheck.sh

# Full budgets (about 35 minutes on 2 cores; every stage is bounded, so it stops on its own).
# RELIABILITY.md is replaced even when a row fails (the report shows which); the exit code says so.
reliability: $(STAMP)
	$(PY) -m blindmatch.reliability --out runs/reliability; rc=$$?; \
	  test -f runs/reliability/RELIABILITY.md && cp runs/reliability/RELIABILITY.md RELIABILITY.md; exit $$rc

fuzz: $(STAMP)
	$(PY) fuzz/run.py --seconds 600

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache

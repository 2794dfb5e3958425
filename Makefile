# make run   - start the service (web + worker) on this machine, SQLite, embedded defaults
# make demo  - the same against our fake DumplingAI with sample accounts (no key needed)
# make test  - every test (SQLite, and PostgreSQL when it can be found or started)
# make fuzz  - random exploration of the property tests (make test runs a fixed set)
# make bench - every bench/bench_*.py (bench_scale.py in its quick mode, ~1-2 min)
# make bench-scale - the simulated run at 100k watches quoted in docs/SCALING.md (< 10 min)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run demo test fuzz bench bench-scale clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: install
	scripts/run.sh

demo: install
	scripts/demo.sh

test: install
	scripts/test.sh

# Random exploration of the property tests (not in CI: `make test` runs a fixed set).
# A failure it finds is kept in .hypothesis/; add it as an @example, then fix it.
fuzz: install
	HYPOTHESIS_PROFILE=fuzz scripts/test.sh -q $$(grep -l '@given' tests/*.py)

bench: install
	for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

bench-scale: install
	$(BIN)/python bench/bench_scale.py --full

clean:
	rm -rf $(VENV) instance .pytest_cache .hypothesis

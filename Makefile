# Two commands do all the set-up on a fresh machine:
#   make run    start the bundled service on 127.0.0.1:8000 (PORT overrides it)
#   make test   run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install bench lint mutate clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(STAMP)

run: $(STAMP) $(if $(wildcard package.json),node_modules/.installed)
	./deploy/run.sh

test: $(STAMP) $(if $(wildcard package.json),node_modules/.installed)
	./deploy/test-setup.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The fault suite at its full counts (tests/faults; `make test` runs a short version of it). It
# writes tests/faults/results.json and regenerates RELIABILITY.md from it, pass or fail; the
# processes' logs stay in var/faults-tmp until the next run.
.PHONY: faults
faults: $(STAMP) $(if $(wildcard package.json),node_modules/.installed)
	mkdir -p var && CHUNKY_FAULTS=full CHUNKY_FAULT_RESULTS=tests/faults/results.json \
	  $(BIN)/python -m pytest -p no:cacheprovider -rxX --basetemp=var/faults-tmp tests/faults $(PYTEST_ARGS); \
	  status=$$?; \
	  $(BIN)/python -m tests.faults.report tests/faults/results.json RELIABILITY.md; exit $$status

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench $(BENCH_ARGS)

# Mutation testing ([tool.mutmut] in pyproject.toml): every mutant of the upload rules,
# the store and finalization must make a fast unit test fail. Results stay in mutants/;
# `$(BIN)/mutmut show <name>` prints one survivor's diff.
mutate: $(STAMP)
	CHUNKY_TEST_FUZZ_EXAMPLES=$${CHUNKY_TEST_FUZZ_EXAMPLES:-20} $(BIN)/mutmut run $(MUTMUT_ARGS)
	$(BIN)/mutmut results

lint: $(STAMP)
	$(BIN)/ruff check chunky_redis tasks tests deploy bench

clean:
	rm -rf $(VENV) node_modules var mutants

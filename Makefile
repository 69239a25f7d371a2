# Two commands do all the set-up on a fresh machine:
#   make run    start the bundled service on 127.0.0.1:8000 (PORT overrides it)
#   make test   run the whole test suite (what CI runs)
# and for working on it:
#   make test-fast  the unit tests alone: no server, worker, browser or fault injection (~30 s of CPU)
#   make dist       build the wheel and the sdist into dist/ and check their metadata
#   make typecheck  mypy --strict over the package ([tool.mypy] in pyproject.toml)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Every optional extra (so that every configuration can be tested) and the dev dependency group.
EXTRAS := all
# The markers of tests that start processes or take long (pyproject.toml lists them).
FAST := not live and not browser and not fault and not slow and not packaging

.PHONY: run test test-fast install bench lint typecheck dist mutate docs docs-serve clean

# Dependency groups (PEP 735) need pip >= 25.1: the venv's own pip is upgraded first.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade 'pip>=25.1'
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]' --group dev
	touch $(STAMP)

# npm run build-demo bundles the Uppy demo page (ES modules) with esbuild into node_modules/.chunky-demo/.
node_modules/.installed: package.json package-lock.json deploy/chunky_site/uppy/uppy_demo.js
	npm ci --no-audit --no-fund --loglevel=error
	npm run --silent build-demo
	touch $@

install: $(STAMP)

run: $(STAMP) $(if $(wildcard package.json),node_modules/.installed)
	./deploy/run.sh

# The whole suite measures coverage and fails under the floor of pyproject.toml's
# [tool.coverage.report]; a subset (PYTEST_ARGS) is not held to it.
test: $(STAMP) $(if $(wildcard package.json),node_modules/.installed)
	./deploy/test-setup.sh
	$(BIN)/python -m pytest $(if $(PYTEST_ARGS),,--cov) $(PYTEST_ARGS)

# Starts nothing but uses the Redis at 127.0.0.1:6379 (the backend fixture's second run; make test
# starts one when none answers).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m '$(FAST)' $(PYTEST_ARGS)

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
	$(BIN)/python -m pip install --quiet --group bench
	$(BIN)/python -m bench $(BENCH_ARGS)

# Mutation testing ([tool.mutmut] in pyproject.toml): every mutant of the upload rules,
# the store and finalization must make a fast unit test fail. Results stay in mutants/;
# `$(BIN)/mutmut show <name>` prints one survivor's diff.
mutate: $(STAMP)
	CHUNKY_TEST_FUZZ_EXAMPLES=$${CHUNKY_TEST_FUZZ_EXAMPLES:-20} $(BIN)/mutmut run $(MUTMUT_ARGS)
	$(BIN)/mutmut results

# The documentation site (Sphinx + MyST, docs/conf.py), with every warning an error; its
# generated reference parts must be current (python docs/generate.py rewrites them).
DOCS_STAMP := $(VENV)/.docs-installed
$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet --group docs
	touch $@

docs: $(DOCS_STAMP)
	$(BIN)/python docs/generate.py --check
	$(BIN)/python -m sphinx -W --keep-going -n -q -b html docs docs/_build/html

# Serve the built site on http://127.0.0.1:8001/ (DOCS_PORT overrides it).
docs-serve: docs
	$(BIN)/python -m http.server --bind 127.0.0.1 --directory docs/_build/html $(or $(DOCS_PORT),8001)

lint: $(STAMP)
	$(BIN)/ruff check chunky_redis tasks tests deploy bench

# mypy, strict, over chunky_redis/ (files and options: [tool.mypy] in pyproject.toml). The Django
# plugin imports tests.settings, so it runs from the repository's root.
typecheck: $(STAMP)
	$(BIN)/python -m mypy

dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/python -m twine check --strict dist/*

clean:
	rm -rf $(VENV) node_modules var dist build mutants docs/_build

# nova-autopilot: every set-up step a fresh machine needs is behind these targets.
#   make demo   - install the package alone into .venv and run the embedded demo
#   make test   - install the package with its test and docs tools into .venv, start the local
#                 services, lint (ruff, and the layer contracts of .importlinter), type-check,
#                 build the documentation, run every test

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The package and what it needs to run (all the demo needs) ...
PACKAGE_STAMP := $(VENV)/.installed-package
# ... and with the test and documentation tools and the journal's drivers (everything else).
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck docs unit sample bench novabox-up novabox-down novabox-status clean

$(PACKAGE_STAMP): setup.py pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e .
	touch $@

$(STAMP): $(PACKAGE_STAMP)
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e '.[test,docs]'
	touch $@

demo: $(PACKAGE_STAMP)
	$(BIN)/nova-autopilot demo

test: $(STAMP)
	scripts/services-up
	$(MAKE) --no-print-directory lint typecheck docs
	# Three workers on two cores: much of the suite waits (on a broker outage, a Nova
	# box, a daemon's retry) rather than computes.
	$(BIN)/python -m pytest -n 3 --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports .importlinter --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy

docs: $(STAMP)
	$(BIN)/mkdocs build --strict

unit: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup tests/unit

sample: $(STAMP)
	$(BIN)/oslo-config-generator --config-file config/oslo-config-generator.conf

bench: $(STAMP)
	$(BIN)/python -m bench

novabox-up: $(STAMP)
	scripts/novabox up

novabox-down:
	scripts/novabox down

novabox-status:
	scripts/novabox status

clean:
	rm -rf $(VENV) build *.egg-info operator/*.egg-info .pytest_cache .mypy_cache .ruff_cache

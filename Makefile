# One command to set up and run the sample, one to run the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
export RAY_AUTH_MODE ?= disabled

.PHONY: setup sample test bench
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,bench]"
	touch $@

sample: setup
	$(VENV)/bin/cdp-ray run

test: setup
	$(PY) -m pytest

bench: setup
	$(PY) -m benchmarks

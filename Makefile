# lasercc: every target sets itself up on a fresh machine and is quick when already set up.
#   make demo   compile the bundled example, simulate it, compare with onnxruntime, print the report
#   make test   the whole suite, Lava tests included
SHELL := /bin/bash
PYTHON311 ?= $(shell command -v python3.11 || command -v python3)
PYENV_310 := $(shell pyenv prefix 3.10 2>/dev/null | head -n1)
PYTHON310 ?= $(if $(PYENV_310),$(PYENV_310)/bin/python,$(shell command -v python3.10))
TORCH_PIN := torch==2.13.0
VENV := .venv
LAVA_VENV := .venv-lava
PY := $(VENV)/bin/python
LAVA_PY := $(LAVA_VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: all setup demo test lint bench clean

all: test

setup: $(VENV)/.stamp $(LAVA_VENV)/.stamp

$(VENV)/.stamp: pyproject.toml Makefile
	@test -x "$(PY)" || $(PYTHON311) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_PIN)"
	$(PY) -m pip install -q -e ".[dev]"
	@touch $@

# Lava (lava-nc 0.10.0) supports Python 3.10 and numpy < 2 only: a second environment.
$(LAVA_VENV)/.stamp: pyproject.toml Makefile
	@test -n "$(PYTHON310)" || { echo "Python 3.10 not found: install it (pyenv install 3.10) or set PYTHON310=..."; exit 2; }
	@test -x "$(LAVA_PY)" || $(PYTHON310) -m venv $(LAVA_VENV)
	$(LAVA_PY) -m pip install -q --upgrade pip
	$(LAVA_PY) -m pip install -q "lava-nc==0.10.0" "numpy<2" "networkx<3" -e . pytest hypothesis
	@touch $@

demo: setup
	$(PY) examples/demo.py

test: setup
	$(PY) -m pytest -q -n 2 $(PYTEST_ARGS) tests

lint: $(VENV)/.stamp
	$(VENV)/bin/ruff check lasercc tests examples bench
	$(VENV)/bin/mypy

bench: setup
	$(PY) -m pytest -q -m bench tests
	$(PY) bench/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(LAVA_VENV) .pytest_cache .hypothesis

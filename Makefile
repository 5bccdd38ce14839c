# Quick start: `make reproduce` and `make test`. Both (re)build .venv from pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test reproduce reproduce-quick bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadfile

reproduce: $(STAMP)
	$(BIN)/infonce-lab reproduce --out figures

reproduce-quick: $(STAMP)
	$(BIN)/infonce-lab reproduce --quick --out figures

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/infonce-lab bench

clean:
	rm -rf $(VENV) build *.egg-info

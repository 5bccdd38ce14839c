# Quick start: `make reproduce` and `make test`. Both (re)build .venv from pyproject.toml,
# installed against the exact versions of constraints.txt (the lock; `make lock` refreshes it).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := constraints.txt
# pip installs without byte-compiling (one module at a time); compileall then compiles the
# environment and the project on every core. The .pyc files matter: where Python may not
# write them at import time (PYTHONDONTWRITEBYTECODE, as on CI machines), every process
# would otherwise compile jax from source again (2 s per process; the suite starts hundreds).
PIP := $(BIN)/python -m pip install --quiet --no-compile --constraint $(LOCK)
# (torch's testing helpers for newer Pythons are skipped: they do not compile on older ones)
COMPILE := $(BIN)/python -m compileall -q -j 0 -x '/torch/testing/_internal/py3' $(VENV)/lib sims theory > /dev/null

.PHONY: venv test reproduce reproduce-quick constant verify bench lock clean

venv: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	PIP_CONSTRAINT=$(CURDIR)/$(LOCK) $(PIP) -e '.[test]'
	$(COMPILE)
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder

reproduce: $(STAMP)
	$(BIN)/infonce-lab reproduce --out figures

reproduce-quick: $(STAMP)
	$(BIN)/infonce-lab reproduce --quick --out figures

# the certified constant searched over the three geometry families (about 20 min on 2 cores)
constant: $(STAMP)
	$(BIN)/infonce-lab constant --out figures

# every ball-head run of the bundled sweeps retrained and checked against the certified
# lower bound of its class at its certified Lipschitz bound (1070 s of CPU time: 29 min on a
# 2-core CPU shared with other work)
verify: $(STAMP)
	$(BIN)/infonce-lab verify --out figures

bench: $(STAMP)
	PIP_CONSTRAINT=$(CURDIR)/$(LOCK) $(PIP) -e '.[bench]'
	$(COMPILE)
	$(BIN)/infonce-lab bench

# The lock: resolve pyproject.toml's ranges in a throw-away environment and write every
# installed version (pip and the build backend included) to constraints.txt. After a
# refresh, rerun `make test` and `make reproduce` and commit the lock with the figures.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip setuptools
	.lock-venv/bin/python -m pip install --quiet '.[test]'
	{ echo "# The lock: exact versions for make test / reproduce / bench. Written by 'make lock'"; \
	  echo "# on Python $$(.lock-venv/bin/python -c 'import platform; print(platform.python_version())'); refresh with 'make lock'."; \
	  .lock-venv/bin/python -m pip freeze --all --exclude infonce-lab; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf .lock-venv build *.egg-info

clean:
	rm -rf $(VENV) build *.egg-info

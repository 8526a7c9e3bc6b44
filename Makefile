# The README's commands. Everything runs inside .venv, created on first use.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The venv is rebuilt when a requirements file changes.
STAMP := $(VENV)/.installed-$(shell cat requirements.txt Makefile | sha1sum | cut -c1-12)
PIP_QUIET := -q --disable-pip-version-check
# pip on this machine warns about missing local indexes; hide those lines only.
PIP_FILTER := grep -v "is ignored: it is neither a file nor a directory" || true

.PHONY: demo test bench venv clean

venv: $(STAMP)

$(STAMP): requirements.txt Makefile
	@echo "Setting up $(VENV) (torch CPU wheel first, so that no CUDA packages are pulled)…"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install $(PIP_QUIET) --upgrade pip wheel setuptools 2>&1 | $(PIP_FILTER)
	@$(PY) -m pip install $(PIP_QUIET) torch==2.13.0 2>&1 | $(PIP_FILTER)
	@$(PY) -m pip install $(PIP_QUIET) -r requirements.txt 2>&1 | $(PIP_FILTER)
	@DS_BUILD_OPS=0 $(PY) -m pip install $(PIP_QUIET) --no-build-isolation "deepspeed==0.19.8" 2>&1 | $(PIP_FILTER)
	@$(PY) -c "import importlib.util as u, torch, django; assert u.find_spec('deepspeed'), 'deepspeed missing'"
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: venv
	$(PY) manage.py demo

test: venv
	$(PY) -m pytest

bench: venv
	ONLY=$(ONLY) $(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) var

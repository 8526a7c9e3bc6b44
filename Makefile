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

.PHONY: demo test bench venv clean gpu-check gpu-wheels

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

# On a CUDA machine, with its own Python (torch with CUDA, transformers, DeepSpeed from
# var/gpu-wheels): a short GRPO (DeepSpeed ZeRO-2, bf16) and SFT stage through the real CLI ->
# benchmarks/results/gpu_check.json. `make gpu-check ARGS=--cpu` is the CPU dry run.
GPU_PYTHON ?= python3
gpu-check:
	$(GPU_PYTHON) benchmarks/gpu_check.py $(ARGS)

# Here, where the package registry is reachable: DeepSpeed (no ops compiled at install) and its
# dependencies but torch and numpy (at the versions of .venv) as CPython $(GPU_PYVER) wheels, for a
# GPU machine without network: pip install --no-index --find-links var/gpu-wheels deepspeed
GPU_PYVER ?= 3.12
GPU_WHEELS := var/gpu-wheels
DS_DEPS := hjson|py-cpuinfo|msgpack|ninja|einops|psutil|pydantic|pydantic[-_]core|annotated[-_]types|typing[-_]inspection|typing[-_]extensions|packaging|tqdm
gpu-wheels: venv
	@mkdir -p $(GPU_WHEELS)
	DS_BUILD_OPS=0 $(PY) -m pip wheel $(PIP_QUIET) --no-deps --no-build-isolation "deepspeed==0.19.8" -w $(GPU_WHEELS)
	$(PY) -m pip freeze | grep -iE "^($(DS_DEPS))==" > $(GPU_WHEELS)/deepspeed-deps.txt
	$(PY) -m pip download $(PIP_QUIET) --no-deps --only-binary=:all: --python-version $(GPU_PYVER) --implementation cp \
		--platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
		-d $(GPU_WHEELS) -r $(GPU_WHEELS)/deepspeed-deps.txt
	@ls $(GPU_WHEELS)

clean:
	rm -rf $(VENV) var

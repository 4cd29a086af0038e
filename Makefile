# Two set-up commands: `make demo` and `make test`. Both create .venv if missing and install torch FIRST from the
# local CPU wheel, so pip never resolves a multi-GB CUDA build for the packages that depend on torch.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TORCH_VERSION := 2.13.0

.PHONY: demo test install clean

$(VENV)/.installed: setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==$(TORCH_VERSION)
	$(PIP) install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q tests

demo: install
	$(PY) scripts/demo.py

clean:
	rm -rf $(VENV) demo_output

# Two set-up commands: `make demo` and `make test`. Both create .venv if missing and install torch FIRST from the
# local CPU wheel, so pip never resolves a multi-GB CUDA build for the packages that depend on torch.
# Every install into .venv goes through constraints.txt (the exact versions the suite passes with), so a new upstream
# release cannot break `make test` or CI; `make test-latest` runs the suite against the newest releases instead, in
# a separate .venv-latest, and `make constraints` re-freezes constraints.txt.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TORCH_VERSION := 2.13.0
CONSTRAINTS := constraints.txt
LATEST_VENV := .venv-latest
# What pytest runs, e.g. `make test PYTEST_ARGS="-k overfit tests"`.
PYTEST_ARGS ?= tests

# What ruff lints and formats (its rules are in pyproject.toml; ruff itself is pinned in setup.py's dev extra).
LINT_PATHS := molformer_kd tests benchmarks scripts distill.py molformer_kd_launcher.py setup.py

# `make pretrained`: rebuild the students that ship in molformer_kd/pretrained/ (hours on a CPU). PRETRAINED_SET names
# a set of runs: its configs in configs/$(PRETRAINED_SET)/ train into runs/$(PRETRAINED_SET)/ (`pretrained_pool`, the
# default: the whole QM9 training pool, 110,000 / 10,000 / 10,829, where both students ship from; `pretrained`: the
# QM9 random 20,000 / 2,000 / 5,000 split). The configs of PRETRAINED_RUNS train in this order with distill.py,
# chemprop trains on the same split (its own environment), then each PRETRAINED_SHIP entry
# NAME=CANDIDATE[,CANDIDATE...] ships as NAME the
# candidate whose student had the best validation metric (scripts/ship_pretrained.py: test metrics, card, parity plot,
# applicability domain, test sample, provenance); the other candidates, the shipped student's own teacher and the
# PRETRAINED_COMPARE files become the card's comparison rows.
PRETRAINED_SET ?= pretrained_pool
PRETRAINED_RUNS_pretrained_pool := qm9_teacher qm9_painn_heavy_teacher qm9_gin_alone qm9_gin qm9_gin_wide_alone \
	qm9_gin_wide qm9_smiles_transformer_alone qm9_smiles_transformer
PRETRAINED_SHIP_pretrained_pool := qm9-gin=qm9_gin_wide,qm9_gin_wide_alone,qm9_gin,qm9_gin_alone \
	qm9-smiles-transformer=qm9_smiles_transformer,qm9_smiles_transformer_alone
PRETRAINED_RUNS_pretrained := qm9_teacher qm9_gin_alone qm9_gin qm9_smiles_transformer_alone qm9_smiles_transformer
PRETRAINED_SHIP_pretrained := qm9-gin=qm9_gin,qm9_gin_alone \
	qm9-smiles-transformer=qm9_smiles_transformer,qm9_smiles_transformer_alone
PRETRAINED_RUNS ?= $(PRETRAINED_RUNS_$(PRETRAINED_SET))
PRETRAINED_SHIP ?= $(PRETRAINED_SHIP_$(PRETRAINED_SET))
PRETRAINED_COMPARE ?= chemprop=benchmarks/results/chemprop_qm9_$(PRETRAINED_SET).json

.PHONY: demo test install lint format test-latest constraints clean pretrained

$(VENV)/.installed: setup.py $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c $(CONSTRAINTS) torch==$(TORCH_VERSION)
	$(PIP) install -q -c $(CONSTRAINTS) -e ".[dev]"
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

demo: install
	$(PY) scripts/demo.py

# chemprop, the peer every card compares with, in its own environment (its pins differ from ours).
CHEMPROP_VENV := .venv-chemprop
CHEMPROP_VERSION := 2.3.1
$(CHEMPROP_VENV)/.installed:
	test -x $(CHEMPROP_VENV)/bin/python || $(PYTHON) -m venv $(CHEMPROP_VENV)
	$(CHEMPROP_VENV)/bin/pip install -q torch==$(TORCH_VERSION)
	$(CHEMPROP_VENV)/bin/pip install -q chemprop==$(CHEMPROP_VERSION)
	touch $@

pretrained: install $(CHEMPROP_VENV)/.installed
	set -e; for run in $(PRETRAINED_RUNS); do $(PY) distill.py --config configs/$(PRETRAINED_SET)/$$run.yaml; done
	$(PY) benchmarks/chemprop_qm9.py --config configs/$(PRETRAINED_SET)/qm9_teacher.yaml \
		--work-dir runs/$(PRETRAINED_SET)/chemprop --results-name chemprop_qm9_$(PRETRAINED_SET)
	set -e; for entry in $(PRETRAINED_SHIP); do \
		configs=""; for run in $$(echo $${entry#*=} | tr , ' '); do \
			configs="$$configs --config configs/$(PRETRAINED_SET)/$$run.yaml"; done; \
		compare=""; for spec in $(PRETRAINED_COMPARE); do compare="$$compare --compare $$spec"; done; \
		$(PY) scripts/ship_pretrained.py --name $${entry%%=*} $$configs $$compare; \
	done
	$(PY) -m pytest -q tests/test_pretrained.py -k each_shipped_model
	$(PY) benchmarks/pretrained_qm9_report.py --set $(PRETRAINED_SET)

# `.ci/run` runs this before the tests: any finding fails CI. `make format` applies the safe fixes and the formatter.
lint: install
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

format: install
	$(VENV)/bin/ruff check --fix $(LINT_PATHS)
	$(VENV)/bin/ruff format $(LINT_PATHS)

# The suite against the newest release of every dependency (setup.py's ranges, no constraints.txt), torch still the
# local 2.13.0 CPU wheel, installed first. Re-run any time: each run upgrades .venv-latest to what is newest now. The
# packages that moved past constraints.txt are listed before the tests run.
test-latest:
	test -x $(LATEST_VENV)/bin/python || $(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/pip install -q --upgrade pip
	$(LATEST_VENV)/bin/pip install -q torch==$(TORCH_VERSION)
	$(LATEST_VENV)/bin/pip install -q --upgrade --upgrade-strategy eager torch==$(TORCH_VERSION) -e ".[dev]"
	@echo "versions that differ from $(CONSTRAINTS) (< pinned, > newest):"
	@$(LATEST_VENV)/bin/pip freeze --exclude-editable | sed -e 's/^torch==\(.*\)+cpu$$/torch==\1/' \
		| diff <(grep -v '^#' $(CONSTRAINTS) | sort -f) <(sort -f) | grep '^[<>]' || echo "  none"
	$(LATEST_VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

# Re-freeze constraints.txt, keeping its header comment: from .venv by default, or from the newest releases after
# `make test-latest` passed: `make constraints FREEZE_VENV=.venv-latest` (the next `make install` then syncs .venv).
FREEZE_VENV ?= $(VENV)
constraints:
	test -x $(FREEZE_VENV)/bin/pip
	{ grep '^#' $(CONSTRAINTS); $(FREEZE_VENV)/bin/pip freeze --exclude-editable \
		| sed -e 's/^torch==\(.*\)+cpu$$/torch==\1/' | grep -iv '^molformer'; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)

clean:
	rm -rf $(VENV) $(LATEST_VENV) demo_output

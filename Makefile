# The two commands in README are the contract: `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install postgres test test-fast demo bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch==2.13.0 is pinned in pyproject: on a CPU machine pip takes the local CPU wheel, never CUDA packages.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

postgres:
	@bash scripts/ensure-postgres.sh

test: install postgres
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install postgres
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

demo: install
	$(VENV)/bin/hpscape train --dataset digits --variant sgdw --lr 0.05 --weight-decay 0.0005 --epochs 5

bench: install
	$(PY) bench/train_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache

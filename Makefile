# The two commands in README are the contract: `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install postgres chromium test test-fast demo bench clean

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

chromium:
	@bash scripts/ensure-chromium.sh

test: install postgres chromium
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install postgres chromium
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# The quick preset end to end on the embedded defaults: a SQLite file and a local Ray, both under .hpscape/.
DEMO_STORAGE ?= sqlite:///$(CURDIR)/.hpscape/demo.db
demo: install
	$(VENV)/bin/hpscape run --preset quick --storage $(DEMO_STORAGE) --runs-dir $(CURDIR)/.hpscape/runs

bench: install
	$(PY) bench/train_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache

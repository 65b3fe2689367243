# The two commands in README are the contract: `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install postgres chromium lint test test-fast demo bench clean

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

# Lint and import order first: a minute of tests is not spent on code ruff already refuses.
lint: install
	$(VENV)/bin/ruff check .

test: install postgres chromium lint
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install postgres chromium lint
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# The quick preset end to end on the embedded defaults: a SQLite file and a local Ray, both under .hpscape/.
DEMO_STORAGE ?= sqlite:///$(CURDIR)/.hpscape/demo.db
demo: install
	$(VENV)/bin/hpscape run --preset quick --storage $(DEMO_STORAGE) --runs-dir $(CURDIR)/.hpscape/runs

bench: install
	$(PY) bench/train_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache

# Docker Compose v2 validates docker-compose.yml in the deployment tests (no Docker engine needed).
.PHONY: compose serve
compose: install
	@bash docker/ensure-compose.sh $(PY)
test: compose
test-fast: compose

# The controller on http://127.0.0.1:8000 for browsing: loopback only, reads open without a token, a SQLite file and a
# local Ray under .hpscape/. The admin token for submitting is generated once into .hpscape/admin-token.
# The demo's database by default: `make serve` after `make demo` lists the demo (a "recorded" sweep).
SERVE_STORAGE ?= $(DEMO_STORAGE)
SERVE_PORT ?= 8000
serve: install
	@mkdir -p .hpscape
	@test -s .hpscape/admin-token || (umask 077 && $(PY) -c "import secrets; print(secrets.token_urlsafe(32))" > .hpscape/admin-token)
	@echo "hpscape on http://127.0.0.1:$(SERVE_PORT)/  (to submit: export HPSCAPE_TOKEN=\$$(cat .hpscape/admin-token))"
	HPSCAPE_STORAGE="$(SERVE_STORAGE)" HPSCAPE_RUNS_DIR="$(CURDIR)/.hpscape/runs" \
	HPSCAPE_PUBLIC_READ=true HPSCAPE_ADMIN_TOKEN="$$(cat .hpscape/admin-token)" \
	$(VENV)/bin/hpscape serve --host 127.0.0.1 --port $(SERVE_PORT)

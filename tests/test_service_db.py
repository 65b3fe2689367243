"""The service's tables and migrations, next to Optuna's in one database."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from hpscape.landscapes.record import make_storage
from hpscape.service.db import VERSION_TABLE, Base, current_revision, head_revision, make_engine, upgrade

REPO = Path(__file__).resolve().parents[1]
OURS = {"hpscape_sweeps", "hpscape_tokens", "hpscape_idempotency", VERSION_TABLE}


@pytest.mark.parametrize("optuna_first", [True, False], ids=["optuna-first", "service-first"])
def test_service_and_optuna_tables_share_a_database_without_colliding(storage_url, optuna_first):
    engine = make_engine(storage_url)
    if optuna_first:
        make_storage(storage_url).engine.dispose()
    assert current_revision(engine) is None
    assert upgrade(engine) == head_revision() == current_revision(engine)
    if not optuna_first:
        make_storage(storage_url).engine.dispose()  # Optuna still creates and stamps its own schema
    tables = set(inspect(engine).get_table_names())
    assert OURS <= tables and {"studies", "trials", "alembic_version"} <= tables
    with engine.connect() as connection:
        optuna_revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        ours = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar_one()
    assert ours == head_revision() and optuna_revision != ours
    assert upgrade(engine) == head_revision(), "upgrading again is a no-op"
    make_storage(storage_url).engine.dispose()  # and Optuna still opens the database
    engine.dispose()


def test_the_migrations_create_exactly_the_tables_the_models_describe(storage_url):
    engine = make_engine(storage_url)
    upgrade(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={
            "include_name": lambda name, type_, _parent: type_ != "table" or name in OURS - {VERSION_TABLE}})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], f"models and migrations differ: {diff}"
    engine.dispose()


@pytest.mark.postgres
def test_controllers_starting_together_migrate_once(postgres_url, tmp_path):
    script = ("import sys; from hpscape.service.db import make_engine, upgrade; "
              "print(upgrade(make_engine(sys.argv[1])))")
    procs = [subprocess.Popen([sys.executable, "-c", script, postgres_url], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    assert {out.strip() for out, _ in outputs} == {head_revision()}


def test_migrations_are_found_from_any_directory_and_are_packaged(tmp_path):
    # Run from elsewhere: the script location is relative to the module, not to the working directory.
    found = subprocess.run([sys.executable, "-c",
                            "from hpscape.service.db import head_revision; print(head_revision())"],
                           cwd=tmp_path, capture_output=True, text=True)
    assert found.returncode == 0 and found.stdout.strip() == head_revision(), found.stderr
    # pyproject.toml ships the migrations as packages (their .py files) plus the template as package data.
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = config["tool"]["setuptools"]["packages"]
    assert {"hpscape.service.db.migrations", "hpscape.service.db.migrations.versions"} <= set(packages)
    assert "db/migrations/*.mako" in config["tool"]["setuptools"]["package-data"]["hpscape.service"]
    assert (REPO / "service/db/migrations/env.py").is_file()


def test_the_owner_id_migration_keeps_old_sweeps_with_the_token_that_submitted_them(storage_url):
    engine = make_engine(storage_url)
    upgrade(engine, "0001")
    at = {day: f"2026-11-{day:02d} 12:00:00" for day in range(1, 10)}
    with engine.begin() as connection:
        # bob: a token since day 1. alice: revoked (deleted) after day 3; a new "alice" created on day 5.
        for name, created in (("bob", at[1]), ("alice", at[5])):
            connection.execute(text("INSERT INTO hpscape_tokens (name, token_sha256, is_admin, created_at) "
                                    "VALUES (:n, :h, false, :c)"), {"n": name, "h": name * 8, "c": created})
        for sweep_id, owner, created in (("b1", "bob", at[2]), ("a-old", "alice", at[3]), ("a-new", "alice", at[6]),
                                         ("g1", "gone", at[4]), ("g2", "gone", at[7])):
            connection.execute(text(
                "INSERT INTO hpscape_sweeps (id, name, record_name, spec, total_trials, status, owner, created_at, "
                "launches) VALUES (:i, 'n', :i, '{}', 1, 'queued', :o, :c, 0)"),
                {"i": sweep_id, "o": owner, "c": created})
    assert upgrade(engine) == head_revision()
    with engine.connect() as connection:
        tokens = dict(connection.execute(text("SELECT name, owner_id FROM hpscape_tokens")).all())
        owners = dict(connection.execute(text("SELECT id, owner_id FROM hpscape_sweeps")).all())
    assert all(len(v) == 16 for v in tokens.values()) and len(set(tokens.values())) == 2
    assert owners["b1"] == tokens["bob"] and owners["a-new"] == tokens["alice"]
    # Submitted before the new alice existed: the old alice's, which no live token holds.
    assert owners["a-old"] not in (None, *tokens.values())
    # An owner without any token: one id for all its sweeps, held by no token.
    assert owners["g1"] == owners["g2"] and owners["g1"] not in (None, owners["a-old"], *tokens.values())
    engine.dispose()

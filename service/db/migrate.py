"""Apply the service's Alembic migrations, from an installed package as well as from a checkout."""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

__all__ = ["OPTUNA_TABLES", "VERSION_TABLE", "current_revision", "head_revision", "schema_problem", "upgrade"]

# Optuna keeps its own schema version in `alembic_version`; ours must not overwrite it.
VERSION_TABLE = "hpscape_alembic_version"
_SCRIPTS = Path(__file__).resolve().parent / "migrations"
# An arbitrary constant: the PostgreSQL advisory lock that serializes migrations of concurrent controllers.
_PG_LOCK_KEY = 0x68707363  # "hpsc"
_ATTEMPTS = 5
# The Optuna tables the service reads (created, and versioned in `alembic_version`, by Optuna's RDBStorage).
OPTUNA_TABLES = frozenset({"studies", "trials", "alembic_version"})


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    return config


@lru_cache(maxsize=1)
def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, f"no migrations found under {_SCRIPTS}"
    return head


@lru_cache(maxsize=1)
def _known_revisions() -> frozenset[str]:
    return frozenset(script.revision for script in ScriptDirectory.from_config(_config()).walk_revisions())


def schema_problem(connection: Connection) -> str | None:
    """What is missing for the service to work on this database (its tables at the newest revision this code knows,
    Optuna's tables), or None. A revision this code does not know came from a newer controller: not a problem."""
    from hpscape.service.db.models import Base

    tables = set(inspect(connection).get_table_names())
    ours = set(Base.metadata.tables) | {VERSION_TABLE}
    missing = sorted((ours | OPTUNA_TABLES) - tables)
    if missing:
        return f"tables missing: {', '.join(missing)} (`hpscape db upgrade`, or start the server, creates them)"
    revision = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
    if revision is None:
        return "the service's tables are not stamped with a revision: run `hpscape db upgrade`"
    if revision != head_revision() and revision in _known_revisions():
        return f"the service's tables are at revision {revision}, this controller needs {head_revision()}: run " \
               "`hpscape db upgrade`"
    return None


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None before the first upgrade."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Bring the service's tables to `revision` (default: the newest); safe to call from several processes at once."""
    config = _config()
    for attempt in range(_ATTEMPTS):
        try:
            with engine.begin() as connection:
                if connection.dialect.name == "postgresql":
                    # Held until this transaction ends: a second controller waits, then finds nothing to do.
                    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
            break
        except Exception as exc:
            # SQLite has no advisory lock: two processes creating the tables at once race, the loser retries.
            if attempt == _ATTEMPTS - 1 or "already exists" not in str(exc).lower():
                raise
            time.sleep(0.2 * (attempt + 1))
    current = current_revision(engine)
    assert current is not None
    return current

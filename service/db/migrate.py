"""Apply the service's Alembic migrations, from an installed package as well as from a checkout."""

from __future__ import annotations

import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

__all__ = ["VERSION_TABLE", "current_revision", "head_revision", "upgrade"]

# Optuna keeps its own schema version in `alembic_version`; ours must not overwrite it.
VERSION_TABLE = "hpscape_alembic_version"
_SCRIPTS = Path(__file__).resolve().parent / "migrations"
# An arbitrary constant: the PostgreSQL advisory lock that serializes migrations of concurrent controllers.
_PG_LOCK_KEY = 0x68707363  # "hpsc"
_ATTEMPTS = 5


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, f"no migrations found under {_SCRIPTS}"
    return head


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

"""SQLAlchemy engines and sessions for the service's tables (the same database as the Optuna studies)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

__all__ = ["begin_write", "make_engine", "make_session_factory", "normalize_url"]


def normalize_url(url: str) -> str:
    """Plain ``postgresql://`` URLs use psycopg 3, the driver installed (SQLAlchemy would pick psycopg2)."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme):]
    return url


def make_engine(url: str, *, pool_size: int = 20) -> Engine:
    """An engine tuned for a threaded server: pre-pinged pool on servers, a patient lock wait on SQLite."""
    url = normalize_url(url)
    kwargs: dict[str, Any]
    if url.startswith("sqlite"):
        # Writers queue on SQLite's file lock instead of failing at once ("database is locked").
        kwargs = {"connect_args": {"timeout": 60, "check_same_thread": False}, "pool_size": pool_size,
                  "max_overflow": pool_size}
    else:
        kwargs = {"pool_pre_ping": True, "pool_size": pool_size, "max_overflow": pool_size,
                  # An unreachable server fails a request in seconds instead of hanging it.
                  "connect_args": {"connect_timeout": 10}, "pool_timeout": 30}
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        _sqlite_immediate_transactions(engine)
    return engine


def _sqlite_immediate_transactions(engine: Engine) -> None:
    # pysqlite starts transactions lazily and as DEFERRED, so two read-then-write transactions can both read and
    # then one fails on upgrade to a write lock. BEGIN IMMEDIATE takes the write lock up front: transactions that
    # write (claims, state changes) are serialized, as SELECT ... FOR UPDATE does on PostgreSQL.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy's "begin" event emit BEGIN itself
        dbapi_connection.execute("PRAGMA busy_timeout = 60000")

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def begin_write(session: Session) -> None:
    """Start a transaction that will write: on SQLite it takes the write lock now (BEGIN IMMEDIATE).

    A DEFERRED SQLite transaction that read first and then writes fails at once with "database is locked" when
    another writer got in between (no busy wait is possible then); taking the lock first makes it wait its turn.
    Ends the session's current transaction (committing what it read).
    """
    if session.in_transaction():
        session.commit()
    session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})

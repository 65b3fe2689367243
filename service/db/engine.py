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


def make_engine(
    url: str,
    *,
    pool_size: int = 20,
    max_overflow: int | None = None,
    pool_timeout_s: float = 30.0,
    connect_timeout_s: float = 10.0,
    statement_timeout_s: float | None = None,
    sqlite_lock_timeout_s: float = 60.0,
) -> Engine:
    """An engine tuned for a threaded server: pre-pinged pool on servers, a patient lock wait on SQLite.

    `max_overflow` defaults to `pool_size`. On PostgreSQL `connect_timeout_s` bounds connecting and
    `statement_timeout_s` (if given) each statement; on SQLite writers queue on the file lock for
    `sqlite_lock_timeout_s` instead of failing at once with "database is locked".
    """
    url = normalize_url(url)
    kwargs: dict[str, Any] = {"pool_size": pool_size, "pool_timeout": pool_timeout_s,
                              "max_overflow": pool_size if max_overflow is None else max_overflow}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": sqlite_lock_timeout_s, "check_same_thread": False}
    else:
        # An unreachable server fails a request in seconds instead of hanging it.
        connect_args: dict[str, Any] = {"connect_timeout": max(1, round(connect_timeout_s))}
        if statement_timeout_s is not None:
            connect_args["options"] = f"-c statement_timeout={round(statement_timeout_s * 1000)}"
        kwargs.update(pool_pre_ping=True, connect_args=connect_args)
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        _sqlite_immediate_transactions(engine, sqlite_lock_timeout_s)
    return engine


def _sqlite_immediate_transactions(engine: Engine, busy_s: float) -> None:
    # pysqlite starts transactions lazily and as DEFERRED, so two read-then-write transactions can both read and
    # then one fails on upgrade to a write lock. BEGIN IMMEDIATE takes the write lock up front: transactions that
    # write (claims, state changes) are serialized, as SELECT ... FOR UPDATE does on PostgreSQL.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy's "begin" event emit BEGIN itself
        dbapi_connection.execute(f"PRAGMA busy_timeout = {round(busy_s * 1000)}")

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

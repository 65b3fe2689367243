"""Storage URLs: an Optuna RDBStorage tuned for several writer processes, and SQLite file paths."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from optuna.storages import BaseStorage, RDBStorage

__all__ = ["as_storage", "ensure_sqlite_dir", "make_storage", "sqlite_file"]

# Creating a storage retries this often when another process is creating the same tables.
_SCHEMA_ATTEMPTS = 5


def make_storage(
    url: str, *, sqlite_wal: bool = True, pool_size: int | None = None, max_overflow: int | None = None
) -> RDBStorage:
    """An Optuna RDBStorage for `url`, tuned for several writer processes.

    ``postgresql://`` and ``postgres://`` URLs use the psycopg (v3) driver, the one installed.
    SQLite files are switched to write-ahead logging unless `sqlite_wal` is False (pass False
    for a database on a network filesystem, where WAL does not work). `pool_size` and
    `max_overflow` size the connection pool (SQLAlchemy's 5 and 10 unless given), e.g. for a
    server whose concurrent requests each read the record.
    """
    url = _normalize_url(url)
    engine_kwargs: dict[str, Any]
    if url.startswith("sqlite"):
        # Writers queue on SQLite's file lock for up to 60 s instead of failing at once.
        engine_kwargs = {"connect_args": {"timeout": 60}}
    else:
        # Drivers run for days; the server may close idle pooled connections meanwhile.
        engine_kwargs = {"pool_pre_ping": True}
    if pool_size is not None:
        engine_kwargs["pool_size"] = pool_size
    if max_overflow is not None:
        engine_kwargs["max_overflow"] = max_overflow
    storage = _open_rdb(url, engine_kwargs)
    if sqlite_wal and storage.engine.dialect.name == "sqlite":
        # WAL lets the service read while workers write, and commits with one sync instead of
        # several (about 3x faster per record). The mode is stored in the file: set once.
        with storage.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA journal_mode=WAL")
    return storage


def sqlite_file(url: str) -> Path | None:
    """The database file of a ``sqlite:///PATH`` URL as written (possibly relative); None for other URLs and memory."""
    prefix = "sqlite:///"
    path = url.removeprefix(prefix) if url.startswith(prefix) else ""
    return None if path == "" or path.startswith(":memory:") else Path(path)


def ensure_sqlite_dir(url: str) -> None:
    """Create the directory of a SQLite URL's database file (``~`` expanded); other URLs need nothing."""
    path = sqlite_file(url)
    if path is not None:
        path.expanduser().parent.mkdir(parents=True, exist_ok=True)


def _open_rdb(url: str, engine_kwargs: dict[str, Any]) -> RDBStorage:
    # Optuna creates its tables on first use. Processes doing that at once on a fresh database
    # race ("table ... already exists", duplicate key); the losers find the tables on a retry.
    for attempt in range(_SCHEMA_ATTEMPTS):
        try:
            return RDBStorage(url, engine_kwargs=engine_kwargs)
        except Exception as exc:
            if attempt == _SCHEMA_ATTEMPTS - 1 or not _is_schema_race(exc):
                raise
            time.sleep(0.1 * (attempt + 1))
    raise AssertionError("unreachable")


def _is_schema_race(exc: BaseException | None) -> bool:
    while exc is not None:
        text = str(exc).lower()
        if "already exists" in text or "duplicate key" in text or "unique constraint" in text:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _normalize_url(url: str) -> str:
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def as_storage(storage: BaseStorage | str) -> BaseStorage:
    """A storage object for a URL (a new connection pool each call: pass objects when calling repeatedly)."""
    return make_storage(storage) if isinstance(storage, str) else storage

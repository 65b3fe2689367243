"""The one retry policy for the record's database: bounded exponential backoff under a total deadline.

A sweep outlives database blips (a PostgreSQL restart, a failover, a saturated SQLite lock): every write a worker,
the searcher, the engine or the driver makes goes through `call_with_retries`, which retries the errors that mean
"the database is not reachable right now" and nothing else (a constraint violation or a bug fails at once).

    call_with_retries(record_epoch, study, number, epoch, values, what="recording epoch 3 of trial 7", objective=...)

Each retry is logged (WARNING, logger ``hpscape.retry``) with what was being done, the error and the wait; after
`RetryPolicy.deadline_s` seconds of failures `DatabaseUnavailable` is raised from the last error. Only idempotent
operations are retried: every record write addresses its trial by number and may repeat (see
`hpscape.landscapes.record.outcomes`); a claim whose acknowledgement was lost leaves a RUNNING trial nobody owns,
which the searcher adopts (`StudySearcher`).

The deadline defaults to 600 s (``HPSCAPE_DB_RETRY_S`` overrides it in every process that reads it: drivers and
Ray workers inherit the driver's environment on a local Ray; on a cluster, set it on the nodes too).
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["DEFAULT_POLICY", "DatabaseUnavailable", "RetryPolicy", "call_with_retries", "is_transient"]

log = logging.getLogger("hpscape.retry")

T = TypeVar("T")

_DEFAULT_DEADLINE_S = 600.0


class DatabaseUnavailable(RuntimeError):
    """The database stayed unreachable for longer than the retry policy's deadline."""


@dataclass(frozen=True)
class RetryPolicy:
    """Waits of `first_s`, `first_s * factor`, ... capped at `max_s` (each +-`jitter` at random, so that a hundred
    workers do not reconnect in step), until `deadline_s` seconds have passed since the first failure."""

    first_s: float = 0.25
    max_s: float = 8.0
    factor: float = 2.0
    deadline_s: float = _DEFAULT_DEADLINE_S
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not (0 < self.first_s <= self.max_s and self.factor >= 1 and self.deadline_s >= 0 and 0 <= self.jitter < 1):
            raise ValueError(f"not a usable retry policy: {self}")

    def wait_s(self, attempt: int) -> float:
        """The wait after failed attempt `attempt` (1, 2, ...), before jitter."""
        return min(self.max_s, self.first_s * self.factor ** (attempt - 1))


def _deadline_from_environment() -> float:
    raw = os.environ.get("HPSCAPE_DB_RETRY_S")
    if raw is None or not raw.strip():
        return _DEFAULT_DEADLINE_S
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"HPSCAPE_DB_RETRY_S must be a number of seconds, got {raw!r}") from None
    if not value >= 0:
        raise ValueError(f"HPSCAPE_DB_RETRY_S must be >= 0 seconds, got {raw!r}")
    return value


DEFAULT_POLICY = RetryPolicy(deadline_s=_deadline_from_environment())

# Fragments of messages that mean "not reachable now" where a driver reports them without a distinct class.
_TRANSIENT_TEXT = (
    "database is locked",  # SQLite: another writer held the lock past the busy timeout
    "server closed the connection",
    "connection refused",
    "could not connect",
    "connection is closed",
    "connection already closed",
    "terminating connection",
    "the database system is",  # starting up / shutting down / in recovery mode
    "consuming input failed",
    "ssl syscall error",
    "network is unreachable",
    "no route to host",
    "connection timed out",
    "timeout expired",
)


# ... and of messages that mean "this will not work however often it is tried": the configuration is wrong.
_PERMANENT_TEXT = (
    "no pg_hba.conf entry",
    "authentication failed",
    "password authentication",
    "does not exist",  # database "x" / role "x"
    "permission denied",
    "unable to open database file",  # SQLite: no such directory, or not writable
    "readonly database",
)


def _chain(exc: BaseException | None):
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ if exc.__cause__ is not None else (None if exc.__suppress_context__ else exc.__context__)


def _from_a_driver(error: BaseException) -> bool:
    return (type(error).__module__ or "").split(".")[0] in _DRIVER_MODULES


_DRIVER_MODULES = ("psycopg", "psycopg2", "sqlite3", "pymysql", "MySQLdb")


def is_transient(exc: BaseException) -> bool:
    """True for errors that say the database cannot be reached or used right now (worth retrying).

    The error must come from the database layer (SQLAlchemy, Optuna's storage, a DB-API driver); a KeyError or a
    ValueError is never retried, whatever it was raised while handling, and neither is a server that refuses us
    (no pg_hba.conf entry, a wrong password, a database that does not exist): waiting does not fix a configuration.
    """
    from optuna.exceptions import StorageInternalError
    from sqlalchemy import exc as sa

    if not isinstance(exc, (sa.SQLAlchemyError, StorageInternalError)) and not _from_a_driver(exc):
        return False
    if any(part in str(error).lower() for error in _chain(exc) for part in _PERMANENT_TEXT):
        return False
    for error in _chain(exc):
        if isinstance(error, (sa.IntegrityError, sa.ProgrammingError, sa.DataError, sa.NotSupportedError)):
            return False  # the statement itself is at fault: retrying repeats the error
        if isinstance(error, sa.DBAPIError) and error.connection_invalidated:
            return True
        if isinstance(error, (sa.OperationalError, sa.InterfaceError, sa.TimeoutError, sa.DisconnectionError,
                              sa.PendingRollbackError)):
            return True
        if _from_a_driver(error) and type(error).__name__ in ("OperationalError", "InterfaceError"):
            return True
        text = str(error).lower()
        if any(part in text for part in _TRANSIENT_TEXT):
            return True
    return False


def call_with_retries(
    fn: Callable[..., T],
    /,
    *args,
    what: str,
    policy: RetryPolicy | None = None,
    logger: logging.Logger | None = None,
    sleep: Callable[[float], None] = time.sleep,
    **kwargs,
) -> T:
    """`fn(*args, **kwargs)`, retried on transient database errors (see `is_transient`) under `policy`.

    `what` says what the call does, for the log ("claiming the next trial of sweep/sgd"). Raises
    `DatabaseUnavailable` (from the last error) once the deadline has passed; other errors propagate at once.
    """
    policy = policy or DEFAULT_POLICY
    logger = logger or log
    first_failure: float | None = None
    attempt = 0
    while True:
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            if not is_transient(exc):
                raise
            now = time.monotonic()
            first_failure = now if first_failure is None else first_failure
            attempt += 1
            waited = now - first_failure
            summary = _summary(exc)
            if waited >= policy.deadline_s:
                logger.error("%s: gave up after %d attempts in %.1f s: %s", what, attempt, waited, summary)
                raise DatabaseUnavailable(
                    f"the database stayed unreachable for {waited:.0f} s (retry deadline {policy.deadline_s:.0f} s, "
                    f"HPSCAPE_DB_RETRY_S) while {what}: {summary}"
                ) from exc
            wait = policy.wait_s(attempt) * (1 + random.uniform(-policy.jitter, policy.jitter))
            wait = max(0.0, min(wait, policy.deadline_s - waited))
            logger.warning("%s failed (%s); retry %d in %.2f s (%.0f s of %.0f s spent)", what, summary, attempt,
                           wait, waited, policy.deadline_s)
            sleep(wait)
            continue
        if attempt:
            logger.warning("%s succeeded after %d retries (%.1f s)", what, attempt,
                           time.monotonic() - (first_failure or time.monotonic()))
        return result


def _summary(exc: BaseException) -> str:
    # The innermost error says what happened ("connection refused"); SQLAlchemy's and Optuna's wrappers do not.
    innermost = list(_chain(exc))[-1]
    lines = str(innermost).strip().splitlines()
    return f"{type(innermost).__name__}: {lines[0][:300] if lines else ''}"

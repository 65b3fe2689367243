"""Every state change of a sweep row, each one a compare-and-set so that racing processes agree on the outcome.

queued -> running (claim) -> succeeded | failed | cancelled. `launches` counts driver starts and doubles as the
version of a running row: a driver or controller acting on launch N changes nothing once launch N+1 exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from optuna.storages import BaseStorage
from sqlalchemy import Engine, func, select, text, update

from hpscape.landscapes.record import fail_trial, open_study, running_trials
from hpscape.service.db.models import SweepRow, utcnow

__all__ = [
    "Claim",
    "claim_next",
    "fail_running_trials",
    "finalize_cancel",
    "finish",
    "heartbeat",
    "mark_launched",
    "is_stale",
    "take_over",
]

# An arbitrary constant (not the migration lock's): serializes claims of all controllers on one PostgreSQL.
_PG_CLAIM_LOCK = 0x68707371
_MAX_ERROR_CHARS = 8000


@dataclass(frozen=True)
class Claim:
    sweep_id: str
    launch: int  # the value of `launches` this launch owns


def _claim_connection(engine: Engine):  # noqa: ANN202 - a Connection context manager
    # On SQLite, BEGIN IMMEDIATE takes the database's write lock before the count and the pick (see make_engine).
    return engine.connect().execution_options(sqlite_begin="IMMEDIATE")


def claim_next(engine: Engine, *, host: str, limit: int) -> Claim | None:
    """Move the oldest queued sweep to running on `host`, unless `limit` sweeps already run; None if nothing moved.

    PostgreSQL: an advisory transaction lock makes the running-count check and the pick one atomic step across
    controllers (SKIP LOCKED alone could not hold a global limit), and FOR UPDATE SKIP LOCKED passes over rows a
    cancel request holds. SQLite: the whole transaction holds the write lock.
    """
    now = utcnow()
    with _claim_connection(engine) as connection, connection.begin():
        postgres = connection.dialect.name == "postgresql"
        if postgres:
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_CLAIM_LOCK})
        running = connection.scalar(select(func.count()).select_from(SweepRow).where(SweepRow.status == "running"))
        if running >= limit:
            return None
        pick = (select(SweepRow.id).where(SweepRow.status == "queued")
                .order_by(SweepRow.created_at, SweepRow.id).limit(1))
        if postgres:
            pick = pick.with_for_update(skip_locked=True)
        sweep_id = connection.scalar(pick)
        if sweep_id is None:
            return None
        connection.execute(
            update(SweepRow).where(SweepRow.id == sweep_id, SweepRow.status == "queued").values(
                status="running", host=host, pid=None, launches=1, launched_at=now, started_at=now,
                heartbeat_at=None, error=None,
            )
        )
    return Claim(sweep_id, 1)


def mark_launched(engine: Engine, claim: Claim, *, pid: int, log_path: str | None) -> bool:
    """Record the driver's pid; False if the row moved on meanwhile (then the caller stops that driver)."""
    with engine.begin() as connection:
        result = connection.execute(
            update(SweepRow)
            .where(SweepRow.id == claim.sweep_id, SweepRow.launches == claim.launch, SweepRow.status == "running")
            .values(pid=pid, log_path=log_path)
        )
    return result.rowcount == 1


def take_over(engine: Engine, row: SweepRow, *, host: str) -> Claim | None:
    """Claim the next launch of a running sweep whose driver is gone; None if someone else moved the row first."""
    with engine.begin() as connection:
        result = connection.execute(
            update(SweepRow)
            .where(SweepRow.id == row.id, SweepRow.status == "running", SweepRow.launches == row.launches)
            .values(host=host, pid=None, launches=row.launches + 1, launched_at=utcnow(), heartbeat_at=None)
        )
    return Claim(row.id, row.launches + 1) if result.rowcount == 1 else None


def finish(engine: Engine, sweep_id: str, *, launch: int | None, status: str, error: str | None = None) -> bool:
    """Move a running sweep to a final state; with `launch`, only if that launch still owns the row."""
    if status not in ("succeeded", "failed", "cancelled"):
        raise ValueError(f"not a final state: {status!r}")
    if error is not None and len(error) > _MAX_ERROR_CHARS:
        error = "..." + error[-(_MAX_ERROR_CHARS - 3):]
    condition = [SweepRow.id == sweep_id, SweepRow.status == "running"]
    if launch is not None:
        condition.append(SweepRow.launches == launch)
    with engine.begin() as connection:
        result = connection.execute(
            update(SweepRow).where(*condition).values(status=status, finished_at=utcnow(), error=error)
        )
    return result.rowcount == 1


@dataclass(frozen=True)
class RowState:
    status: str
    launches: int
    cancel_requested: bool


def heartbeat(engine: Engine, sweep_id: str, *, launch: int) -> RowState | None:
    """Stamp the row (if this launch still owns it) and report its state; None if the row is gone."""
    with engine.begin() as connection:
        connection.execute(
            update(SweepRow)
            .where(SweepRow.id == sweep_id, SweepRow.launches == launch, SweepRow.status == "running")
            .values(heartbeat_at=utcnow())
        )
        row = connection.execute(
            select(SweepRow.status, SweepRow.launches, SweepRow.cancel_requested_at).where(SweepRow.id == sweep_id)
        ).first()
    if row is None:
        return None
    return RowState(row.status, row.launches, row.cancel_requested_at is not None)


def fail_running_trials(storage: BaseStorage, record_name: str, variants: list[str], reason: str) -> int:
    """Mark trials still RUNNING as FAIL with `reason` (their recorded epochs stay); how many were marked."""
    marked = 0
    for variant in variants:
        try:
            study = open_study(storage, record_name, variant, create=False)
        except KeyError:
            continue
        for number in running_trials(study):
            marked += fail_trial(study, number, reason)
    return marked


def finalize_cancel(engine: Engine, storage: BaseStorage, row: SweepRow) -> bool:
    """After the driver is stopped: fail the trials it left RUNNING and mark the sweep cancelled."""
    who = row.cancelled_by or "someone"
    fail_running_trials(storage, row.record_name, list(row.spec.get("variants", [])), f"sweep cancelled by {who}")
    return finish(engine, row.id, launch=None, status="cancelled")


def is_stale(row: SweepRow, now: datetime, stale_after_s: float) -> bool:
    """No heartbeat (or launch, before the first heartbeat) for `stale_after_s`."""
    last = row.heartbeat_at or row.launched_at or row.started_at
    return last is None or now - last > timedelta(seconds=stale_after_s)


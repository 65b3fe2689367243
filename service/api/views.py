"""Rows and Optuna records turned into response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from optuna.storages import BaseStorage

from hpscape.landscapes import SweepSpec
from hpscape.service.api.schemas import SweepDetail, SweepOut, SweepProgress, SweepTimings, TrialOut
from hpscape.service.db.models import SweepRow, utcnow
from hpscape.service.progress import load_trials, summarize, trial_row

__all__ = ["row_spec", "sweep_detail", "sweep_out", "sweep_summary_of", "sweep_trials"]

_FINISHED_TRIAL_STATES = ("COMPLETE", "PRUNED", "FAIL")


def sweep_out(row: SweepRow) -> SweepOut:
    return SweepOut(
        id=row.id, name=row.name, record_name=row.record_name, status=row.status, owner=row.owner,
        total_trials=row.total_trials, created_at=row.created_at, started_at=row.started_at,
        finished_at=row.finished_at, cancel_requested=row.cancel_requested_at is not None and row.status == "running",
        error=row.error,
    )


def row_spec(row: SweepRow) -> SweepSpec:
    """The row's spec, validated (it was when submitted; a row is never re-parsed by hand)."""
    return SweepSpec.model_validate(row.spec)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def sweep_detail(row: SweepRow, summary: dict[str, dict[str, Any]]) -> SweepDetail:
    """`summary` is `summarize` of the sweep's record (possibly a second old, from the cache)."""
    counts: dict[str, int] = {}
    for info in summary.values():
        for state, n in info["counts"].items():
            counts[state] = counts.get(state, 0) + n
    done = sum(counts.get(state, 0) for state in _FINISHED_TRIAL_STATES)
    now = utcnow()
    end = row.finished_at or (now if row.status == "running" else None)
    elapsed = _seconds(row.started_at, end)
    eta = None
    if row.status == "running" and elapsed is not None and done > 0:
        eta = elapsed / done * max(0, row.total_trials - done)
    return SweepDetail(
        **sweep_out(row).model_dump(),
        spec=row.spec,
        metric=str(row.spec.get("metric", "test_error")),
        progress=SweepProgress(done=done, total=row.total_trials, counts=counts),
        variants=summary,
        timings=SweepTimings(queued_s=_seconds(row.created_at, row.started_at), elapsed_s=elapsed, eta_s=eta),
        host=row.host,
        launches=row.launches,
    )


def sweep_summary_of(storage: BaseStorage, row: SweepRow) -> dict[str, dict[str, Any]]:
    return summarize(storage, row.record_name, row_spec(row))


def sweep_trials(storage: BaseStorage, row: SweepRow) -> list[TrialOut]:
    """Every trial of the sweep, studies in spec order, trials by number."""
    out = []
    for key, trials in load_trials(storage, row.record_name, row_spec(row)).items():
        for trial in sorted(trials, key=lambda t: t.number):
            out.append(TrialOut(**trial_row(key, trial)))
    return out

"""A sweep's trials: paginated JSON, and the whole record as CSV or JSON."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from hpscape.service.api.deps import OptunaDep, SweepDep
from hpscape.service.api.schemas import ErrorOut, SweepExport, TrialList, TrialStateName
from hpscape.service.api.views import row_spec, sweep_out, sweep_trials
from hpscape.service.progress import trials_csv

router = APIRouter(prefix="/api/v1/sweeps", tags=["trials"])

_ERRORS = {401: {"model": ErrorOut}, 404: {"model": ErrorOut}}


@router.get("/{sweep_id}/trials", response_model=TrialList, responses=_ERRORS)
def get_trials(
    row: SweepDep,
    storage: OptunaDep,
    variant: Annotated[str | None, Query(max_length=32, description="only this variant, e.g. sgdw")] = None,
    state: Annotated[TrialStateName | None, Query(description="only trials in this state")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> TrialList:
    """A sweep's trials (variant order, then trial number): parameters, state, metrics, epochs, errors."""
    trials = [t for t in sweep_trials(storage, row)
              if (variant is None or t.variant == variant) and (state is None or t.state == state)]
    return TrialList(items=trials[offset: offset + limit], total=len(trials), limit=limit, offset=offset)


@router.get(
    "/{sweep_id}/export.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "one row per trial"},
               **_ERRORS},
)
def export_csv(row: SweepDep, storage: OptunaDep) -> Response:
    """Every trial of the sweep as CSV, one row per trial (sweep id and variant first)."""
    rows = [t.model_dump() for t in sweep_trials(storage, row)]
    text = trials_csv(rows, row_spec(row).swept_axes, extra={"sweep_id": row.id})
    return Response(text, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{row.record_name}.csv"'})


@router.get("/{sweep_id}/export.json", response_model=SweepExport, responses=_ERRORS)
def export_json(row: SweepDep, storage: OptunaDep) -> SweepExport:
    """The sweep, its spec and every trial in one JSON document."""
    return SweepExport(sweep=sweep_out(row), spec=row.spec, trials=sweep_trials(storage, row))

"""A sweep's landscape: the aggregated lr x weight-decay grids, coupling metrics, figure and exports."""

from __future__ import annotations

import json
import math
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import Response
from optuna.storages import BaseStorage

from hpscape.dashboards import grid_csv, grid_json, landscape_html, landscape_payload
from hpscape.landscapes import (
    VARIANTS,
    Landscape,
    LandscapeError,
    build_sweep_landscapes,
    open_study,
    trial_details,
)
from hpscape.service.api.deps import OptunaDep, SweepDep
from hpscape.service.api.schemas import ErrorOut
from hpscape.service.db.models import SweepRow

router = APIRouter(prefix="/api/v1/sweeps", tags=["landscape"])

Metric = Literal["test_error", "test_loss", "train_loss", "train_error"]
Variant = Literal["sgd", "sgdw", "adam", "adamw", "adamw-torch"]
_MAX_NUMBERS = 1000

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "no token, or a token that is not valid"},
    404: {"model": ErrorOut, "description": "no such sweep"},
    422: {"model": ErrorOut, "description": "a parameter is invalid, or the metric is not recorded at that epoch"},
}
_JSON_OK = {"content": {"application/json": {"schema": {"type": "object"}}}, "description": "OK"}

MetricQuery = Annotated[Metric, Query(description="the metric the colour shows (final epoch: any of these)")]
EpochQuery = Annotated[
    int | None,
    Query(ge=1, le=10000, description="an epoch (its intermediate values hold the sweep's metric); omit: final"),
]
ClipQuery = Annotated[float | None, Query(description="colour range low/high (metric units); both or neither")]


def _unprocessable(loc: list[str | int], message: str) -> HTTPException:
    return HTTPException(
        422,  # (starlette renamed the constant; the number is what clients see)
        detail=[{"loc": loc, "msg": message, "type": "value_error"}],
    )


def _clip(lo: float | None, hi: float | None) -> tuple[float, float] | None:
    if lo is None and hi is None:
        return None
    if lo is None or hi is None:
        raise _unprocessable(["query", "clip_lo" if lo is None else "clip_hi"],
                             "give both clip_lo and clip_hi (the colour range), or neither")
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
        raise _unprocessable(["query", "clip_hi"], f"the colour range needs finite clip_lo < clip_hi, got {lo!r}, {hi!r}")
    return lo, hi


def _landscapes(
    storage: BaseStorage, row: SweepRow, metric: str, epoch: int | None, model: bool
) -> dict[str, Landscape]:
    try:
        return build_sweep_landscapes(storage, row.record_name, metric=metric, epoch=epoch, model=model)
    except LandscapeError as exc:
        raise _unprocessable(["query", "epoch" if epoch is not None else "metric"], str(exc)) from None


def _sweep_info(row: SweepRow) -> dict[str, Any]:
    spec = row.spec or {}

    def when(value: Any) -> str | None:
        return None if value is None else value.isoformat()

    return {
        "id": row.id,
        "name": row.name,
        "record_name": row.record_name,
        "status": row.status,
        "owner": row.owner,
        "dataset": spec.get("dataset"),
        "model": spec.get("model"),
        "epochs": spec.get("epochs"),
        "spec_metric": spec.get("metric", "test_error"),
        "kind": "bayes" if spec.get("bayes") else "grid",
        "variants": spec.get("variants"),
        "created_at": when(row.created_at),
        "started_at": when(row.started_at),
        "finished_at": when(row.finished_at),
    }


def _json(body: Any, started: float, extra_headers: dict[str, str] | None = None) -> Response:
    content = json.dumps(body, allow_nan=False, separators=(",", ":"))
    elapsed = (time.perf_counter() - started) * 1000
    headers = {"Server-Timing": f"landscape;dur={elapsed:.1f}", "Cache-Control": "no-store"}
    return Response(content, media_type="application/json", headers={**headers, **(extra_headers or {})})


@router.get("/{sweep_id}/landscape", response_class=Response, responses={200: _JSON_OK, **_ERRORS})
def get_landscape(
    row: SweepDep,
    storage: OptunaDep,
    metric: MetricQuery = "test_error",
    epoch: EpochQuery = None,
    figure: Annotated[bool, Query(description="include the plotly figure of the sweep page")] = False,
    model: Annotated[bool, Query(description="Bayesian sweeps: attach (and draw) the model surface")] = False,
    clip_lo: ClipQuery = None,
    clip_hi: ClipQuery = None,
) -> Response:
    """Per variant: cells (mean, std, n, state, trial numbers), coupling metrics; the page's figure on request."""
    started = time.perf_counter()
    clip = _clip(clip_lo, clip_hi)
    landscapes = _landscapes(storage, row, metric, epoch, model)
    body = landscape_payload(
        landscapes, sweep=_sweep_info(row), metric=metric, epoch=epoch, clip=clip, figure=figure, show_model=model
    )
    body["server_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return _json(body, started)


@router.get("/{sweep_id}/landscape/trials", response_class=Response, responses={200: _JSON_OK, **_ERRORS})
def get_landscape_trials(
    row: SweepDep,
    storage: OptunaDep,
    variant: Annotated[Variant, Query(description="the variant (study) to read")],
    numbers: Annotated[
        str | None, Query(max_length=12000, description="comma-separated trial numbers (a cell's trials)")
    ] = None,
    metric: MetricQuery = "test_error",
    limit: Annotated[int, Query(ge=1, le=500, description="without numbers: this many best trials")] = 20,
) -> Response:
    """Trial rows with learning curves: the given trials, or the best finished ones by `metric`."""
    started = time.perf_counter()
    variants = list((row.spec or {}).get("variants", VARIANTS))
    if variant not in variants:
        raise _unprocessable(["query", "variant"], f"variant {variant!r} is not in this sweep (its variants: "
                             f"{', '.join(variants)})")
    wanted = _numbers(numbers)
    try:
        study = open_study(storage, row.record_name, variant, create=False)
    except KeyError:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            detail=f"sweep {row.id!r} has no trials for {variant} yet: it has not started") from None
    items = trial_details(study, wanted, metric=metric, limit=limit)
    return _json({"variant": variant, "metric": metric, "items": items}, started)


def _numbers(raw: str | None) -> list[int] | None:
    if raw is None or not raw.strip():
        return None
    try:
        numbers = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        raise _unprocessable(["query", "numbers"], "numbers must be comma-separated trial numbers, e.g. 3,17,42") from None
    if len(numbers) > _MAX_NUMBERS or any(n < 0 for n in numbers):
        raise _unprocessable(["query", "numbers"], f"give at most {_MAX_NUMBERS} trial numbers, each >= 0")
    return numbers


@router.get(
    "/{sweep_id}/landscape/export",
    response_class=Response,
    responses={
        200: {
            "content": {"text/html": {"schema": {"type": "string"}}, "text/csv": {"schema": {"type": "string"}},
                        "application/json": {"schema": {"type": "object"}}},
            "description": "a standalone HTML figure (plotly.js inlined, works offline), or the grid as CSV/JSON",
        },
        **_ERRORS,
    },
)
def export_landscape(
    row: SweepDep,
    storage: OptunaDep,
    format: Annotated[Literal["html", "csv", "json"], Query(description="html, csv or json")] = "html",
    metric: MetricQuery = "test_error",
    epoch: EpochQuery = None,
    model: Annotated[bool, Query(description="draw the model surface (Bayesian sweeps)")] = False,
    clip_lo: ClipQuery = None,
    clip_hi: ClipQuery = None,
) -> Response:
    """The figure as one offline HTML file, or the aggregated grid (every cell of every variant) as CSV/JSON."""
    clip = _clip(clip_lo, clip_hi)
    landscapes = _landscapes(storage, row, metric, epoch, model)
    stem = f"{row.record_name}-{metric}" + ("" if epoch is None else f"-epoch{epoch}")
    disposition = {"Content-Disposition": f'attachment; filename="{stem}.{format}"'}
    if format == "csv":
        return Response(grid_csv(landscapes), media_type="text/csv; charset=utf-8", headers=disposition)
    if format == "json":
        return Response(grid_json(landscapes), media_type="application/json", headers=disposition)
    title = f"{row.record_name}: {metric.replace('_', ' ')}" + ("" if epoch is None else f" at epoch {epoch}")
    html = landscape_html(landscapes, title=title, dataset=(row.spec or {}).get("dataset"), clip=clip, show_model=model)
    return Response(html, media_type="text/html; charset=utf-8", headers=disposition)

"""A sweep's landscape: the aggregated grids over its two swept axes (per variant and facet value), coupling
metrics, figure and exports."""

from __future__ import annotations

import json
import math
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import Response
from optuna.storages import BaseStorage
from pydantic import ValidationError

from hpscape.dashboards import grid_csv, grid_json, landscape_figure, landscape_html, landscape_payload
from hpscape.landscapes import (
    LANDSCAPE_METRICS,
    VARIANT_NAMES,
    Facet,
    Landscape,
    LandscapeError,
    SweepSpec,
    build_sweep_landscapes,
    open_study,
    trial_details,
)
from hpscape.service.api.deps import OptunaDep, SettingsDep, SweepDep
from hpscape.service.api.routes.rendering import image_response
from hpscape.service.api.schemas import ErrorOut
from hpscape.service.db.models import SweepRow

router = APIRouter(prefix="/api/v1/sweeps", tags=["landscape"])

# From the registries: a variant or metric added there is accepted here with no edit.
Metric = Literal[LANDSCAPE_METRICS]  # type: ignore[valid-type]
Variant = Literal[VARIANT_NAMES]  # type: ignore[valid-type]
_MAX_NUMBERS = 1000
_NUMBER_LIMIT = 2**31

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "no token, or a token that is not valid"},
    404: {"model": ErrorOut, "description": "no such sweep"},
    422: {"model": ErrorOut, "description": "a parameter is invalid, or the metric is not recorded at that epoch"},
}
_JSON_OK = {"content": {"application/json": {"schema": {"type": "object"}}}, "description": "OK"}

MetricQuery = Annotated[Metric, Query(description="the metric the colour shows, at the final epoch or any epoch")]
EpochQuery = Annotated[
    int | None,
    Query(ge=1, le=10000, description="an epoch (1 = after the first); omit: the final epoch. A metric other than "
          "the sweep's is read from the trials' per-epoch history (records without one: 422)"),
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
        raise _unprocessable(["query", "clip_hi"],
                             f"the colour range needs finite clip_lo < clip_hi, got {lo!r}, {hi!r}")
    return lo, hi


def _spec(row: SweepRow) -> SweepSpec | None:
    """The row's spec, validated once per request; None for a row without one (or one this version cannot read:
    the landscapes then take the spec stored on the studies)."""
    if not row.spec:
        return None
    try:
        return SweepSpec.model_validate(row.spec)
    except ValidationError:
        return None


def _landscapes(
    storage: BaseStorage, row: SweepRow, spec: SweepSpec | None, metric: str, epoch: int | None, model: bool
) -> dict[str, Landscape]:
    try:
        return build_sweep_landscapes(storage, row.record_name, metric=metric, epoch=epoch, model=model, spec=spec)
    except LandscapeError as exc:
        raise _unprocessable(["query", "epoch" if epoch is not None else "metric"], str(exc)) from None


def _sweep_info(row: SweepRow, parsed: SweepSpec | None) -> dict[str, Any]:
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
        "max_epochs": None if parsed is None else parsed.max_epochs(),
        "kind": "bayes" if spec.get("bayes") else "grid",
        "variants": spec.get("variants"),
        "axes": None if parsed is None else list(parsed.swept_axes),
        "facet": None if parsed is None or parsed.facet is None else {
            "axis": parsed.facet.axis, "values": [f.value for f in parsed.facet.facets],
            "labels": [f.label for f in parsed.facet.facets]},
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
    """Per study (variant, and facet value): cells (mean, std, n, state, trial numbers) over the two swept axes,
    coupling metrics; the page's figure on request."""
    started = time.perf_counter()
    clip = _clip(clip_lo, clip_hi)
    spec = _spec(row)
    landscapes = _landscapes(storage, row, spec, metric, epoch, model)
    body = landscape_payload(
        landscapes, sweep=_sweep_info(row, spec), metric=metric, epoch=epoch, clip=clip, figure=figure,
        show_model=model,
    )
    body["server_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return _json(body, started)


@router.get("/{sweep_id}/landscape/trials", response_class=Response, responses={200: _JSON_OK, **_ERRORS})
def get_landscape_trials(
    row: SweepDep,
    storage: OptunaDep,
    variant: Annotated[Variant, Query(description="the variant (study) to read")],
    facet: Annotated[
        str | None,
        Query(max_length=200, description="a faceted sweep's facet value, AXIS=VALUE (e.g. schedule=step)"),
    ] = None,
    numbers: Annotated[
        str | None, Query(max_length=12000, description="comma-separated trial numbers (a cell's trials)")
    ] = None,
    metric: MetricQuery = "test_error",
    limit: Annotated[int, Query(ge=1, le=500, description="without numbers: this many best trials")] = 20,
) -> Response:
    """Trial rows (params by axis name, every hyperparameter, the per-epoch history and the objective's curve):
    the given trials, or the best finished ones by `metric`."""
    started = time.perf_counter()
    spec = _spec(row)
    variants = list(spec.variants) if spec is not None else list(VARIANT_NAMES)
    if variant not in variants:
        raise _unprocessable(["query", "variant"], f"variant {variant!r} is not in this sweep (its variants: "
                             f"{', '.join(variants)})")
    chosen = _facet(spec, facet)
    wanted = _numbers(numbers)
    try:
        study = open_study(storage, row.record_name, variant, chosen, create=False)
    except KeyError:
        what = variant if chosen is None else f"{variant} at {chosen.label}"
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            detail=f"sweep {row.id!r} has no trials for {what} yet: it has not started") from None
    items = trial_details(study, wanted, metric=metric, limit=limit)
    body = {"variant": variant, "facet": None if chosen is None else chosen.label, "metric": metric, "items": items}
    return _json(body, started)


def _facet(spec: SweepSpec | None, raw: str | None) -> Facet | None:
    """The facet the trials query names; 422 on the `facet` field for one the sweep does not have."""
    facets = [f for f in spec.facets() if f is not None] if spec is not None else None
    if raw is None or not raw.strip():
        if facets:
            raise _unprocessable(["query", "facet"], f"this sweep has a facet ({facets[0].axis}): give facet= one of "
                                 f"{', '.join(f.label for f in facets)}")
        return None
    try:
        facet = Facet.parse(raw.strip())
    except ValueError as exc:
        raise _unprocessable(["query", "facet"], str(exc)) from None
    if facets is not None and facet not in facets:
        known = f"its facet values: {', '.join(f.label for f in facets)}" if facets else "it has no facet"
        raise _unprocessable(["query", "facet"], f"facet {raw.strip()!r} is not in this sweep ({known})")
    return facet


def _numbers(raw: str | None) -> list[int] | None:
    if raw is None or not raw.strip():
        return None
    try:
        numbers = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        raise _unprocessable(["query", "numbers"],
                             "numbers must be comma-separated trial numbers, e.g. 3,17,42") from None
    if len(numbers) > _MAX_NUMBERS:
        raise _unprocessable(["query", "numbers"], f"give at most {_MAX_NUMBERS} trial numbers")
    # Trial numbers are the database's 32-bit integers: a larger one names no trial, and PostgreSQL refuses it.
    out_of_range = next((n for n in numbers if not 0 <= n < _NUMBER_LIMIT), None)
    if out_of_range is not None:
        raise _unprocessable(["query", "numbers"], f"trial numbers are integers from 0 to {_NUMBER_LIMIT - 1}, got "
                             f"{str(out_of_range)[:40]}")
    return numbers


@router.get(
    "/{sweep_id}/landscape/export",
    response_class=Response,
    responses={
        200: {
            "content": {"text/html": {"schema": {"type": "string"}}, "text/csv": {"schema": {"type": "string"}},
                        "application/json": {"schema": {"type": "object"}}, "image/png": {}, "image/svg+xml": {},
                        "application/pdf": {}},
            "description": "a standalone HTML figure (plotly.js inlined, works offline), the figure as an image with "
                           "a caption (PNG, SVG, PDF), or the grid as CSV/JSON",
        },
        **_ERRORS,
        409: {"model": ErrorOut, "description": "an image of a sweep with no recorded trial yet"},
        503: {"model": ErrorOut, "description": "no browser to draw images with, or two images being drawn already"},
    },
)
def export_landscape(
    row: SweepDep,
    storage: OptunaDep,
    settings: SettingsDep,
    format: Annotated[Literal["html", "csv", "json", "png", "svg", "pdf"],
                      Query(description="html, csv, json, png, svg or pdf")] = "html",
    metric: MetricQuery = "test_error",
    epoch: EpochQuery = None,
    model: Annotated[bool, Query(description="draw the model surface (Bayesian sweeps)")] = False,
    clip_lo: ClipQuery = None,
    clip_hi: ClipQuery = None,
) -> Response:
    """The figure as one offline HTML file or an image with a caption, or the aggregated grid (every cell of every
    study) as CSV/JSON."""
    clip = _clip(clip_lo, clip_hi)
    spec = _spec(row)
    landscapes = _landscapes(storage, row, spec, metric, epoch, model)
    stem = f"{row.record_name}-{metric}" + ("" if epoch is None else f"-epoch{epoch}")
    disposition = {"Content-Disposition": f'attachment; filename="{stem}.{format}"'}
    if format == "csv":
        csv_text = grid_csv(landscapes, axes=None if spec is None else spec.swept_axes)
        return Response(csv_text, media_type="text/csv; charset=utf-8", headers=disposition)
    if format == "json":
        return Response(grid_json(landscapes), media_type="application/json", headers=disposition)
    title = f"{row.record_name}: {metric.replace('_', ' ')}" + ("" if epoch is None else f" at epoch {epoch}")
    if format in ("png", "svg", "pdf"):
        if not landscapes:
            raise HTTPException(409, detail="nothing to draw yet: no trial of this sweep has been recorded")
        figure = landscape_figure(landscapes, dataset=(row.spec or {}).get("dataset"), clip=clip, show_model=model)
        return image_response(figure, format, row=row, settings=settings, metric=metric, epoch=epoch,
                              headers=disposition)
    html = landscape_html(landscapes, title=title, dataset=(row.spec or {}).get("dataset"), clip=clip, show_model=model)
    return Response(html, media_type="text/html; charset=utf-8", headers=disposition)

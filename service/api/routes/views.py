"""A sweep's other views: facets (Figure 1), curves (Figures 3 and 4), budget and mechanism, as figures with their
numbers, and their exports (offline HTML, PNG, SVG, PDF, JSON)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import Response

from hpscape.dashboards import standalone_html
from hpscape.dashboards.views import (
    VIEWS,
    available_views,
    budget_view,
    curves_view,
    facet_view,
    mechanism_view,
    view_unavailable,
)
from hpscape.landscapes import LANDSCAPE_METRICS, sweep_curves
from hpscape.landscapes.mechanism import ANGLES, sweep_mechanism
from hpscape.service.api.deps import OptunaDep, SettingsDep, SweepDep
from hpscape.service.api.routes.landscape import (
    _ERRORS,
    _JSON_OK,
    ClipQuery,
    EpochQuery,
    _clip,
    _json,
    _landscapes,
    _spec,
    _sweep_info,
    _unprocessable,
)
from hpscape.service.api.routes.rendering import image_response

router = APIRouter(prefix="/api/v1/sweeps", tags=["views"])

# The landscape view has its own routes (landscape.py); the others are served here, by name from the one list.
View = Literal[tuple(name for name in VIEWS if name != "landscape")]  # type: ignore[valid-type]
MetricQuery = Annotated[
    str | None, Query(max_length=40, description="facets, budget: the metric the colour (or the optimum) is of; "
                      "default: the sweep's objective")]
MetricsQuery = Annotated[
    str | None, Query(max_length=200, description="curves: comma-separated metrics, one panel each (default: the "
                      "sweep's objective and train_loss)")]

AngleQuery = Annotated[
    Literal[tuple(ANGLES)] | None,  # type: ignore[valid-type]
    Query(description="mechanism: the angle on the x axis, the prediction (`theory`, default) or what the trainer "
          "measured (`measured`), both at the last epoch")]


@dataclass
class ViewQuery:
    """The query parameters every view route takes (one dependency, so the view and its export cannot drift)."""

    metric: MetricQuery = None
    metrics: MetricsQuery = None
    epoch: EpochQuery = None
    clip_lo: ClipQuery = None
    clip_hi: ClipQuery = None
    angle: AngleQuery = None


ViewQueryDep = Annotated[ViewQuery, Depends()]


def _metric(raw: str | None, default: str, field: str = "metric") -> str:
    metric = (raw or default).strip()
    if metric not in LANDSCAPE_METRICS:
        raise _unprocessable(["query", field], f"unknown metric {metric!r}; choose one of "
                             f"{', '.join(LANDSCAPE_METRICS)}")
    return metric


def _metrics(raw: str | None, spec_metric: str) -> list[str]:
    if raw is None or not raw.strip():
        return list(dict.fromkeys([spec_metric, "train_loss"]))
    return list(dict.fromkeys(_metric(part, spec_metric, "metrics") for part in raw.split(",") if part.strip()))


def _view_body(view: str, row: Any, storage: Any, query: ViewQuery) -> dict[str, Any]:
    metric, metrics, epoch, angle = query.metric, query.metrics, query.epoch, query.angle
    clip = _clip(query.clip_lo, query.clip_hi)
    spec = _spec(row)
    why = view_unavailable(view, spec)
    if why is not None:
        raise _unprocessable(["path", "view"], why)
    assert spec is not None
    info = _sweep_info(row, spec)
    title = f"{row.record_name}: {VIEWS[view]}"
    body: dict[str, Any]
    if view == "curves":
        chosen = _metrics(metrics, spec.metric)
        try:
            curves = sweep_curves(storage, row.record_name, spec, metrics=chosen)
        except ValueError as exc:
            raise _unprocessable(["path", "view"], str(exc)) from None
        body = curves_view(curves, spec, chosen, title=title)
        body["metric"] = chosen[0]
        body["chosen_metrics"] = chosen
    elif view == "mechanism":
        # The final metric against the last epoch's angle: an `epoch` would need the angle of that epoch too.
        if epoch is not None:
            raise _unprocessable(["query", "epoch"], "the mechanism view reads the final epoch; leave out epoch")
        one = _metric(metric, spec.metric)
        body = mechanism_view(sweep_mechanism(storage, row.record_name, spec, metric=one, angle=angle or "theory"),
                              title=title)
        body["metric"] = one
    else:
        one = _metric(metric, spec.metric)
        landscapes = _landscapes(storage, row, spec, one, epoch, False)
        if not landscapes:
            body = {"figure": {"data": [], "layout": {}}, "table": None,
                    "notes": ["no trial has been recorded yet: the view fills in as the sweep runs"]}
        elif view == "facets":
            body = facet_view(landscapes, dataset=spec.dataset, clip=clip, title=title)
        else:
            body = budget_view(landscapes, spec, title=title)
        body["metric"] = one
    return {**body, "view": view, "sweep": info, "views": available_views(spec), "metrics": list(LANDSCAPE_METRICS)}


@router.get("/{sweep_id}/views", responses=_ERRORS)
def list_views(row: SweepDep) -> dict[str, Any]:
    """Which views apply to this sweep (and what each shows); the others say why not."""
    spec = _spec(row)
    return {"available": available_views(spec),
            "views": {name: {"shows": shows, "unavailable": view_unavailable(name, spec)}
                      for name, shows in VIEWS.items()}}


@router.get("/{sweep_id}/views/{view}", response_class=Response, responses={200: _JSON_OK, **_ERRORS})
def get_view(
    row: SweepDep,
    storage: OptunaDep,
    view: View,
    query: ViewQueryDep,
) -> Response:
    """The view's plotly figure(s), and its numbers as tables (coupling per panel; final values and anytime
    speedups; optimal decay per budget and the exponent; collapse score per variant pair)."""
    started = time.perf_counter()
    body = _view_body(view, row, storage, query)
    body["server_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return _json(body, started)


@router.get(
    "/{sweep_id}/views/{view}/export",
    response_class=Response,
    responses={200: {"content": {"text/html": {}, "image/png": {}, "image/svg+xml": {}, "application/pdf": {},
                                 "application/json": {}},
                     "description": "the view as an offline HTML file, an image (with a caption) or JSON"},
               **_ERRORS, 409: {"description": "an image of a sweep with no recorded trial yet"},
               503: {"description": "no browser to draw images with (the message says how to get one), or two "
                                    "images being drawn already"}},
)
def export_view(
    row: SweepDep,
    storage: OptunaDep,
    settings: SettingsDep,
    view: View,
    query: ViewQueryDep,
    format: Annotated[Literal["html", "png", "svg", "pdf", "json"], Query(description="html, png, svg, pdf or json")]
    = "html",
) -> Response:
    body = _view_body(view, row, storage, query)
    stem = f"{row.record_name}-{view}"
    disposition = {"Content-Disposition": f'attachment; filename="{stem}.{format}"'}
    if format == "json":
        body.pop("figure", None)
        body.pop("generalization", None)
        return _json(body, time.perf_counter(), disposition)
    figure = body["figure"]
    if format == "html":
        html = standalone_html(figure, title=f"{row.record_name}: {VIEWS[view]}")
        if body.get("generalization"):
            html = html.replace("</body>", _second_figure(body["generalization"]) + "</body>")
        return Response(html, media_type="text/html; charset=utf-8", headers=disposition)
    if not figure.get("data"):
        raise HTTPException(409, detail="nothing to draw yet: no trial of this sweep has been recorded")
    return image_response(figure, format, row=row, settings=settings, what=VIEWS[view], headers=disposition)


def _second_figure(figure: dict[str, Any]) -> str:
    import plotly.io as pio

    return pio.to_html(figure, include_plotlyjs=False, full_html=False, validate=False,
                       config={"displaylogo": False, "responsive": True}, default_width="100%")

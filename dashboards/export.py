"""Exports of the aggregated grid: a standalone (offline) HTML figure, CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping
from html import escape
from typing import Any

import plotly.io as pio

from hpscape.landscapes import CouplingMetrics, Landscape, coupling_metrics_by_key

from .figures import sweep_figure
from .format import default_clip

__all__ = ["csv_columns", "grid_csv", "grid_json", "landscape_figure", "landscape_html", "standalone_html"]

# The columns around the two axis columns (named after the swept axes, e.g. lr and weight_decay, beta1 and beta2).
_CSV_HEAD = ("variant", "facet", "metric", "epoch")
_CSV_TAIL = ("mean", "std", "n", "count", "n_diverged", "state", "budget", "trials")
# When there is no landscape to take them from (a sweep that has not started) and the caller gives none.
_NO_AXES = ("y", "x")


def csv_columns(y_axis: str, x_axis: str) -> tuple[str, ...]:
    """The header of `grid_csv`: variant, facet, metric, epoch, <y axis>, <x axis>, mean, std, n, ..."""
    return (*_CSV_HEAD, y_axis, x_axis, *_CSV_TAIL)


def standalone_html(figure: Mapping[str, Any], *, title: str = "hpscape landscape") -> str:
    """One HTML file with plotly.js inlined: opens offline, in any browser, with hover working."""
    body = pio.to_html(
        dict(figure),
        include_plotlyjs=True,
        full_html=False,
        validate=False,
        config={"displaylogo": False, "responsive": True},
        default_width="100%",
    )
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{escape(title)}</title></head><body style=\"margin:0;font-family:sans-serif\">"
        f"<h3 style=\"margin:8px 12px\">{escape(title)}</h3>{body}</body></html>\n"
    )


def landscape_html(
    landscapes: Mapping[str, Landscape],
    *,
    title: str,
    dataset: str | None = None,
    clip: tuple[float, float] | None = None,
    show_model: bool = False,
    coupling: Mapping[str, CouplingMetrics] | None = None,
) -> str:
    """The Figure 2 view of `landscapes` with coupling metrics, as one offline HTML file.

    `clip` None takes `default_clip` (Figure 2's range for CIFAR-10 test error, else the measured spread).
    `coupling` None computes the metrics (keyed by study key, like `landscapes`); pass them when the caller has
    them already.
    """
    figure = landscape_figure(landscapes, dataset=dataset, clip=clip, show_model=show_model, coupling=coupling)
    return standalone_html(figure, title=title)


def landscape_figure(
    landscapes: Mapping[str, Landscape],
    *,
    dataset: str | None = None,
    clip: tuple[float, float] | None = None,
    show_model: bool = False,
    coupling: Mapping[str, CouplingMetrics] | None = None,
    title: str | None = None,
) -> dict[str, Any]:
    """The exported Figure 2 view as a plotly figure dict (what `landscape_html` and the image exports draw)."""
    metric = next(iter(landscapes.values())).metric if landscapes else "test_error"
    used = clip or default_clip(landscapes.values(), metric, dataset=dataset)
    if coupling is None:
        coupling = coupling_metrics_by_key(landscapes)
    return sweep_figure(landscapes, clip=used, coupling=coupling, show_model=show_model, width=1300, title=title)


def _number(value: float) -> str:
    return "" if not math.isfinite(value) else repr(float(value))


def _shared_axes(landscapes: Mapping[str, Landscape], axes: tuple[str, str] | None) -> tuple[str, str]:
    found = {(land.y.name, land.x.name) for land in landscapes.values()}
    if axes is not None:
        found.add(tuple(axes))  # type: ignore[arg-type]
    if len(found) > 1:
        raise ValueError(f"one CSV holds one sweep, whose landscapes share their axes; got {sorted(found)}")
    return next(iter(found)) if found else _NO_AXES


def grid_csv(landscapes: Mapping[str, Landscape], *, axes: tuple[str, str] | None = None) -> str:
    """One row per cell and study (columns `csv_columns`); empty fields where there is no value.

    The two axis columns are named after the landscapes' axes (all of one sweep share them); `axes` names them
    when there is no landscape yet (the spec's `swept_axes`). ValueError for landscapes with different axes.
    """
    y_name, x_name = _shared_axes(landscapes, axes)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(csv_columns(y_name, x_name))
    for landscape in landscapes.values():
        epoch = "" if landscape.epoch is None else str(landscape.epoch)
        facet = "" if landscape.facet is None else landscape.facet.label
        for i, y in enumerate(landscape.y.values):
            for j, x in enumerate(landscape.x.values):
                writer.writerow(
                    [
                        landscape.variant,
                        facet,
                        landscape.metric,
                        epoch,
                        repr(float(y)),
                        repr(float(x)),
                        _number(landscape.mean[i, j]),
                        _number(landscape.std[i, j]),
                        int(landscape.n[i, j]),
                        int(landscape.count[i, j]),
                        int(landscape.n_diverged[i, j]),
                        landscape.state[i, j],
                        int(landscape.budget[i, j]),
                        " ".join(str(t) for t in landscape.trials[i][j]),
                    ]
                )
    return out.getvalue()


def grid_json(landscapes: Mapping[str, Landscape]) -> str:
    """The aggregated grids (`Landscape.to_dict`) and coupling metrics of every study, keyed by study key."""
    coupling = coupling_metrics_by_key(landscapes)
    body = {key: {**land.to_dict(), "coupling": coupling[key].to_dict()} for key, land in landscapes.items()}
    return json.dumps(body, allow_nan=False)

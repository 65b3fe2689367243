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

from hpscape.landscapes import CouplingMetrics, Landscape, coupling_metrics

from .figures import sweep_figure
from .format import default_clip

__all__ = ["CSV_COLUMNS", "grid_csv", "grid_json", "landscape_html", "standalone_html"]

CSV_COLUMNS = (
    "variant",
    "metric",
    "epoch",
    "lr",
    "weight_decay",
    "mean",
    "std",
    "n",
    "count",
    "n_diverged",
    "state",
    "budget",
    "trials",
)


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
    `coupling` None computes the metrics; pass them when the caller has them already.
    """
    metric = next(iter(landscapes.values())).metric if landscapes else "test_error"
    used = clip or default_clip(landscapes.values(), metric, dataset=dataset)
    if coupling is None:
        coupling = {v: coupling_metrics(l) for v, l in landscapes.items()}
    figure = sweep_figure(landscapes, clip=used, coupling=coupling, show_model=show_model, width=1300)
    return standalone_html(figure, title=title)


def _number(value: float) -> str:
    return "" if not math.isfinite(value) else repr(float(value))


def grid_csv(landscapes: Mapping[str, Landscape]) -> str:
    """One row per cell and variant (columns `CSV_COLUMNS`); empty fields where there is no value."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for variant, landscape in landscapes.items():
        epoch = "" if landscape.epoch is None else str(landscape.epoch)
        for i, lr in enumerate(landscape.lr):
            for j, wd in enumerate(landscape.weight_decay):
                writer.writerow(
                    [
                        variant,
                        landscape.metric,
                        epoch,
                        repr(float(lr)),
                        repr(float(wd)),
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
    """The aggregated grids and coupling metrics of every variant, as one JSON document."""
    body = {
        variant: {**l.to_dict(), "coupling": coupling_metrics(l).to_dict()}
        for variant, l in landscapes.items()
    }
    return json.dumps(body, allow_nan=False)

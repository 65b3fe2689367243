"""The traces of one subplot: a panel's heatmap with its marks, or a difference map; hover text included.

Cells are drawn at integer positions (column j, row i), so every axis, whatever its scale, gets evenly spaced
cells; the tick labels (`format.axis_ticks`) say what the positions stand for.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hpscape.landscapes import Landscape, LandscapeAxis
from hpscape.landscapes.variants import variant_label

from .format import axis_ticks, coordinate, format_value, is_error_metric, metric_label

__all__ = ["diff_trace", "panel_name", "panel_traces"]

_MARKS = {
    # name: (legend label, plotly symbol, colour, size factor)
    "best": ("best cells", "circle-open", "black", 0.82),  # the label gets the count
    "diverged": ("diverged", "x-thin-open", "#c0392b", 0.55),
    "running": ("running", "hourglass", "#444444", 0.45),
    "stopped": ("stopped early", "triangle-down-open", "#444444", 0.5),
    "failed": ("failed", "square-x-open", "#888888", 0.5),
}


def panel_name(landscape: Landscape) -> str:
    """'SGDW', or 'SGDW · schedule=step' in a faceted sweep."""
    name = variant_label(landscape.variant)
    return name if landscape.facet is None else f"{name} · {landscape.facet.label}"


def _suffix(k: int) -> str:
    return "" if k == 1 else str(k)


def _coordinates(axis: LandscapeAxis) -> list[str]:
    labels, scale = axis_ticks(axis.values.tolist(), axis.scale)
    return [coordinate(axis, i, labels, scale) for i in range(axis.size)]


def _meta(landscape: Landscape, role: str) -> dict[str, Any]:
    return {"key": landscape.key, "variant": landscape.variant,
            "facet": None if landscape.facet is None else landscape.facet.label, "role": role}


def panel_traces(
    k: int, landscape: Landscape, top_k: int, show_model: bool, shown: set[str]
) -> list[dict[str, Any]]:
    """The heatmap of subplot `k` and its marks (best, diverged, running, ...); `shown` tracks legend entries."""
    n_rows, n_cols = landscape.shape
    use_model = show_model and landscape.model is not None
    z = landscape.model.mean if use_model else landscape.mean  # type: ignore[union-attr]
    heatmap: dict[str, Any] = {
        "type": "heatmap",
        "name": panel_name(landscape),
        "x": list(range(n_cols)),
        "y": list(range(n_rows)),
        "z": _nan_to_none(z),
        "coloraxis": "coloraxis",
        "xaxis": f"x{_suffix(k)}",
        "yaxis": f"y{_suffix(k)}",
        "xgap": 1,
        "ygap": 1,
        "hoverinfo": "text",
        "hovertext": _hover_texts(landscape, use_model),
        "hoverongaps": True,
        "showlegend": False,
        "meta": {**_meta(landscape, "panel"), "cells": n_rows * n_cols},
    }
    if landscape.kind == "binned" and n_rows * n_cols <= 400:
        # Binned cells show how many trials fell into them.
        heatmap["text"] = [[str(c) if c else "" for c in row] for row in landscape.count.tolist()]  # empty: blank
        heatmap["texttemplate"] = "%{text}"
        heatmap["textfont"] = {"size": 9, "color": "#333"}
    traces = [heatmap]
    size = max(6.0, min(26.0, 300.0 / max(n_rows, n_cols, 1)))
    marks = {
        "best": landscape.best_cells(top_k),
        "diverged": list(zip(*np.nonzero(landscape.diverged))),
        "running": list(zip(*np.nonzero(landscape.state == "running"))),
        "stopped": list(zip(*np.nonzero(landscape.state == "stopped"))),
        "failed": list(zip(*np.nonzero(landscape.state == "failed"))),
    }
    for name, cells in marks.items():
        if not cells:
            continue
        label, symbol, colour, factor = _MARKS[name]
        if name == "best":
            label = "best cell" if top_k == 1 else f"{top_k} best cells"
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": label,
                "legendgroup": name,
                "showlegend": name not in shown,
                "x": [int(c) for _, c in cells],
                "y": [int(r) for r, _ in cells],
                "xaxis": f"x{_suffix(k)}",
                "yaxis": f"y{_suffix(k)}",
                "hoverinfo": "skip",
                "marker": {
                    "symbol": symbol,
                    "size": round(size * factor, 1),
                    "color": colour,
                    "line": {"width": 2, "color": colour},
                },
                "meta": _meta(landscape, name),
            }
        )
        shown.add(name)
    return traces


def _hover_texts(landscape: Landscape, use_model: bool) -> list[list[str]]:
    metric = landscape.metric
    words = metric_label(metric).replace(" (%)", "")
    ys, xs = _coordinates(landscape.y), _coordinates(landscape.x)
    name = panel_name(landscape)
    counts = landscape.state_counts
    out = []
    for i in range(landscape.shape[0]):
        row = []
        for j in range(landscape.shape[1]):
            lines = [f"<b>{name}</b>  {ys[i]} · {xs[j]}"]
            n = int(landscape.n[i, j])
            value = format_value(metric, landscape.mean[i, j])
            if n > 1:
                spread = format_value(metric, landscape.std[i, j]).replace(" %", "")
                unit = " %" if is_error_metric(metric) else ""
                lines.append(f"{words}: {value.replace(' %', '')} ± {spread}{unit}  (n={n})")
            else:
                lines.append(f"{words}: {value}  (n={n})")
            if use_model and landscape.model is not None:
                lines.append(f"MODEL estimate: {format_value(metric, landscape.model.mean[i, j])} (not measured)")
            state = str(landscape.state[i, j])
            if state == "stopped":
                state = f"stopped early at budget {int(landscape.budget[i, j])} epochs"
            parts = [f"{int(counts[c][i, j])} {c}" for c in counts if counts[c][i, j]]
            lines.append(f"state: {state}" + (f" ({', '.join(parts)})" if parts else ""))
            if landscape.diverged[i, j]:
                lines.append("diverged: kept out of the colour scale")
            trials = landscape.trials[i][j]
            if trials:
                listed = ", ".join(f"#{t}" for t in trials[:12])
                more = f" … ({len(trials)} trials)" if len(trials) > 12 else ""
                lines.append(f"trials: {listed}{more}")
            row.append("<br>".join(lines))
        out.append(row)
    return out


def diff_trace(k: int, left: Landscape, right: Landscape, diff: dict[str, Any]) -> dict[str, Any]:
    """The difference map (right − left, from `rows.difference`) in subplot `k`."""
    metric = left.metric
    n_rows, n_cols = diff["diff"].shape
    ys, xs = _coordinates(diff["y"]), _coordinates(diff["x"])
    a, b = panel_name(left), panel_name(right)
    texts = []
    for i in range(n_rows):
        row = []
        for j in range(n_cols):
            value = diff["diff"][i, j]
            delta = format_value(metric, value, signed=True)
            if is_error_metric(metric) and np.isfinite(value):
                delta = delta.replace(" %", " pp")
            row.append(
                f"<b>{b} − {a}</b>: {delta}<br>{ys[i]} · {xs[j]}<br>"
                f"{a} {format_value(metric, diff['left'][i, j])} · {b} {format_value(metric, diff['right'][i, j])}"
            )
        texts.append(row)
    return {
        "type": "heatmap",
        "name": f"{right.key} − {left.key}",
        "x": list(range(n_cols)),
        "y": list(range(n_rows)),
        # Errors differ in percentage points: the colour bar reads pp, not a fraction.
        "z": _nan_to_none(diff["diff"] * (100.0 if is_error_metric(left.metric) else 1.0)),
        "coloraxis": "coloraxis2",
        "xaxis": f"x{_suffix(k)}",
        "yaxis": f"y{_suffix(k)}",
        "xgap": 1,
        "ygap": 1,
        "hoverinfo": "text",
        "hovertext": texts,
        "hoverongaps": True,
        "showlegend": False,
        "meta": {
            **_meta(right, "diff"),
            "pair": [left.key, right.key],
            "cells": n_rows * n_cols,
            # The page maps a clicked difference cell back to both panels by these values.
            "y": diff["y"].values.tolist(),
            "x": diff["x"].values.tolist(),
        },
    }


def _nan_to_none(array: np.ndarray) -> list[list[float | None]]:
    return [[None if v != v else v for v in row] for row in array.tolist()]

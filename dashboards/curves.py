"""The curves views (Figures 3 and 4): metrics against epoch per cell, and test error against training loss.

A line is one cell (a grid point of one study) averaged over its seeds, with a band of +-1 standard deviation
where it has two seeds or more. Each cell keeps one colour in every panel; a facet value (a schedule) is a dash
style. Warm restarts are dotted vertical lines. Losses are drawn on a log scale, as the paper draws them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hpscape.landscapes import CellCurves
from hpscape.landscapes.variants import variant_label

from .format import is_error_metric, metric_label

__all__ = ["curve_name", "curves_figure", "generalization_figure"]

_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22")
_DASHES = ("solid", "dash", "dot", "dashdot", "longdash")
_PANEL_PX, _TOP, _BOTTOM = 330, 60, 50


def curve_name(c: CellCurves) -> str:
    """'AdamW (paper) · weight_decay 0.5 · schedule=warm_restarts'."""
    parts = [variant_label(c.variant), c.label]
    if c.facet is not None:
        parts.append(c.facet.label)
    return " · ".join(p for p in parts if p)


def _styles(curves: Sequence[CellCurves]) -> list[tuple[str, str]]:
    """(colour, dash) per curve: a colour per (variant, cell), a dash per facet value."""
    colours: dict[tuple[Any, ...], str] = {}
    dashes: dict[str, str] = {}
    out = []
    for c in curves:
        cell = (c.variant, tuple(c.params.items()))
        colours.setdefault(cell, _PALETTE[len(colours) % len(_PALETTE)])
        facet = "" if c.facet is None else c.facet.label
        dashes.setdefault(facet, _DASHES[len(dashes) % len(_DASHES)])
        out.append((colours[cell], dashes[facet]))
    return out


def _scaled(metric: str, values: np.ndarray) -> list[float | None]:
    factor = 100.0 if is_error_metric(metric) else 1.0
    return [None if not np.isfinite(v) else float(v) * factor for v in values]


def _band(colour: str) -> str:
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},0.15)"


def curves_figure(
    curves: Sequence[CellCurves],
    metrics: Sequence[str],
    *,
    restarts: Mapping[str, Sequence[int]] | None = None,
    title: str | None = None,
    width: int | None = None,
) -> dict[str, Any]:
    """One panel per metric (stacked), every cell's mean curve over epochs with its +-1 std band."""
    styles = _styles(curves)
    n = max(1, len(metrics))
    height = _TOP + _BOTTOM + n * _PANEL_PX
    gap = 70 / height
    span = (1.0 - gap * (n - 1)) / n
    data: list[dict[str, Any]] = []
    layout: dict[str, Any] = {}
    shapes: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    restart_epochs = sorted({e for ends in (restarts or {}).values() for e in ends})
    for m, metric in enumerate(metrics):
        suffix = "" if m == 0 else str(m + 1)
        top = 1.0 - m * (span + gap)
        error = is_error_metric(metric)
        layout[f"xaxis{suffix}"] = {"domain": [0.0, 1.0], "anchor": f"y{suffix}", "title": {"text": "epoch"},
                                    "matches": "x" if m else None, "zeroline": False}
        layout[f"yaxis{suffix}"] = {"domain": [top - span, top], "anchor": f"x{suffix}",
                                    "title": {"text": metric_label(metric)},
                                    "type": "linear" if error else "log", "zeroline": False}
        for c, (colour, dash) in zip(curves, styles):
            if metric not in c.values:
                continue
            x = c.epochs.tolist()
            mean, std = c.mean(metric), c.std(metric)
            group = f"{c.key}|{c.label}"
            if np.isfinite(std).any():
                lo, hi = mean - np.nan_to_num(std), mean + np.nan_to_num(std)
                if not error:
                    lo = np.where(lo > 0, lo, mean)  # a log axis has no room below 0
                data.append({"type": "scatter", "mode": "lines", "x": x + x[::-1],
                             "y": _scaled(metric, hi) + _scaled(metric, lo)[::-1], "fill": "toself",
                             "fillcolor": _band(colour), "line": {"width": 0}, "hoverinfo": "skip",
                             "showlegend": False, "legendgroup": group, "xaxis": f"x{suffix}", "yaxis": f"y{suffix}",
                             "meta": {"key": c.key, "role": "band", "metric": metric}})
            data.append({
                "type": "scatter", "mode": "lines", "name": curve_name(c), "x": x, "y": _scaled(metric, mean),
                "line": {"color": colour, "dash": dash, "width": 2}, "legendgroup": group, "showlegend": m == 0,
                "xaxis": f"x{suffix}", "yaxis": f"y{suffix}",
                "hovertemplate": f"{curve_name(c)}<br>epoch %{{x}}: %{{y:.4g}}{' %' if error else ''}"
                                 f" (mean of {len(c.seeds)} seed(s))<extra></extra>",
                "meta": {"key": c.key, "role": "curve", "metric": metric, "params": c.params,
                         "trials": list(c.trials)},
            })
        for epoch in restart_epochs:
            shapes.append({"type": "line", "xref": f"x{suffix}", "yref": f"y{suffix} domain", "x0": epoch,
                           "x1": epoch, "y0": 0, "y1": 1, "line": {"color": "#555", "width": 1, "dash": "dot"}})
        if restart_epochs and m == 0:
            annotations.append({"text": "dotted: warm restarts (after epochs " + ", ".join(map(str, restart_epochs))
                                + ")", "xref": "paper", "yref": "paper", "x": 1.0, "y": top, "xanchor": "right",
                                "yanchor": "bottom", "showarrow": False, "font": {"size": 11, "color": "#555"}})
    layout.update({
        "height": height,
        "margin": {"t": _TOP, "b": _BOTTOM, "l": 70, "r": 20},
        "font": {"family": "Helvetica, Arial, sans-serif", "size": 12},
        "hovermode": "closest",
        "legend": {"orientation": "v", "x": 1.01, "y": 1.0, "font": {"size": 10}},
        "shapes": shapes,
        "annotations": annotations,
        "plot_bgcolor": "white",
    })
    if title:
        layout["title"] = {"text": title, "x": 0.0, "xanchor": "left", "font": {"size": 16}}
    if width:
        layout["width"] = width
    return {"data": data, "layout": _tidy(layout)}


def generalization_figure(
    curves: Sequence[CellCurves],
    *,
    x_metric: str = "train_loss",
    y_metric: str = "test_error",
    title: str | None = None,
    width: int | None = None,
) -> dict[str, Any]:
    """Figure 3's bottom row: each cell's path through (training loss, test error) over epochs, its end marked."""
    styles = _styles(curves)
    data: list[dict[str, Any]] = []
    y_error = is_error_metric(y_metric)
    for c, (colour, dash) in zip(curves, styles):
        if x_metric not in c.values or y_metric not in c.values:
            continue
        xs, ys = c.mean(x_metric), c.mean(y_metric)
        ok = np.isfinite(xs) & np.isfinite(ys) & (xs > 0)
        if not ok.any():
            continue
        name = curve_name(c)
        data.append({"type": "scatter", "mode": "lines", "x": xs[ok].tolist(), "y": _scaled(y_metric, ys[ok]),
                     "line": {"color": colour, "dash": dash, "width": 1}, "opacity": 0.45, "hoverinfo": "skip",
                     "showlegend": False, "legendgroup": name, "meta": {"key": c.key, "role": "path"}})
        last = int(np.flatnonzero(ok)[-1])
        data.append({"type": "scatter", "mode": "markers", "name": name, "x": [float(xs[last])],
                     "y": _scaled(y_metric, ys[last : last + 1]), "legendgroup": name,
                     "marker": {"color": colour, "size": 10, "symbol": "circle" if dash == "solid" else "diamond"},
                     "hovertemplate": f"{name}<br>epoch {int(c.epochs[last])}: {metric_label(x_metric)} %{{x:.4g}}, "
                                      f"{metric_label(y_metric)} %{{y:.4g}}{' %' if y_error else ''}<extra></extra>",
                     "meta": {"key": c.key, "role": "final", "params": c.params}})
    layout: dict[str, Any] = {
        "height": 480,
        "margin": {"t": 60, "b": 50, "l": 70, "r": 20},
        "font": {"family": "Helvetica, Arial, sans-serif", "size": 12},
        "xaxis": {"title": {"text": metric_label(x_metric) + " (log)"}, "type": "log"},
        "yaxis": {"title": {"text": metric_label(y_metric)}},
        "legend": {"orientation": "v", "x": 1.01, "y": 1.0, "font": {"size": 10}},
        "hovermode": "closest",
        "plot_bgcolor": "white",
        "annotations": [{"text": "lines: each cell's path over epochs; markers: its last epoch", "xref": "paper",
                         "yref": "paper", "x": 1.0, "y": 1.0, "xanchor": "right", "yanchor": "bottom",
                         "showarrow": False, "font": {"size": 11, "color": "#555"}}],
    }
    if title:
        layout["title"] = {"text": title, "x": 0.0, "xanchor": "left", "font": {"size": 16}}
    if width:
        layout["width"] = width
    return {"data": data, "layout": layout}


def _tidy(layout: dict[str, Any]) -> dict[str, Any]:
    for value in layout.values():
        if isinstance(value, dict) and value.get("matches", "") is None:
            del value["matches"]
    return layout

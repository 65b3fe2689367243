"""The Figure 2 view as a plotly figure (a plain dict: fast to build, JSON-ready, no validation pass).

One row per pair of variants (SGD | SGDW, Adam | AdamW, AdamW | AdamW-torch), each row with the
two panels and the difference map (right minus left). Learning rate runs up, weight decay right,
both labelled in powers of two, with the 0-decay column left of a white separator. The panels
share one clipped colour scale; diverged cells get no colour and a red cross, the ten best
cells of each panel a black circle. Every cell's hover gives mean ± std, n, state and trials.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hpscape.landscapes import VARIANTS, CouplingMetrics, Landscape

from .format import VARIANT_LABELS, axis_ticks, format_value, is_error_metric, metric_label

__all__ = ["PAIRS", "difference", "panel_rows", "sweep_figure"]

# Figure 2's comparisons, plus torch's AdamW against the paper's.
PAIRS: tuple[tuple[str, str], ...] = (("sgd", "sgdw"), ("adam", "adamw"), ("adamw", "adamw-torch"))

# Layout in pixels; turned into paper fractions once the figure height is known.
_TOP, _BOTTOM, _TITLE, _PANEL, _AXIS = 96, 16, 56, 270, 62
# Column domains (paper x): left panel, right panel, difference map; gaps hold y tick labels.
_COLUMNS = ((0.0, 0.29), (0.355, 0.645), (0.71, 1.0))
_COLOURS = "Viridis"  # reversed: good (low) cells light, so the black circles stand out
_DIFF_COLOURS = "RdBu"  # plotly's RdBu runs blue (low) to red: blue where the right-hand variant is lower
_MARKS = {
    # name: (legend label, plotly symbol, colour, size factor)
    "best": ("best cells", "circle-open", "black", 0.82),  # the label gets the count
    "diverged": ("diverged", "x-thin-open", "#c0392b", 0.55),
    "running": ("running", "hourglass", "#444444", 0.45),
    "stopped": ("stopped early", "triangle-down-open", "#444444", 0.5),
    "failed": ("failed", "square-x-open", "#888888", 0.5),
}


def panel_rows(variants: Sequence[str]) -> list[tuple[str, str | None]]:
    """Rows of the figure: each pair in PAIRS whose variants are both present, then the rest alone."""
    present = [v for v in VARIANTS if v in variants]
    rows: list[tuple[str, str | None]] = [
        pair for pair in PAIRS if pair[0] in present and pair[1] in present
    ]
    paired = {v for pair in rows for v in pair if v is not None}
    rows += [(v, None) for v in present if v not in paired]
    return rows


def difference(left: Landscape, right: Landscape) -> dict[str, Any]:
    """right − left on the cells both grids share: {"lr", "weight_decay", "diff", "left", "right"}.

    Cells where either side has no measured value (empty, running, diverged) are NaN.
    """
    rows_l, rows_r = _common(left.lr, right.lr)
    cols_l, cols_r = _common(left.weight_decay, right.weight_decay)
    a = left.mean[np.ix_(rows_l, cols_l)]
    b = right.mean[np.ix_(rows_r, cols_r)]
    return {
        "lr": left.lr[rows_l],
        "weight_decay": left.weight_decay[cols_l],
        "diff": b - a,
        "left": a,
        "right": b,
    }


def _common(a: np.ndarray, b: np.ndarray) -> tuple[list[int], list[int]]:
    ia, ib = [], []
    for i, value in enumerate(a):
        hits = np.flatnonzero(np.isclose(b, value, rtol=1e-9, atol=0.0))
        if hits.size:
            ia.append(i)
            ib.append(int(hits[0]))
    return ia, ib


def sweep_figure(
    landscapes: Mapping[str, Landscape],
    *,
    clip: tuple[float, float] | None = None,
    coupling: Mapping[str, CouplingMetrics] | None = None,
    title: str | None = None,
    top_k: int = 10,
    show_model: bool = False,
    width: int | None = None,
) -> dict[str, Any]:
    """The Figure 2 view of a sweep as a plotly figure dict ({"data", "layout"}).

    `clip` (lo, hi) is the shared colour range (values outside take the end colours, as in the
    paper); None lets plotly fit it. `show_model` draws the model surface of binned landscapes
    instead of the binned means, and says so in the panel title.
    """
    rows = panel_rows(list(landscapes))
    metric = next(iter(landscapes.values())).metric if landscapes else "test_error"
    height = _TOP + _BOTTOM + max(1, len(rows)) * (_TITLE + _PANEL + _AXIS)
    area = height - _TOP - _BOTTOM
    # At most a quarter of a panel's cells are marked best: 10 of Figure 2's 121, 3 of a 3 x 4 quick panel.
    largest = max((l.shape[0] * l.shape[1] for l in landscapes.values()), default=0)
    top_k = max(1, min(top_k, largest // 4))
    data: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    shapes: list[dict[str, Any]] = []
    axes: dict[str, Any] = {}
    shown: set[str] = set()
    diffs: list[np.ndarray] = []

    for r, pair in enumerate(rows):
        top = 1.0 - (r * (_TITLE + _PANEL + _AXIS) + _TITLE) / area
        domain_y = (max(0.0, top - _PANEL / area), top)
        for c, variant in enumerate(pair):
            if variant is None:
                continue
            landscape = landscapes[variant]
            k = len(axes) // 2 + 1
            ax = _axes(k, _COLUMNS[c], domain_y, landscape.lr, landscape.weight_decay, c == 0)
            axes.update(ax)
            data.extend(
                _panel_traces(k, landscape, top_k, show_model, shown)
            )
            shapes.extend(_zero_separator(k, landscape.weight_decay, landscape.lr.size))
            annotations.append(
                _panel_title(k, _COLUMNS[c], top, landscape, (coupling or {}).get(variant), show_model)
            )
        left, right = pair
        if right is None:
            continue
        k = len(axes) // 2 + 1
        diff = difference(landscapes[left], landscapes[right])
        axes.update(_axes(k, _COLUMNS[2], domain_y, diff["lr"], diff["weight_decay"], False))
        data.append(_diff_trace(k, left, right, diff, metric))
        diffs.append(diff["diff"])
        shapes.extend(_zero_separator(k, diff["weight_decay"], diff["lr"].size))
        label = f"<b>{VARIANT_LABELS[right]} − {VARIANT_LABELS[left]}</b>"
        sub = f"blue: {VARIANT_LABELS[right]} better · red: {VARIANT_LABELS[left]} better"
        if diff["diff"].size == 0:
            sub = "the two grids share no cell"
        annotations.append(_title_annotation(_COLUMNS[2], top, label, sub))

    layout: dict[str, Any] = {
        "height": height,
        "margin": {"t": _TOP, "b": _BOTTOM, "l": 72, "r": 120},
        "plot_bgcolor": "#e9e9e9",
        "paper_bgcolor": "white",
        "font": {"family": "Helvetica, Arial, sans-serif", "size": 12},
        "hovermode": "closest",
        "hoverlabel": {"align": "left"},
        "showlegend": True,
        "legend": {"orientation": "h", "x": 0.0, "y": 1.0, "yanchor": "bottom", "yref": "paper",
                   "xanchor": "left", "font": {"size": 11}},
        "annotations": annotations,
        "shapes": shapes,
        "coloraxis": _colour_axis(metric, clip),
        "coloraxis2": _diff_axis(metric, clip, diffs),
        **axes,
    }
    if title:
        layout["title"] = {"text": title, "x": 0.0, "xanchor": "left", "y": 0.995, "yanchor": "top",
                           "font": {"size": 16}}
    if width:
        layout["width"] = width
    return {"data": data, "layout": layout}


def _axes(
    k: int,
    domain_x: tuple[float, float],
    domain_y: tuple[float, float],
    lr: np.ndarray,
    wd: np.ndarray,
    y_title: bool,
) -> dict[str, Any]:
    suffix = "" if k == 1 else str(k)
    x_labels, x_scale = axis_ticks(wd.tolist())
    y_labels, y_scale = axis_ticks(lr.tolist())
    x_vals, x_text = _thin(x_labels)
    y_vals, y_text = _thin(y_labels)
    return {
        f"xaxis{suffix}": {
            "domain": list(domain_x),
            "anchor": f"y{suffix}",
            "range": [-0.5, max(len(wd), 1) - 0.5],
            "tickmode": "array",
            "tickvals": x_vals,
            "ticktext": x_text,
            "title": {"text": "weight decay" + ("" if x_scale == "1" else f" (× {x_scale})"),
                      "standoff": 4, "font": {"size": 11}},
            "showgrid": False,
            "zeroline": False,
            "ticks": "",
            "fixedrange": True,
        },
        f"yaxis{suffix}": {
            "domain": list(domain_y),
            "anchor": f"x{suffix}",
            "range": [-0.5, max(len(lr), 1) - 0.5],
            "tickmode": "array",
            "tickvals": y_vals,
            "ticktext": y_text,
            "title": {"text": ("learning rate" + ("" if y_scale == "1" else f" (× {y_scale})"))
                      if y_title else "", "standoff": 2, "font": {"size": 11}},
            "showgrid": False,
            "zeroline": False,
            "ticks": "",
            "fixedrange": True,
        },
    }


def _thin(labels: list[str], most: int = 12) -> tuple[list[int], list[str]]:
    """Every label when they fit, else every second/third one (the 0 column is always labelled)."""
    step = max(1, -(-len(labels) // most))
    keep = [i for i in range(len(labels)) if i % step == 0 or labels[i] == "0"]
    return keep, [labels[i] for i in keep]


def _panel_traces(
    k: int, landscape: Landscape, top_k: int, show_model: bool, shown: set[str]
) -> list[dict[str, Any]]:
    suffix = "" if k == 1 else str(k)
    n_rows, n_cols = landscape.shape
    use_model = show_model and landscape.model is not None
    z = landscape.model.mean if use_model else landscape.mean  # type: ignore[union-attr]
    heatmap: dict[str, Any] = {
        "type": "heatmap",
        "name": VARIANT_LABELS.get(landscape.variant, landscape.variant),
        "x": list(range(n_cols)),
        "y": list(range(n_rows)),
        "z": _nan_to_none(z),
        "coloraxis": "coloraxis",
        "xaxis": f"x{suffix}",
        "yaxis": f"y{suffix}",
        "xgap": 1,
        "ygap": 1,
        "hoverinfo": "text",
        "hovertext": _hover_texts(landscape, use_model),
        "hoverongaps": True,
        "showlegend": False,
        "meta": {"variant": landscape.variant, "role": "panel", "cells": n_rows * n_cols},
    }
    if landscape.kind == "binned" and n_rows * n_cols <= 400:
        # Binned cells show how many trials fell into them.
        heatmap["text"] = landscape.count.tolist()
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
            label = f"{top_k} best cells"
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": label,
                "legendgroup": name,
                "showlegend": name not in shown,
                "x": [int(c) for _, c in cells],
                "y": [int(r) for r, _ in cells],
                "xaxis": f"x{suffix}",
                "yaxis": f"y{suffix}",
                "hoverinfo": "skip",
                "marker": {
                    "symbol": symbol,
                    "size": round(size * factor, 1),
                    "color": colour,
                    "line": {"width": 2, "color": colour},
                },
                "meta": {"variant": landscape.variant, "role": name},
            }
        )
        shown.add(name)
    return traces


def _hover_texts(landscape: Landscape, use_model: bool) -> list[list[str]]:
    metric = landscape.metric
    lr_labels, lr_scale = axis_ticks(landscape.lr.tolist())
    wd_labels, wd_scale = axis_ticks(landscape.weight_decay.tolist())
    name = VARIANT_LABELS.get(landscape.variant, landscape.variant)
    counts = landscape.state_counts
    out = []
    for i in range(landscape.shape[0]):
        row = []
        lr_text = _coordinate(landscape.lr[i], lr_labels[i], lr_scale)
        for j in range(landscape.shape[1]):
            lines = [
                f"<b>{name}</b>  lr {lr_text} · wd "
                + _coordinate(landscape.weight_decay[j], wd_labels[j], wd_scale),
            ]
            n = int(landscape.n[i, j])
            value = format_value(metric, landscape.mean[i, j])
            if n > 1:
                spread = format_value(metric, landscape.std[i, j]).replace(" %", "")
                lines.append(f"{metric_label(metric).replace(' (%)', '')}: {value.replace(' %', '')} ± {spread}"
                             + (" %" if is_error_metric(metric) else "") + f"  (n={n})")
            else:
                lines.append(f"{metric_label(metric).replace(' (%)', '')}: {value}  (n={n})")
            if use_model and landscape.model is not None:
                lines.append(f"MODEL estimate: {format_value(metric, landscape.model.mean[i, j])} (not measured)")
            state = str(landscape.state[i, j])
            if state == "stopped":
                state = f"stopped early at budget {int(landscape.budget[i, j])} epochs"
            parts = [f"{int(counts[k][i, j])} {k}" for k in counts if counts[k][i, j]]
            lines.append(f"state: {state}" + (f" ({', '.join(parts)})" if parts else ""))
            if landscape.diverged[i, j]:
                lines.append("diverged: kept out of the colour scale")
            trials = landscape.trials[i][j]
            if trials:
                shown = ", ".join(f"#{t}" for t in trials[:12])
                more = f" … ({len(trials)} trials)" if len(trials) > 12 else ""
                lines.append(f"trials: {shown}{more}")
            row.append("<br>".join(lines))
        out.append(row)
    return out


def _coordinate(value: float, label: str, scale: str) -> str:
    if value == 0:
        return "0"
    pretty = label if scale == "1" else f"{label}×{scale}"
    return f"{pretty} ({value:.3g})"


def _diff_trace(k: int, left: str, right: str, diff: dict[str, Any], metric: str) -> dict[str, Any]:
    suffix = "" if k == 1 else str(k)
    n_rows, n_cols = diff["diff"].shape
    lr_labels, lr_scale = axis_ticks(diff["lr"].tolist())
    wd_labels, wd_scale = axis_ticks(diff["weight_decay"].tolist())
    texts = []
    for i in range(n_rows):
        row = []
        for j in range(n_cols):
            value = diff["diff"][i, j]
            delta = format_value(metric, value, signed=True)
            if is_error_metric(metric) and np.isfinite(value):
                delta = delta.replace(" %", " pp")
            row.append(
                f"<b>{VARIANT_LABELS[right]} − {VARIANT_LABELS[left]}</b>: {delta}<br>"
                f"lr {_coordinate(diff['lr'][i], lr_labels[i], lr_scale)} · wd "
                f"{_coordinate(diff['weight_decay'][j], wd_labels[j], wd_scale)}<br>"
                f"{VARIANT_LABELS[left]} {format_value(metric, diff['left'][i, j])} · "
                f"{VARIANT_LABELS[right]} {format_value(metric, diff['right'][i, j])}"
            )
        texts.append(row)
    return {
        "type": "heatmap",
        "name": f"{right} − {left}",
        "x": list(range(n_cols)),
        "y": list(range(n_rows)),
        "z": _nan_to_none(diff["diff"]),
        "coloraxis": "coloraxis2",
        "xaxis": f"x{suffix}",
        "yaxis": f"y{suffix}",
        "xgap": 1,
        "ygap": 1,
        "hoverinfo": "text",
        "hovertext": texts,
        "hoverongaps": True,
        "showlegend": False,
        "meta": {
            "variant": right,
            "role": "diff",
            "pair": [left, right],
            "cells": n_rows * n_cols,
            # The page maps a clicked difference cell back to both panels by these values.
            "lr": diff["lr"].tolist(),
            "weight_decay": diff["weight_decay"].tolist(),
        },
    }


def _zero_separator(k: int, wd: np.ndarray, n_rows: int) -> list[dict[str, Any]]:
    if wd.size < 2 or wd[0] != 0:
        return []
    suffix = "" if k == 1 else str(k)
    return [
        {
            "type": "line",
            "xref": f"x{suffix}",
            "yref": f"y{suffix}",
            "x0": 0.5,
            "x1": 0.5,
            "y0": -0.5,
            "y1": n_rows - 0.5,
            "line": {"color": "white", "width": 4},
            "layer": "above",
        }
    ]


def _panel_title(
    k: int,
    domain_x: tuple[float, float],
    top: float,
    landscape: Landscape,
    metrics: CouplingMetrics | None,
    show_model: bool,
) -> dict[str, Any]:
    name = VARIANT_LABELS.get(landscape.variant, landscape.variant)
    best = np.nanmin(landscape.mean) if np.isfinite(landscape.mean).any() else None
    label = f"<b>{name}</b> · best {format_value(landscape.metric, best)}"
    if landscape.epoch is not None:
        label += f" · epoch {landscape.epoch}"
    if show_model and landscape.model is not None:
        label += " · <b>MODEL surface, not measured</b>"
    if metrics is None:
        sub = ""
    else:
        slope = "—" if metrics.ridge_slope is None else f"{metrics.ridge_slope:+.2f}"
        sep = "—" if metrics.separability is None else f"{metrics.separability:.2f}"
        sub = f"ridge slope {slope} · separability {sep} · basin {metrics.basin_cells} cells"
    return _title_annotation(domain_x, top, label, sub)


def _title_annotation(domain_x: tuple[float, float], top: float, label: str, sub: str) -> dict[str, Any]:
    text = label if not sub else f"{label}<br><span style='font-size:11px;color:#444'>{sub}</span>"
    return {
        "text": text,
        "xref": "paper",
        "yref": "paper",
        "x": (domain_x[0] + domain_x[1]) / 2,
        "y": top,
        "xanchor": "center",
        "yanchor": "bottom",
        "yshift": 4,
        "showarrow": False,
        "font": {"size": 13},
        "align": "center",
    }


def _colour_axis(metric: str, clip: tuple[float, float] | None) -> dict[str, Any]:
    axis: dict[str, Any] = {
        "colorscale": _COLOURS,
        "reversescale": True,
        "colorbar": {
            "title": {"text": metric_label(metric), "side": "right"},
            "x": 1.015,
            "xanchor": "left",
            "y": 1.0,
            "yanchor": "top",
            "len": 0.48,
            "thickness": 14,
            "tickformat": ".1%" if is_error_metric(metric) else ".3g",
        },
    }
    if clip is not None:
        axis["cmin"], axis["cmax"] = float(clip[0]), float(clip[1])
    return axis


def _diff_axis(metric: str, clip: tuple[float, float] | None, diffs: list[np.ndarray]) -> dict[str, Any]:
    finite = np.concatenate([d[np.isfinite(d)] for d in diffs]) if diffs else np.zeros(0)
    span = float(np.max(np.abs(finite))) if finite.size else 1.0
    if clip is not None:
        span = min(span, float(clip[1] - clip[0])) or float(clip[1] - clip[0])
    span = span or 1.0
    return {
        "colorscale": _DIFF_COLOURS,
        "cmin": -span,
        "cmax": span,
        "colorbar": {
            "title": {"text": "difference", "side": "right"},
            "x": 1.015,
            "xanchor": "left",
            "y": 0.0,
            "yanchor": "bottom",
            "len": 0.42,
            "thickness": 14,
            "tickformat": "+.1%" if is_error_metric(metric) else "+.3g",
        },
    }


def _nan_to_none(array: np.ndarray) -> list[list[float | None]]:
    return [[None if v != v else v for v in row] for row in array.tolist()]

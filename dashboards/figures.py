"""The Figure 2 view as a plotly figure (a plain dict: fast to build, JSON-ready, no validation pass).

One block of rows per facet value, one row per pair of variants (`rows.figure_rows`: SGD | SGDW, Adam | AdamW,
...), each with the two panels and the difference map (right minus left). The first swept axis runs up, the
second right, each labelled in its own scale (powers of two, powers of ten or plain numbers), with a 0 column of
a log axis set off by a white separator. The panels share one clipped colour scale; diverged cells get no colour
and a red cross, the best cells of each panel a black circle. Every cell's hover gives mean ± std, n, state and
trials.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from hpscape.landscapes import CouplingMetrics, Landscape, LandscapeAxis
from hpscape.landscapes.variants import variant_label

from .format import axis_ticks, axis_title, coupling_text, format_value, is_error_metric, metric_label
from .rows import difference, figure_rows
from .traces import diff_trace, panel_name, panel_traces

__all__ = ["sweep_figure"]

# Layout in pixels; turned into paper fractions once the figure height is known.
_TOP, _BOTTOM, _TITLE, _PANEL, _AXIS = 96, 16, 56, 270, 62
# Column domains (paper x): left panel, right panel, difference map; gaps hold y tick labels.
_COLUMNS = ((0.0, 0.29), (0.355, 0.645), (0.71, 1.0))
_COLOURS = "Viridis"  # reversed: good (low) cells light, so the black circles stand out
_DIFF_COLOURS = "RdBu"  # plotly's RdBu runs blue (low) to red: blue where the right-hand variant is lower


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

    `landscapes` and `coupling` are keyed by study key ('sgdw', 'sgdw/schedule=step'). `clip` (lo, hi) is the
    shared colour range (values outside take the end colours, as in the paper); None lets plotly fit it.
    `show_model` draws the model surface of binned landscapes instead of the binned means, and says so in the
    panel title.
    """
    # The data: rows, difference maps, how many cells to mark, the height.
    rows = figure_rows(landscapes)
    diffs = {row.pair: difference(landscapes[row.pair[0]], landscapes[row.pair[1]]) for row in rows if row.pair}
    metric = next(iter(landscapes.values())).metric if landscapes else "test_error"
    # At most a quarter of a panel's cells are marked best: 10 of Figure 2's 121, 3 of a 3 x 4 quick panel.
    largest = max((land.shape[0] * land.shape[1] for land in landscapes.values()), default=0)
    top_k = max(1, min(top_k, largest // 4))
    height = _TOP + _BOTTOM + max(1, len(rows)) * (_TITLE + _PANEL + _AXIS)
    area = height - _TOP - _BOTTOM

    # The drawing.
    data: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    shapes: list[dict[str, Any]] = []
    axes: dict[str, Any] = {}
    shown: set[str] = set()
    for r, row in enumerate(rows):
        top = 1.0 - (r * (_TITLE + _PANEL + _AXIS) + _TITLE) / area
        domain_y = (max(0.0, top - _PANEL / area), top)
        y_title = True  # on the row's first subplot
        for c, key in enumerate((row.left, row.right)):
            if key is None:
                repeated = row.placeholder(c)
                if repeated is not None:
                    other = landscapes[row.pair[1 - c]]  # type: ignore[index]
                    annotations.append(_placeholder(_COLUMNS[c], domain_y, landscapes[repeated], other))
                continue
            landscape = landscapes[key]
            k = len(axes) // 2 + 1
            axes.update(_axes(k, _COLUMNS[c], domain_y, landscape.y, landscape.x, y_title))
            y_title = False
            data.extend(panel_traces(k, landscape, top_k, show_model, shown))
            shapes.extend(_zero_separators(k, landscape.y, landscape.x))
            annotations.append(
                _panel_title(_COLUMNS[c], top, landscape, (coupling or {}).get(key), show_model)
            )
        if row.pair is None:
            continue
        left, right = (landscapes[key] for key in row.pair)
        diff = diffs[row.pair]
        k = len(axes) // 2 + 1
        axes.update(_axes(k, _COLUMNS[2], domain_y, diff["y"], diff["x"], False))
        data.append(diff_trace(k, left, right, diff))
        shapes.extend(_zero_separators(k, diff["y"], diff["x"]))
        annotations.append(_diff_title(_COLUMNS[2], top, left, right, diff["diff"].size == 0))

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
        "coloraxis2": _diff_axis(metric, clip, [d["diff"] for d in diffs.values()]),
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
    y: LandscapeAxis,
    x: LandscapeAxis,
    y_title: bool,
) -> dict[str, Any]:
    suffix = "" if k == 1 else str(k)
    x_labels, x_scale = axis_ticks(x.values.tolist(), x.scale)
    y_labels, y_scale = axis_ticks(y.values.tolist(), y.scale)
    x_vals, x_text = _thin(x_labels)
    y_vals, y_text = _thin(y_labels)
    common = {"tickmode": "array", "showgrid": False, "zeroline": False, "ticks": "", "fixedrange": True}
    return {
        f"xaxis{suffix}": {
            **common,
            "domain": list(domain_x),
            "anchor": f"y{suffix}",
            "range": [-0.5, max(x.size, 1) - 0.5],
            "tickvals": x_vals,
            "ticktext": x_text,
            "title": {"text": axis_title(x, x_scale), "standoff": 4, "font": {"size": 11}},
        },
        f"yaxis{suffix}": {
            **common,
            "domain": list(domain_y),
            "anchor": f"x{suffix}",
            "range": [-0.5, max(y.size, 1) - 0.5],
            "tickvals": y_vals,
            "ticktext": y_text,
            "title": {"text": axis_title(y, y_scale) if y_title else "", "standoff": 2, "font": {"size": 11}},
        },
    }


def _thin(labels: list[str], most: int = 12) -> tuple[list[int], list[str]]:
    """Every label when they fit, else every second/third one (the 0 column is always labelled)."""
    step = max(1, -(-len(labels) // most))
    keep = [i for i in range(len(labels)) if i % step == 0 or labels[i] == "0"]
    return keep, [labels[i] for i in keep]


def _zero_separators(k: int, y: LandscapeAxis, x: LandscapeAxis) -> list[dict[str, Any]]:
    """A white line between a log axis's 0 (drawn first) and its powers; linear axes hold 0 like any value."""
    suffix = "" if k == 1 else str(k)
    line = {"type": "line", "xref": f"x{suffix}", "yref": f"y{suffix}", "line": {"color": "white", "width": 4},
            "layer": "above"}
    out = []
    if x.log and x.size >= 2 and x.values[0] == 0:
        out.append({**line, "x0": 0.5, "x1": 0.5, "y0": -0.5, "y1": y.size - 0.5})
    if y.log and y.size >= 2 and y.values[0] == 0:
        out.append({**line, "x0": -0.5, "x1": x.size - 0.5, "y0": 0.5, "y1": 0.5})
    return out


def _facet_suffix(landscape: Landscape) -> str:
    return "" if landscape.facet is None else f" · {landscape.facet.label}"


def _panel_title(
    domain_x: tuple[float, float],
    top: float,
    landscape: Landscape,
    metrics: CouplingMetrics | None,
    show_model: bool,
) -> dict[str, Any]:
    best = np.nanmin(landscape.mean) if np.isfinite(landscape.mean).any() else None
    label = f"<b>{variant_label(landscape.variant)}</b>{_facet_suffix(landscape)}"
    label += f" · best {format_value(landscape.metric, best)}"
    if landscape.epoch is not None:
        label += f" · epoch {landscape.epoch}"
    if show_model and landscape.model is not None:
        label += " · <b>MODEL surface, not measured</b>"
    if metrics is None:
        sub = ""
    else:
        sub = coupling_text(metrics)
    return _title_annotation(domain_x, top, label, sub)


def _diff_title(
    domain_x: tuple[float, float], top: float, left: Landscape, right: Landscape, empty: bool
) -> dict[str, Any]:
    a, b = variant_label(left.variant), variant_label(right.variant)
    label = f"<b>{b} − {a}</b>{_facet_suffix(right)}"
    sub = "the two grids share no cell" if empty else f"blue: {b} better · red: {a} better"
    return _title_annotation(domain_x, top, label, sub)


def _placeholder(
    domain_x: tuple[float, float], domain_y: tuple[float, float], repeated: Landscape, other: Landscape
) -> dict[str, Any]:
    """The note in a column whose panel would repeat one drawn above (adamw beside adamw-torch)."""
    return {
        "name": f"placeholder:{repeated.key}",
        "text": f"<b>{panel_name(repeated)}</b>: its panel is in a row above;<br>the difference map compares "
                f"{variant_label(other.variant)}<br>against it",
        "xref": "paper",
        "yref": "paper",
        "x": (domain_x[0] + domain_x[1]) / 2,
        "y": (domain_y[0] + domain_y[1]) / 2,
        "xanchor": "center",
        "yanchor": "middle",
        "showarrow": False,
        "align": "center",
        "font": {"size": 12, "color": "#555"},
        "bordercolor": "#bbb",
        "borderpad": 10,
        "bgcolor": "#f7f7f7",
    }


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

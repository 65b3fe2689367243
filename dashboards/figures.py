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

from hpscape.landscapes import CouplingMetrics, Landscape
from hpscape.landscapes.variants import variant_label

from .format import coupling_text, format_value, is_error_metric, metric_label
from .layout import colour_axis, panel_axes, panels_figure, title_annotation, zero_separators
from .rows import difference, figure_rows
from .traces import diff_trace, panel_name, panel_traces

__all__ = ["sweep_figure"]

# Layout in pixels; turned into paper fractions once the figure height is known. The top margin holds the legend
# (and the figure's title, when it has one), nothing more.
_TOP, _TITLE_PX, _BOTTOM, _TITLE, _PANEL, _AXIS = 40, 30, 16, 56, 270, 62
# Column domains (paper x): left panel, right panel, difference map; gaps hold y tick labels.
_COLUMNS = ((0.0, 0.29), (0.355, 0.645), (0.71, 1.0))
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
    top_px = _TOP + (_TITLE_PX if title else 0)
    height = top_px + _BOTTOM + max(1, len(rows)) * (_TITLE + _PANEL + _AXIS)
    area = height - top_px - _BOTTOM
    # The colour bars sit beside the rightmost column in use, not far away when a sweep has one panel per row.
    used = max((2 if row.pair else (1 if row.right else 0) for row in rows), default=0)
    bar_x = _COLUMNS[used][1] + 0.015

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
            axes.update(panel_axes(k, _COLUMNS[c], domain_y, landscape.y, landscape.x, y_title))
            y_title = False
            data.extend(panel_traces(k, landscape, top_k, show_model, shown))
            shapes.extend(zero_separators(k, landscape.y, landscape.x))
            annotations.append(
                _panel_title(_COLUMNS[c], top, landscape, (coupling or {}).get(key), show_model)
            )
        if row.pair is None:
            continue
        left, right = (landscapes[key] for key in row.pair)
        diff = diffs[row.pair]
        k = len(axes) // 2 + 1
        axes.update(panel_axes(k, _COLUMNS[2], domain_y, diff["y"], diff["x"], False))
        data.append(diff_trace(k, left, right, diff))
        shapes.extend(zero_separators(k, diff["y"], diff["x"]))
        annotations.append(_diff_title(_COLUMNS[2], top, left, right, diff["diff"].size == 0))

    colour_axes = {"coloraxis": colour_axis(metric, clip, bar_x),
                   "coloraxis2": _diff_axis(metric, clip, [d["diff"] for d in diffs.values()], bar_x)}
    return panels_figure(data, height=height, top_px=top_px, bottom_px=_BOTTOM, right_px=120,
                         annotations=annotations, shapes=shapes, axes=axes, colour_axes=colour_axes, title=title,
                         width=width)


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
    return title_annotation(domain_x, top, label, sub)


def _diff_title(
    domain_x: tuple[float, float], top: float, left: Landscape, right: Landscape, empty: bool
) -> dict[str, Any]:
    a, b = variant_label(left.variant), variant_label(right.variant)
    label = f"<b>{b} − {a}</b>{_facet_suffix(right)}"
    sub = "the two grids share no cell" if empty else f"blue: {b} better · red: {a} better"
    return title_annotation(domain_x, top, label, sub)


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


def _diff_axis(metric: str, clip: tuple[float, float] | None, diffs: list[np.ndarray], bar_x: float) -> dict[str, Any]:
    finite = np.concatenate([d[np.isfinite(d)] for d in diffs]) if diffs else np.zeros(0)
    span = float(np.max(np.abs(finite))) if finite.size else 1.0
    if clip is not None:
        span = min(span, float(clip[1] - clip[0])) or float(clip[1] - clip[0])
    span = span or 1.0
    error = is_error_metric(metric)
    span *= 100.0 if error else 1.0  # errors' differences are drawn in percentage points
    return {
        "colorscale": _DIFF_COLOURS,
        "cmin": -span,
        "cmax": span,
        "colorbar": {
            "title": {"text": "difference (pp)" if error else f"difference ({metric_label(metric)})",
                      "side": "right"},
            "x": bar_x,
            "xanchor": "left",
            "y": 0.0,
            "yanchor": "bottom",
            "len": 0.42,
            "thickness": 14,
            "tickformat": "+.1f" if error else "+.3g",
        },
    }

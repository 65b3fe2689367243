"""The mechanism view's figure: every finished cell's final metric against its equilibrium angle, a panel per pair.

An L2 variant and its decoupled partner share a panel (log x: the angle per step of the scale-invariant weights,
from the trials' telemetry). Points are cells, the mean over their seeds with the standard error as a bar; the
black line is one quadratic in log(angle) through both variants' cells, the dashed ones each variant's own. If the
effective step is what the metric depends on, the points of both colours lie on the black line and the collapse
score (`hpscape.landscapes.mechanism`) is near 1. What it draws is computed there; nothing is fitted here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from hpscape.landscapes.mechanism import Collapse
from hpscape.landscapes.variants import get_variant, variant_label

from .format import format_value, is_error_metric, metric_label

__all__ = ["ANGLE_TITLES", "collapse_text", "mechanism_figure"]

# L2 in blue and the decoupled partner in red, as in the other views' pairs; torch's AdamW (when paired with the
# paper's) in green, so that two decoupled variants in one panel still differ.
_COLOURS = {"l2": "#1f77b4", "decoupled": "#d62728", "torch": "#2ca02c"}
_COLUMNS, _PANEL_PX, _TOP, _BOTTOM = 2, 400, 90, 70
ANGLE_TITLES = {
    "theory": "predicted equilibrium angle per step (rad, last epoch)",
    "measured": "measured angle per step (rad, last epoch)",
}


def collapse_text(c: Collapse) -> str:
    """'0.98 [0.95, 1.00]', '0.98 (no interval)', or why there is none: '— (too few cells)', '— (no telemetry)'."""
    if c.score is None:
        if not c.telemetry and c.cells:
            return "— (no telemetry)"
        return "— (too few cells)" if any(n.startswith("too few cells") for n in c.notes) else "—"
    if c.score_ci is None:
        return f"{c.score:.2f} (no interval)"
    return f"{c.score:.2f} [{c.score_ci[0]:.2f}, {c.score_ci[1]:.2f}]"


def _scale(metric: str, value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return 100.0 * value if is_error_metric(metric) else value


def _colour(variant: str, taken: set[str]) -> str:
    colour = _COLOURS[get_variant(variant).decay]
    if colour in taken:  # two variants of one decay form in a pair (adamw | adamw-torch is torch vs decoupled)
        colour = "#9467bd"
    taken.add(colour)
    return colour


def mechanism_figure(pairs: Sequence[Collapse], *, title: str | None = None,
                     width: int | None = None) -> dict[str, Any]:
    """A panel per pair (two per row): cells as points with standard-error bars, the joint and separate fits."""
    rows = max(1, math.ceil(len(pairs) / _COLUMNS))
    columns = min(_COLUMNS, max(1, len(pairs)))
    height = _TOP + _BOTTOM + rows * _PANEL_PX
    v_gap, h_gap = 130 / height, 0.08
    span_y = (1.0 - v_gap * (rows - 1)) / rows
    span_x = (1.0 - h_gap * (columns - 1)) / columns
    data: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    layout: dict[str, Any] = {}
    shown: set[str] = set()
    for p, pair in enumerate(pairs):
        suffix = "" if p == 0 else str(p + 1)
        row, col = divmod(p, _COLUMNS)
        x0, top = col * (span_x + h_gap), 1.0 - row * (span_y + v_gap)
        error = is_error_metric(pair.metric)
        layout[f"xaxis{suffix}"] = {"domain": [x0, x0 + span_x], "anchor": f"y{suffix}", "type": "log",
                                    "title": {"text": ANGLE_TITLES[pair.angle]}, "zeroline": False,
                                    "showgrid": True, "gridcolor": "#eee", "exponentformat": "power",
                                    "dtick": "D2"}  # 1, 2, 5 per decade: the default labels every digit
        layout[f"yaxis{suffix}"] = {"domain": [top - span_y, top], "anchor": f"x{suffix}", "zeroline": False,
                                    "title": {"text": f"final {metric_label(pair.metric)}"}, "showgrid": True,
                                    "gridcolor": "#eee"}
        axes = {"xaxis": f"x{suffix}", "yaxis": f"y{suffix}"}
        if not any(c.angle(pair.angle) is not None for c in pair.cells):
            # Nothing to draw: no made-up axis range (plotly's default log range spans 10^-1 to 10^6).
            for axis in ("xaxis", "yaxis"):
                layout[f"{axis}{suffix}"].update(showticklabels=False, showgrid=False)
        annotations.append({"text": f"<b>{pair.label}</b> · collapse score {collapse_text(pair)}", "xref": "paper",
                            "yref": "paper", "x": x0, "y": top + 0.01, "xanchor": "left", "yanchor": "bottom",
                            "showarrow": False, "font": {"size": 13}})
        taken: set[str] = set()
        colours = {v: _colour(v, taken) for v in pair.variants}
        for variant in pair.variants:
            cells = [c for c in pair.cells if c.variant == variant and c.angle(pair.angle) is not None]
            data.append({
                "type": "scatter", "mode": "markers", "name": f"{variant_label(variant)} cells", **axes,
                # One legend entry per variant and role for all panels (same colours), which toggles them all.
                "legendgroup": f"{variant}|cells", "showlegend": _first(shown, f"{variant}|cells", cells),
                "x": [c.angle(pair.angle) for c in cells], "y": [_scale(pair.metric, c.value) for c in cells],
                "error_y": {"type": "data", "array": [_scale(pair.metric, c.value_se) for c in cells],
                            "visible": True, "color": colours[variant], "thickness": 1, "width": 3},
                "marker": {"color": colours[variant], "size": 8, "opacity": 0.85,
                           "line": {"color": "white", "width": 0.5}},
                "text": [_hover(pair, c) for c in cells], "hovertemplate": "%{text}<extra></extra>",
                "meta": {"key": pair.key, "role": "cells", "variant": variant},
            })
        for name, (angles, values) in pair.curves.items():
            joint = name == "joint"
            data.append({
                "type": "scatter", "mode": "lines", **axes, "x": angles,
                "y": [_scale(pair.metric, v) for v in values], "legendgroup": f"{name}|fit",
                "name": "one fit through both" if joint else f"{variant_label(name)} alone",
                "showlegend": _first(shown, f"{name}|fit", angles),
                "line": {"color": "#111" if joint else colours[name], "width": 2.5 if joint else 1.5,
                         "dash": "solid" if joint else "dash"},
                "hovertemplate": ("one quadratic through both" if joint else f"{variant_label(name)}'s own quadratic")
                                 + f"<br>angle %{{x:.3g}}: %{{y:.4g}}{' %' if error else ''}<extra></extra>",
                "meta": {"key": pair.key, "role": "joint" if joint else "separate", "variant": None if joint else name},
            })
        if pair.score is None and pair.notes:
            # No score: say why where the points would be (no telemetry, too few cells), not only in the table.
            annotations.append({"text": "<br>".join(_wrap(pair.notes[-1])), "xref": f"x{suffix} domain",
                                "yref": f"y{suffix} domain", "x": 0.5, "y": 0.5, "showarrow": False,
                                "font": {"size": 12, "color": "#a33"}, "align": "center",
                                "bgcolor": "rgba(255,255,255,0.85)"})
    layout.update({
        "height": height,
        "margin": {"t": _TOP, "b": _BOTTOM, "l": 80, "r": 20},
        "font": {"family": "Helvetica, Arial, sans-serif", "size": 12},
        "legend": {"orientation": "h", "x": 0.0, "y": -0.06 - 40 / height, "yanchor": "top", "font": {"size": 11}},
        "plot_bgcolor": "white",
        "annotations": annotations,
        "hovermode": "closest",
    })
    if not pairs:
        layout["annotations"] = [{"text": "this sweep has no L2 variant with its decoupled partner to compare",
                                  "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5, "showarrow": False}]
    if title:
        layout["title"] = {"text": title, "x": 0.0, "xanchor": "left", "font": {"size": 16}, "y": 0.99,
                           "yanchor": "top"}
    if width:
        layout["width"] = width
    return {"data": data, "layout": layout}


def _first(shown: set[str], group: str, drawn: Sequence[Any]) -> bool:
    """True the first time `group` has something to draw (its legend entry), False after."""
    if not drawn or group in shown:
        return False
    shown.add(group)
    return True


def _hover(pair: Collapse, cell: Any) -> str:
    params = " · ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in cell.params.items())
    se = cell.value_se
    value = format_value(pair.metric, cell.value) + ("" if se is None else f" ± {format_value(pair.metric, se)}")
    angles = f"predicted {_angle(cell.angle('theory'))} · measured {_angle(cell.angle('measured'))}"
    return (f"{variant_label(cell.variant)} · {params}<br>{pair.metric.replace('_', ' ')} {value} "
            f"(n={len(cell.seeds)})<br>angle per step: {angles}<br>trials "
            + ", ".join(f"#{n}" for n in cell.trials))


def _angle(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g} rad"


def _wrap(text: str, width: int = 70) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + ([line] if line else [])

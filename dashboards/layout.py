"""Layout pieces every figure shares: a subplot's axes in a grid's scale, titles above panels, the colour bar."""

from __future__ import annotations

from typing import Any

from hpscape.landscapes import LandscapeAxis

from .format import axis_ticks, axis_title, is_error_metric, metric_label

__all__ = ["COLOURS", "colour_axis", "panel_axes", "title_annotation", "zero_separators"]

COLOURS = "Viridis"  # reversed: good (low) cells light, so the black circles stand out


def panel_axes(
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


def zero_separators(k: int, y: LandscapeAxis, x: LandscapeAxis) -> list[dict[str, Any]]:
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


def title_annotation(domain_x: tuple[float, float], top: float, label: str, sub: str) -> dict[str, Any]:
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


def colour_axis(metric: str, clip: tuple[float, float] | None, bar_x: float) -> dict[str, Any]:
    axis: dict[str, Any] = {
        "colorscale": COLOURS,
        "reversescale": True,
        "colorbar": {
            "title": {"text": metric_label(metric), "side": "right"},
            "x": bar_x,
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


def panels_figure(data: list[dict[str, Any]], *, height: int, top_px: int, bottom_px: int, right_px: int,
                  annotations: list[dict[str, Any]], shapes: list[dict[str, Any]], axes: dict[str, Any],
                  colour_axes: dict[str, Any], title: str | None, width: int | None) -> dict[str, Any]:
    """A figure of heatmap panels (the sweep figure, the facet view): one look for both."""
    layout: dict[str, Any] = {
        "height": height,
        "margin": {"t": top_px, "b": bottom_px, "l": 72, "r": right_px},
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
        **colour_axes,
        **axes,
    }
    if title:
        layout["title"] = {"text": title, "xref": "paper", "x": 0.0, "xanchor": "left", "yref": "container",
                           "y": 1.0 - 6 / height, "yanchor": "top", "font": {"size": 16}}
    if width:
        layout["width"] = width
    return {"data": data, "layout": layout}

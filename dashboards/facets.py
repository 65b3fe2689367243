"""The facet view (Figure 1's layout): one row per variant, one column per facet value, one shared colour scale.

Where the Figure 2 view stacks a block of pairs per facet value, this one puts the facet values side by side, so a
schedule's (or a budget's) effect on each variant reads along a row and the variants compare down a column. Each
panel carries its coupling metrics; the best cell of each panel is circled, and the best panel of each row is
named in the title.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from hpscape.landscapes import CouplingMetrics, Landscape
from hpscape.landscapes.variants import variant_label

from .format import coupling_text, format_value
from .layout import colour_axis, panel_axes, panels_figure, title_annotation, zero_separators
from .traces import panel_traces

__all__ = ["facet_figure", "facet_grid"]

_TOP, _TITLE_PX, _BOTTOM, _TITLE, _PANEL, _AXIS = 40, 30, 16, 60, 250, 62
_GAP = 0.06  # paper x between columns (holds the y tick labels)


def facet_grid(landscapes: Mapping[str, Landscape]) -> tuple[list[str], list[str], dict[tuple[str, str], str]]:
    """(variants, facet labels, (variant, facet label) -> study key), in the landscapes' order."""
    variants: list[str] = []
    facets: list[str] = []
    cells: dict[tuple[str, str], str] = {}
    for key, land in landscapes.items():
        label = "" if land.facet is None else land.facet.label
        variants += [land.variant] if land.variant not in variants else []
        facets += [label] if label not in facets else []
        cells[(land.variant, label)] = key
    return variants, facets, cells


def facet_figure(
    landscapes: Mapping[str, Landscape],
    *,
    clip: tuple[float, float] | None = None,
    coupling: Mapping[str, CouplingMetrics] | None = None,
    title: str | None = None,
    width: int | None = None,
) -> dict[str, Any]:
    """The facet view as a plotly figure dict; `landscapes` and `coupling` keyed by study key."""
    # The data: which panel goes where, each row's best facet value.
    variants, facets, cells = facet_grid(landscapes)
    best_of_row = {v: min(((float(np.nanmin(landscapes[k].mean)), f) for (vv, f), k in cells.items()
                           if vv == v and np.isfinite(landscapes[k].mean).any()), default=(None, None))[1]
                   for v in variants}
    metric = next(iter(landscapes.values())).metric if landscapes else "test_error"
    n_cols = max(1, len(facets))
    span = (1.0 - _GAP * (n_cols - 1)) / n_cols
    columns = [(c * (span + _GAP), c * (span + _GAP) + span) for c in range(n_cols)]
    top_px = _TOP + (_TITLE_PX if title else 0)
    height = top_px + _BOTTOM + max(1, len(variants)) * (_TITLE + _PANEL + _AXIS)
    area = height - top_px - _BOTTOM

    # The drawing.
    data: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    shapes: list[dict[str, Any]] = []
    axes: dict[str, Any] = {}
    shown: set[str] = set()
    for r, variant in enumerate(variants):
        top = 1.0 - (r * (_TITLE + _PANEL + _AXIS) + _TITLE) / area
        domain_y = (max(0.0, top - _PANEL / area), top)
        for c, facet in enumerate(facets):
            key = cells.get((variant, facet))
            if key is None:
                continue
            land = landscapes[key]
            k = len(axes) // 2 + 1
            axes.update(panel_axes(k, columns[c], domain_y, land.y, land.x, c == 0))
            data.extend(panel_traces(k, land, 1, False, shown))
            shapes.extend(zero_separators(k, land.y, land.x))
            best = np.nanmin(land.mean) if np.isfinite(land.mean).any() else None
            where = f" · {facet}" if facet else ""
            label = f"<b>{variant_label(variant)}</b>{where} · best {format_value(metric, best)}"
            if len(facets) > 1 and facet == best_of_row[variant]:
                label += " ★"
            metrics = (coupling or {}).get(key)
            annotations.append(title_annotation(columns[c], top, label, coupling_text(metrics) if metrics else ""))
    colour = colour_axis(metric, clip, 1.0 + 0.015)
    colour["colorbar"]["len"] = 0.9
    return panels_figure(data, height=height, top_px=top_px, bottom_px=_BOTTOM, right_px=110,
                         annotations=annotations, shapes=shapes, axes=axes, colour_axes={"coloraxis": colour},
                         title=title, width=width)

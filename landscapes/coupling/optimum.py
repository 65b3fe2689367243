"""Where along the horizontal axis the best row's optimum lies, between grid points, with its 95 % interval.

The budget study asks this of each budget's landscape: at the best learning rate, which decay is optimal? The
answer is the vertex of the parabola through the row's best cell and its two neighbours (in the axis's scale,
octaves on a log2 axis), and its interval comes from the same bootstrap replicates as the coupling metrics'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..landscape.types import Landscape
from .bootstrap import REPLICATES, interval, replicates, standard_errors
from .ridge import REASONS, USED, row_vertices

__all__ = ["AxisOptimum", "axis_optimum"]


@dataclass(frozen=True)
class AxisOptimum:
    """The best row's optimum on the horizontal axis; None where the data give none (`note` says why)."""

    axis: str
    row_axis: str
    row_value: float | None  # the vertical axis's value of the row used (the row of the best cell)
    value: float | None  # the optimum, in axis units
    ci: tuple[float, float] | None  # 95 %
    ci_method: str | None
    coordinates: np.ndarray | None  # each bootstrap replicate's optimum, in the axis's scale (NaN: none)
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"axis": self.axis, "row_axis": self.row_axis, "row_value": self.row_value, "value": self.value,
                "ci": None if self.ci is None else list(self.ci), "ci_method": self.ci_method, "note": self.note}


def _value(scale: str, coordinate: float) -> float:
    return {"log2": 2.0**coordinate, "log10": 10.0**coordinate}.get(scale, coordinate)


def axis_optimum(landscape: Landscape, *, replicates_count: int = REPLICATES, seed: int = 0) -> AxisOptimum:
    """The optimum of `landscape`'s horizontal axis in the row of its best cell, with a bootstrap interval."""
    y_axis, x_axis = landscape.y, landscape.x
    mean = np.where(landscape.diverged, np.nan, landscape.mean.astype(np.float64))
    if not np.isfinite(mean).any():
        return AxisOptimum(x_axis.name, y_axis.name, None, None, None, None, None, "no cell has a measured value")
    row, _ = landscape.best_cells(1)[0]
    x = x_axis.coordinates()
    se = standard_errors(landscape, mean)
    vertex, _, reason = row_vertices(mean[None, row : row + 1], se[None, row : row + 1], x)
    row_value = float(y_axis.values[row])
    if reason[0, 0] != USED:
        return AxisOptimum(x_axis.name, y_axis.name, row_value, None, None, None, None,
                           f"{REASONS[int(reason[0, 0])]}: widen the {x_axis.name} grid on that side")
    estimate = float(vertex[0, 0])
    notes: list[str] = []
    draws = replicates(landscape, mean, se, x, replicates_count, seed, notes)
    ci = method = coordinates = None
    if draws is not None:
        method, draw_mean, draw_se, inflate = draws
        v_b, _, r_b = row_vertices(draw_mean[:, row : row + 1], draw_se[:, row : row + 1], x)
        coordinates = np.where(r_b[:, 0] == USED, v_b[:, 0], np.nan)
        bounds = interval(coordinates, f"{x_axis.name} optimum", notes, estimate, inflate)
        if bounds is not None and not bounds[0] <= estimate <= bounds[1]:
            # The replicates centre on the model they were drawn from (each row's quadratic, with one seed), not on
            # the three cells the estimate comes from: a row far from a parabola puts the estimate outside them.
            bounds = (min(bounds[0], estimate), max(bounds[1], estimate))
            notes.append(f"{x_axis.name} optimum: the bootstrap replicates lie to one side of the estimate (the "
                         "row is far from a parabola around its best cell); the interval is widened to hold it, and "
                         "is rough (add seeds)")
        if bounds is not None:
            ci = (_value(x_axis.scale, bounds[0]), _value(x_axis.scale, bounds[1]))
    return AxisOptimum(x_axis.name, y_axis.name, row_value, _value(x_axis.scale, estimate), ci,
                       method if ci is not None else None, coordinates, "; ".join(notes) or None)

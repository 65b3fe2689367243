"""How coupled a landscape's two knobs are: ridge slope, separability and basin size.

- `ridge_slope`: least-squares slope of the best horizontal value against the vertical one, each in its axis's
  own scale (log2 for lr and weight decay), one point per row whose best cell is not in a 0 column. On an
  lr x weight-decay landscape: about -1 when the good region lies on the diagonal lr * wd = const (SGD + L2),
  about 0 when it stands upright (SGDW, paper AdamW).
- `separability`: the share of the metric's variance over the non-diverged cells explained by
  an additive model (row effect + column effect). 1 for a separable landscape; a diagonal
  valley is an interaction, which no additive model captures.
- `basin_cells`: how many cells lie within a tolerance of the best value.

Only cells with a measured mean count: empty, running and diverged cells are left out.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .landscape import Landscape

__all__ = ["DEFAULT_BASIN_TOLERANCE", "CouplingMetrics", "coupling_metrics"]

# Cells within 10 % of the best value form the basin (0.38 pp at Figure 2's 3.8 % best error).
DEFAULT_BASIN_TOLERANCE = 0.10


@dataclass(frozen=True)
class CouplingMetrics:
    """Coupling metrics of one landscape; None where a metric is undefined (see `notes`)."""

    ridge_slope: float | None
    ridge_intercept: float | None
    ridge_rows: int  # rows used for the slope
    ridge_points: list[tuple[float, float]]  # (vertical value, best horizontal value) per row used
    separability: float | None
    basin_cells: int
    basin_tolerance: float
    basin_relative: bool
    n_cells: int  # cells with a measured, non-diverged mean
    best: dict[str, Any] | None  # {"params": {vertical axis: value, horizontal axis: value}, "value"}
    notes: tuple[str, ...] = ()
    axes: tuple[str, str] = ("lr", "weight_decay")  # (vertical, horizontal) axis names

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ridge_points"] = [list(p) for p in self.ridge_points]
        out["notes"] = list(self.notes)
        out["axes"] = list(self.axes)
        return out


def coupling_metrics(
    landscape: Landscape,
    *,
    tolerance: float = DEFAULT_BASIN_TOLERANCE,
    relative: bool = True,
    clip: tuple[float, float] | None = None,
) -> CouplingMetrics:
    """Ridge slope, separability and basin size of `landscape`'s cell means.

    `tolerance`: a cell is in the basin when its mean <= best + tolerance * |best| (`relative`)
    or <= best + tolerance (absolute). `clip` (lo, hi) clips the means before the separability
    fit, so that a few very bad cells do not dominate its variance.
    """
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    if clip is not None and not (len(clip) == 2 and clip[0] < clip[1]):
        raise ValueError(f"clip must be (lo, hi) with lo < hi, got {clip!r}")
    mean = np.where(landscape.diverged, np.nan, landscape.mean.astype(np.float64))
    finite = np.isfinite(mean)
    notes: list[str] = []
    axes = (landscape.y.name, landscape.x.name)
    n_cells = int(finite.sum())
    if n_cells == 0:
        notes.append("no cell has a measured value yet")
        return CouplingMetrics(
            None, None, 0, [], None, 0, float(tolerance), relative, 0, None, tuple(notes), axes
        )

    slope, intercept, points = _ridge(landscape, mean, notes)
    separability = _separability(np.clip(mean, *clip) if clip else mean, notes)

    best_value = float(np.nanmin(mean))
    limit = best_value + (tolerance * abs(best_value) if relative else tolerance)
    basin = int(np.sum(mean[finite] <= limit))
    row, col = landscape.best_cells(1)[0]
    best = {
        "params": {axes[0]: float(landscape.y.values[row]), axes[1]: float(landscape.x.values[col])},
        "value": float(landscape.mean[row, col]),
    }
    return CouplingMetrics(
        ridge_slope=slope,
        ridge_intercept=intercept,
        ridge_rows=len(points),
        ridge_points=points,
        separability=separability,
        basin_cells=basin,
        basin_tolerance=float(tolerance),
        basin_relative=relative,
        n_cells=n_cells,
        best=best,
        notes=tuple(notes),
        axes=axes,
    )


def _ridge(
    landscape: Landscape, mean: np.ndarray, notes: list[str]
) -> tuple[float | None, float | None, list[tuple[float, float]]]:
    y_coord, x_coord = landscape.y.coordinates(), landscape.x.coordinates()
    points: list[tuple[float, float]] = []
    xs: list[float] = []
    ys: list[float] = []
    skipped_zero = 0
    for i, row in enumerate(mean):
        if not np.isfinite(row).any():
            continue
        j = int(np.nanargmin(row))
        if not math.isfinite(float(x_coord[j])) or not math.isfinite(float(y_coord[i])):
            skipped_zero += 1
            continue
        points.append((float(landscape.y.values[i]), float(landscape.x.values[j])))
        ys.append(float(y_coord[i]))
        xs.append(float(x_coord[j]))
    if skipped_zero:
        notes.append(f"{skipped_zero} row(s) whose best {landscape.x.name} is 0 were left out of the ridge slope")
    y = np.asarray(ys)
    if np.unique(y).size < 2:
        notes.append(f"ridge slope needs at least two {landscape.y.name} rows with a best cell off the 0 column")
        return None, None, points
    x = np.asarray(xs)
    # Closed-form least squares (np.polyfit would go through a threaded LAPACK call).
    dy = y - y.mean()
    slope = float(np.sum(dy * (x - x.mean())) / np.sum(dy**2))
    return slope, float(x.mean() - slope * y.mean()), points


def _separability(mean: np.ndarray, notes: list[str]) -> float | None:
    rows, cols = np.nonzero(np.isfinite(mean))
    values = mean[rows, cols]
    # Only rows and columns that hold a value get an effect.
    _, r = np.unique(rows, return_inverse=True)
    _, c = np.unique(cols, return_inverse=True)
    n_rows, n_cols = int(r.max()) + 1, int(c.max()) + 1
    n_params = n_rows + n_cols - 1
    if values.size <= n_params:
        notes.append(
            f"separability needs more cells ({values.size}) than additive-model parameters ({n_params})"
        )
        return None
    centred = values - values.mean()
    total = float(np.sum(centred**2))
    if total <= 1e-24 * max(1.0, float(np.max(np.abs(values))) ** 2):
        notes.append("separability is undefined for a flat landscape")
        return None
    fitted = _additive_fit(centred, r, c, n_rows, n_cols)
    residual = float(np.sum((centred - fitted) ** 2))
    return min(1.0, max(0.0, 1.0 - residual / total))


def _additive_fit(
    y: np.ndarray, r: np.ndarray, c: np.ndarray, n_rows: int, n_cols: int, *, max_iter: int = 2000
) -> np.ndarray:
    """Least-squares row + column effects by backfitting (exact in one sweep on a full grid).

    Alternating means instead of a least-squares solver: no BLAS call, whose threads can stall
    on a busy machine, and holes in the grid need only a few more sweeps.
    """
    row_n = np.bincount(r, minlength=n_rows)
    col_n = np.bincount(c, minlength=n_cols)
    row_fx = np.zeros(n_rows)
    col_fx = np.zeros(n_cols)
    scale = float(np.sum(y**2))
    previous = np.zeros_like(y)
    for _ in range(max_iter):
        row_fx = np.bincount(r, weights=y - col_fx[c], minlength=n_rows) / row_n
        col_fx = np.bincount(c, weights=y - row_fx[r], minlength=n_cols) / col_n
        fitted = row_fx[r] + col_fx[c]
        if float(np.sum((fitted - previous) ** 2)) <= 1e-26 * scale:
            break
        previous = fitted
    return fitted

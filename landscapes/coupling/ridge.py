"""The ridge of a landscape: each row's optimum between grid points, and the line through them.

Per row, the vertex of the parabola through the row's best cell and its two neighbours, in the horizontal axis's
own scale (log2 for lr and weight decay), places the optimum between grid points, so the slope is continuous
instead of the handful of values a best-cell line can take on a coarse grid. A row whose best cell lies at the
grid's edge, in a 0 column or beside an empty cell gives no vertex, and says why (the best cell is the first of
equal minima, so its left neighbour is always higher and the parabola opens upward).

The line is a least-squares fit of vertex against row, weighted by each vertex's precision: the cells' standard
errors propagated through the vertex formula (a sharp, well-measured minimum counts more than a shallow one).
Everything is vectorized over a leading batch axis, so a thousand bootstrap replicates cost one pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["RidgeFit", "fit_ridge", "row_vertices"]

# Why a row gives no vertex (codes in `row_vertices`' reasons).
USED, EMPTY, ZERO, EDGE, FLAT = range(5)
REASONS = {EMPTY: "no measured cell", ZERO: "best in the 0 column", EDGE: "best at the grid's edge or beside an "
           "empty cell", FLAT: "no parabola through its best cell and neighbours"}


def _vertex(x0, x1, x2, f0, f1, f2):
    """Vertex abscissa of the parabola through three points (arrays), and a mask where it is defined."""
    d0, d2 = x1 - x0, x1 - x2
    num = d0**2 * (f1 - f2) - d2**2 * (f1 - f0)
    den = d0 * (f1 - f2) - d2 * (f1 - f0)
    ok = np.abs(den) > 1e-300
    with np.errstate(invalid="ignore", divide="ignore"):
        xv = x1 - 0.5 * num / np.where(ok, den, 1.0)
    return np.clip(np.where(ok, xv, x1), x0, x2), ok


def row_vertices(mean: np.ndarray, se: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per (batch, row): the vertex coordinate, its variance, and why there is none (`USED` where there is one).

    `mean` and `se` are (batch, rows, cols) cell means and standard errors (NaN: no value); `x` the columns'
    coordinates (-inf for a 0 column).
    """
    batch, rows, cols = mean.shape
    finite = np.isfinite(mean)
    filled = np.where(finite, mean, np.inf)
    best = np.argmin(filled, axis=2)  # (batch, rows)
    has_any = finite.any(axis=2)
    reason = np.full((batch, rows), USED, dtype=np.int8)
    reason[~has_any] = EMPTY
    best_x = x[best]
    reason[has_any & ~np.isfinite(best_x)] = ZERO
    left, right = best - 1, best + 1
    inside = (left >= 0) & (right < cols)
    li, ri = np.clip(left, 0, cols - 1), np.clip(right, 0, cols - 1)
    take = lambda a, idx: np.take_along_axis(a, idx[..., None], axis=2)[..., 0]
    f0, f1, f2 = take(filled, li), take(filled, best), take(filled, ri)
    neighbours = inside & np.isfinite(f0) & np.isfinite(f2) & np.isfinite(x[li]) & np.isfinite(x[ri])
    reason[(reason == USED) & ~neighbours] = EDGE
    x0, x1, x2 = x[li], x[best], x[ri]
    usable = reason == USED
    safe = lambda a: np.where(usable, a, 0.0)
    xv, ok = _vertex(safe(x0), safe(x1), np.where(usable, x2, 1.0), safe(f0), safe(f1), safe(f2))
    reason[usable & ~ok] = FLAT
    usable = reason == USED
    # Delta method: the vertex's sensitivity to each of the three values, times their standard errors.
    s0, s1, s2 = take(np.nan_to_num(se, nan=0.0), li), take(np.nan_to_num(se, nan=0.0), best), take(
        np.nan_to_num(se, nan=0.0), ri)
    var = np.zeros((batch, rows))
    for index, s in enumerate((s0, s1, s2)):
        h = np.maximum(1e-6 * np.maximum(np.abs(safe(f1)), 1.0), 1e-9)
        bumped = [safe(f0), safe(f1), safe(f2)]
        bumped[index] = bumped[index] + h
        moved, _ = _vertex(safe(x0), safe(x1), np.where(usable, x2, 1.0), *bumped)
        var += ((moved - xv) / h * s) ** 2
    return np.where(usable, xv, np.nan), np.where(usable, var, np.nan), reason


@dataclass(frozen=True)
class RidgeFit:
    """The weighted line x = slope * y + intercept through the row vertices (arrays over the batch)."""

    slope: np.ndarray  # NaN where fewer than two rows have a vertex
    intercept: np.ndarray
    rows: np.ndarray  # rows used, per batch entry


def fit_ridge(y: np.ndarray, vertex: np.ndarray, variance: np.ndarray) -> RidgeFit:
    """Weighted least squares of `vertex` (batch, rows) on the rows' coordinates `y`, weights 1 / variance.

    A vertex with zero variance (no noise estimate) takes the median weight, so it neither vanishes nor dominates.
    """
    used = np.isfinite(vertex) & np.isfinite(y)[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = np.where(used, 1.0 / variance, 0.0)
    positive = used & np.isfinite(weight) & (weight > 0)
    for b in range(weight.shape[0]):
        bad = used[b] & ~positive[b]
        if bad.any():
            good = weight[b][positive[b]]
            weight[b][bad] = float(np.median(good)) if good.size else 1.0
    yy = np.where(used, y[None, :], 0.0)
    xx = np.where(used, vertex, 0.0)
    total = weight.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        y_mean = (weight * yy).sum(axis=1) / total
        x_mean = (weight * xx).sum(axis=1) / total
        dy = np.where(used, yy - y_mean[:, None], 0.0)
        sxx = (weight * dy**2).sum(axis=1)
        slope = (weight * dy * (xx - x_mean[:, None])).sum(axis=1) / sxx
    rows = used.sum(axis=1)
    levels, level = np.unique(y, return_inverse=True)
    distinct = ((used.astype(np.int64) @ (level[:, None] == np.arange(levels.size)[None, :])) > 0).sum(axis=1)
    slope = np.where((distinct >= 2) & (sxx > 0), slope, np.nan)
    return RidgeFit(slope, x_mean - slope * y_mean, rows)

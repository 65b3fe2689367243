"""The shape of the basin: a local quadratic fit, and how much of the landscape an additive model explains.

Near its best cells a landscape is about f = a*x^2 + 2c*x*y + b*y^2 + d*x + e*y + g, in the axes' own scales
(octaves for log2 axes). Its Hessian [[a, c], [c, b]] says how the two knobs interact:

- the interaction index |c| / sqrt(a*b): 0 when the basin is separable (axis-aligned: tune one knob, then the
  other), 1 for a valley along a diagonal (the knobs must move together); capped at 1, beyond which the basin is
  an open valley (a saddle), which the notes say;
- the basin {f <= best + tolerance} is an ellipse of area pi * tolerance / sqrt(a*b - c^2) (in octaves^2 on two
  log2 axes), whose long axis makes `angle` degrees with the vertical axis: about 0 upright, about -45 on the
  diagonal lr * wd = const. Neither depends on the grid's spacing.

The separability is the share of the variance that row + column effects explain over the rows and columns around
the basin (its bounding rectangle, one cell wider): 1 for an additive landscape, lower for a diagonal valley, and
a few very bad cells far from the good region do not dominate it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Quadratic", "basin_separability", "fit_quadratic"]

_MIN_CELLS = 7  # six coefficients, and at least one degree of freedom left
_NEAREST = 9  # at least this many of the best cells go into the fit (a 3 x 3 neighbourhood's worth)


@dataclass(frozen=True)
class Quadratic:
    """The local quadratic fit's Hessian terms and what follows from them (None where undefined)."""

    a: float  # d2f/dx2 / 2 (horizontal)
    b: float  # d2f/dy2 / 2 (vertical)
    c: float  # d2f/dxdy / 2
    cells: int  # cells the fit used

    @property
    def interaction(self) -> float | None:
        if self.a <= 0 or self.b <= 0:
            return None
        return min(1.0, abs(self.c) / math.sqrt(self.a * self.b))

    @property
    def bowl(self) -> bool:
        return self.a > 0 and self.b > 0 and self.a * self.b - self.c**2 > 0

    def area(self, tolerance: float) -> float | None:
        """Area of {f <= best + tolerance}, in the axes' units squared; None for an open valley."""
        return math.pi * tolerance / math.sqrt(self.a * self.b - self.c**2) if self.bowl else None

    @property
    def angle(self) -> float | None:
        """Degrees between the basin's long axis and the vertical axis, in (-90, 90]; None without curvature."""
        hessian = np.array([[self.a, self.c], [self.c, self.b]])
        values, vectors = np.linalg.eigh(hessian)
        if not np.all(np.isfinite(values)) or values.max() <= 0:
            return None
        vx, vy = vectors[:, 0]  # the flattest direction: the smallest eigenvalue's eigenvector
        angle = math.degrees(math.atan2(vx, vy))
        while angle <= -90:
            angle += 180
        while angle > 90:
            angle -= 180
        return angle


def _around(cells: np.ndarray) -> np.ndarray:
    """The cells and their eight neighbours: a valley's best cells lie on a line, and across it is its curvature."""
    out = cells.copy()
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            shifted = np.zeros_like(cells)
            rows = slice(max(dy, 0), cells.shape[0] + min(dy, 0))
            cols = slice(max(dx, 0), cells.shape[1] + min(dx, 0))
            source_rows = slice(max(-dy, 0), cells.shape[0] + min(-dy, 0))
            source_cols = slice(max(-dx, 0), cells.shape[1] + min(-dx, 0))
            shifted[rows, cols] = cells[source_rows, source_cols]
            out |= shifted
    return out


def fit_quadratic(mean: np.ndarray, x: np.ndarray, y: np.ndarray, basin: np.ndarray,
                  replicates: np.ndarray | None = None) -> tuple[Quadratic | None, list[Quadratic | None]]:
    """Least-squares quadratic over the basin and its neighbours (at least the `_NEAREST` best cells' worth).

    None with fewer than 7 such cells, or when they do not determine a quadratic (all on one line). The same cells
    fitted in each of `replicates` (batch, rows, cols) give the second value, in one solve.
    """
    none: list[Quadratic | None] = [None] * (0 if replicates is None else replicates.shape[0])
    xx, yy = np.meshgrid(x, y)
    finite = np.isfinite(mean) & np.isfinite(xx) & np.isfinite(yy)
    if finite.sum() < _MIN_CELLS:
        return None, none
    values = np.where(finite, mean, np.inf)
    best = np.zeros(mean.shape, dtype=bool)
    best.flat[np.argsort(values, axis=None, kind="stable")[: min(_NEAREST, int(finite.sum()))]] = True
    chosen = (_around(basin | best) & finite)[finite]
    values = mean[finite]
    if chosen.sum() < _MIN_CELLS:
        return None, none
    px, py, f = xx[finite][chosen], yy[finite][chosen], values[chosen]
    # Centred and scaled so the normal equations stay well conditioned on any axis.
    cx, cy = px.mean(), py.mean()
    sx, sy = max(np.ptp(px), 1e-12), max(np.ptp(py), 1e-12)
    u, v = (px - cx) / sx, (py - cy) / sy
    design = np.stack([u**2, 2 * u * v, v**2, u, v, np.ones_like(u)], axis=1)
    if np.linalg.matrix_rank(design) < design.shape[1]:
        return None, none
    solve = np.linalg.pinv(design)
    cells = int(chosen.sum())

    def quadratic(coef: np.ndarray) -> Quadratic | None:
        if not np.all(np.isfinite(coef[:3])):
            return None
        return Quadratic(float(coef[0] / sx**2), float(coef[2] / sy**2), float(coef[1] / (sx * sy)), cells)

    fits: list[Quadratic | None] = []
    if replicates is not None:
        drawn = replicates[:, finite][:, chosen]  # (batch, cells)
        fits = [quadratic(coef) for coef in drawn @ solve.T]
    return quadratic(solve @ f), fits


def basin_separability(mean: np.ndarray, basin: np.ndarray) -> float | None:
    """R^2 of row + column effects over the basin's bounding rectangle, one cell wider (None if it is too small)."""
    near = _around(basin)
    if not near.any():
        return None
    row_span, col_span = np.flatnonzero(near.any(axis=1)), np.flatnonzero(near.any(axis=0))
    window = np.full(mean.shape, np.nan)
    box = (slice(row_span[0], row_span[-1] + 1), slice(col_span[0], col_span[-1] + 1))
    window[box] = mean[box]
    rows, cols = np.nonzero(np.isfinite(window))
    if rows.size == 0:
        return None
    values = window[rows, cols]
    _, r = np.unique(rows, return_inverse=True)
    _, c = np.unique(cols, return_inverse=True)
    n_rows, n_cols = int(r.max()) + 1, int(c.max()) + 1
    if values.size <= n_rows + n_cols - 1:
        return None
    centred = values - values.mean()
    total = float(np.sum(centred**2))
    if total <= 1e-24 * max(1.0, float(np.max(np.abs(values)))) ** 2:
        return None  # flat: nothing to explain
    fitted = _additive_fit(centred, r, c, n_rows, n_cols)
    return min(1.0, max(0.0, 1.0 - float(np.sum((centred - fitted) ** 2)) / total))


def _additive_fit(y: np.ndarray, r: np.ndarray, c: np.ndarray, n_rows: int, n_cols: int,
                  max_iter: int = 2000) -> np.ndarray:
    """Least-squares row + column effects by backfitting (exact in one sweep on a full grid).

    Alternating means instead of a least-squares solver: no BLAS call, whose threads can stall on a busy machine,
    and holes in the grid need only a few more sweeps.
    """
    row_n = np.bincount(r, minlength=n_rows)
    col_n = np.bincount(c, minlength=n_cols)
    col_fx = np.zeros(n_cols)
    scale = float(np.sum(y**2))
    previous = np.zeros_like(y)
    fitted = previous
    for _ in range(max_iter):
        row_fx = np.bincount(r, weights=y - col_fx[c], minlength=n_rows) / row_n
        col_fx = np.bincount(c, weights=y - row_fx[r], minlength=n_cols) / col_n
        fitted = row_fx[r] + col_fx[c]
        if float(np.sum((fitted - previous) ** 2)) <= 1e-26 * scale:
            break
        previous = fitted
    return fitted

"""How coupled a landscape's two knobs are, with 95 % intervals, and a verdict only the data can support.

- ridge slope: the weighted line through the rows' sub-grid optima (`ridge`), in the axes' own scales (octaves
  per octave on lr x weight decay): about -1 when the good region lies on the diagonal lr * wd = const (SGD +
  L2), about 0 when it stands upright (SGDW, paper AdamW);
- its interval: a bootstrap over seeds where the sweep has eight or more; with two to seven, a parametric bootstrap
  that redraws each cell with the seeds' pooled noise; with one, a residual bootstrap over the cells (each row's
  quadratic fit plus resampled residuals); `ridge_ci_method` says which, and `notes` why there is none;
- interaction index, basin area and angle from the local quadratic fit (`surface`), with the interaction's
  interval from the same bootstrap; separability around the basin;
- verdict: "coupled" when the slope's whole interval lies below -0.3, "separable" when it lies within +-0.3,
  "inconclusive" otherwise (including when there is no interval: too few rows, a grid too small).

Only cells with a measured mean count: empty, running and diverged cells are left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..landscape.types import Landscape
from ..lru import LRU
from .bootstrap import REPLICATES, interval, standard_errors
from .bootstrap import replicates as bootstrap_draws
from .cache import landscape_digest
from .ridge import REASONS, USED, fit_ridge, row_vertices
from .surface import basin_separability, fit_quadratic

__all__ = ["DEFAULT_BASIN_TOLERANCE", "VERDICT_BAND", "CouplingMetrics", "clear_coupling_cache", "coupling_metrics",
           "coupling_metrics_by_key"]

# Cells within 10 % of the best value form the basin (0.38 pp at Figure 2's 3.8 % best error).
DEFAULT_BASIN_TOLERANCE = 0.10
# A slope whose 95 % interval lies inside +-VERDICT_BAND is "separable"; one wholly below -VERDICT_BAND "coupled".
VERDICT_BAND = 0.3
_MIN_ROWS = 3  # an interval from fewer rows says nothing
# (landscape digest, tolerance, relative, replicates, seed) -> the metrics.
_CACHE: LRU[tuple[bytes, float, bool, int, int], CouplingMetrics] = LRU(256)


@dataclass(frozen=True)
class CouplingMetrics:
    """Coupling metrics of one landscape; None where a metric is undefined (`notes` say why)."""

    ridge_slope: float | None
    ridge_slope_ci: tuple[float, float] | None  # 95 %
    ridge_ci_method: str | None  # "bootstrap over seeds" | "residual bootstrap over cells"
    ridge_intercept: float | None
    ridge_rows: int  # rows used for the slope
    ridge_points: list[tuple[float, float]]  # (row value, sub-grid optimum) per row used, in axis values
    interaction: float | None  # |c| / sqrt(ab) of the local quadratic fit: 0 separable, 1 diagonal
    interaction_ci: tuple[float, float] | None
    separability: float | None  # R^2 of row + column effects around the basin
    basin_cells: int
    basin_tolerance: float
    basin_relative: bool
    basin_area: float | None  # the quadratic basin's area, in axis units squared (octaves^2 on log2 axes)
    basin_angle: float | None  # degrees between its long axis and the vertical axis
    n_cells: int  # cells with a measured, non-diverged mean
    best: dict[str, Any] | None  # {"params": {vertical axis: value, horizontal axis: value}, "value"}
    verdict: str  # "coupled" | "separable" | "inconclusive"
    notes: tuple[str, ...] = ()
    axes: tuple[str, str] = ("lr", "weight_decay")  # (vertical, horizontal) axis names
    units: tuple[str, str] = field(default=("log2", "log2"))  # the scales the slope and areas are measured in

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ridge_points"] = [list(p) for p in self.ridge_points]
        for key in ("ridge_slope_ci", "interaction_ci", "axes", "units"):
            out[key] = None if out[key] is None else list(out[key])
        out["notes"] = list(self.notes)
        return out


def coupling_metrics(
    landscape: Landscape,
    *,
    tolerance: float = DEFAULT_BASIN_TOLERANCE,
    relative: bool = True,
    replicates: int = REPLICATES,
    seed: int = 0,
) -> CouplingMetrics:
    """Ridge slope (with its interval), interaction, separability, basin and verdict of `landscape`.

    `tolerance`: a cell is in the basin when its mean <= best + tolerance * |best| (`relative`) or <= best +
    tolerance (absolute). `replicates` bootstrap draws from a generator seeded with `seed` (same answer twice).
    """
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    key = (landscape_digest(landscape), float(tolerance), bool(relative), int(replicates), int(seed))
    cached = _CACHE.get(key)
    if isinstance(cached, CouplingMetrics):
        return cached
    result = _coupling_metrics(landscape, tolerance, relative, replicates, seed)
    _CACHE.put(key, result)
    return result


def coupling_metrics_by_key(landscapes: Mapping[str, Landscape]) -> dict[str, CouplingMetrics]:
    """`coupling_metrics` (default arguments) of every landscape of a sweep, keyed alike.

    One after another: the bootstrap is many small numpy steps that hold the GIL, so threads measured no faster.
    """
    return {key: coupling_metrics(land) for key, land in landscapes.items()}


def clear_coupling_cache() -> None:
    """Forget remembered metrics (the next request computes them again)."""
    _CACHE.clear()


def _coupling_metrics(landscape: Landscape, tolerance: float, relative: bool, replicates: int,
                      seed: int) -> CouplingMetrics:
    axes = (landscape.y.name, landscape.x.name)
    units = (landscape.y.scale, landscape.x.scale)
    mean = np.where(landscape.diverged, np.nan, landscape.mean.astype(np.float64))
    finite = np.isfinite(mean)
    notes: list[str] = []
    n_cells = int(finite.sum())
    if n_cells == 0:
        return CouplingMetrics(None, None, None, None, 0, [], None, None, None, 0, float(tolerance), relative,
                               None, None, 0, None, "inconclusive", ("no cell has a measured value yet",), axes,
                               units)
    x, y = landscape.x.coordinates(), landscape.y.coordinates()
    se = standard_errors(landscape, mean)
    vertex, variance, reason = row_vertices(mean[None], se[None], x)
    fit = fit_ridge(y, vertex, variance)
    slope = _float(fit.slope[0])
    used = reason[0] == USED
    points = [(float(landscape.y.values[i]), _axis_value(landscape.x.scale, float(vertex[0, i])))
              for i in np.flatnonzero(used & np.isfinite(y))]
    _row_notes(landscape, reason[0], notes)
    best_value = float(np.nanmin(mean))
    limit = tolerance * abs(best_value) if relative else tolerance
    basin = finite & (mean <= best_value + limit)
    quadratic, _ = fit_quadratic(mean, x, y, basin)
    if slope is None:
        notes.append(f"ridge slope needs at least two {landscape.y.name} rows whose best cell is inside the grid")

    slope_ci = interaction_ci = method = None
    draws = bootstrap_draws(landscape, mean, se, x, replicates, seed, notes)
    if draws is not None and int(used.sum()) >= _MIN_ROWS:
        method, draw_mean, draw_se, inflate = draws
        v_b, var_b, _ = row_vertices(draw_mean, draw_se, x)
        slopes = fit_ridge(y, v_b, var_b).slope
        slope_ci = interval(slopes, "ridge slope", notes, slope, inflate)
        _, fits = fit_quadratic(mean, x, y, basin, draw_mean)
        interactions = [np.nan if q is None or q.interaction is None else q.interaction for q in fits]
        interaction_ci = None
        if quadratic is not None and quadratic.interaction is not None:
            interaction_ci = interval(np.array(interactions), "interaction", notes, quadratic.interaction, inflate)
            interaction_ci = (max(0.0, interaction_ci[0]), min(1.0, interaction_ci[1])) if interaction_ci else None
    elif int(used.sum()) < _MIN_ROWS:
        notes.append(f"no interval: {int(used.sum())} row(s) have an optimum inside the grid, {_MIN_ROWS} are "
                     "needed (widen the grid around the good region, or add rows)")
    if quadratic is None:
        notes.append("no local quadratic fit: fewer than 7 measured cells near the best, or all on one line")
    elif not quadratic.bowl:
        notes.append("the basin is an open valley (no closed ellipse): its area is unbounded on this grid")
    row, col = landscape.best_cells(1)[0]
    return CouplingMetrics(
        ridge_slope=slope,
        ridge_slope_ci=slope_ci,
        ridge_ci_method=method if slope_ci is not None else None,
        ridge_intercept=_float(fit.intercept[0]),
        ridge_rows=int(used.sum()),
        ridge_points=points,
        interaction=None if quadratic is None else quadratic.interaction,
        interaction_ci=interaction_ci,
        separability=basin_separability(mean, basin),
        basin_cells=int(basin.sum()),
        basin_tolerance=float(tolerance),
        basin_relative=relative,
        basin_area=None if quadratic is None else quadratic.area(limit),
        basin_angle=None if quadratic is None else quadratic.angle,
        n_cells=n_cells,
        best={"params": {axes[0]: float(landscape.y.values[row]), axes[1]: float(landscape.x.values[col])},
              "value": float(landscape.mean[row, col])},
        verdict=_verdict(slope, slope_ci),
        notes=tuple(notes),
        axes=axes,
        units=units,
    )


def _float(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _axis_value(scale: str, coordinate: float) -> float:
    return {"log2": 2.0**coordinate, "log10": 10.0**coordinate}.get(scale, coordinate)


def _verdict(slope: float | None, ci: tuple[float, float] | None) -> str:
    if slope is None or ci is None:
        return "inconclusive"
    if ci[1] < -VERDICT_BAND:
        return "coupled"
    if -VERDICT_BAND <= ci[0] and ci[1] <= VERDICT_BAND:
        return "separable"
    return "inconclusive"


def _row_notes(landscape: Landscape, reason: np.ndarray, notes: list[str]) -> None:
    for code, text in REASONS.items():
        rows = [f"{landscape.y.values[i]:.4g}" for i in np.flatnonzero(reason == code)]
        if rows and code != 0:
            notes.append(f"{landscape.y.name} row(s) {', '.join(rows)} left out of the ridge: {text}")

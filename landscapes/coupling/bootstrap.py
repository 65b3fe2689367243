"""The intervals' machinery: the seeds' pooled noise, bootstrap replicates of a landscape's cell means, percentiles.

How replicates are drawn depends on the seeds a landscape has: eight or more are resampled; two to seven set a
pooled noise each cell is redrawn with (a parametric bootstrap); one seed leaves a residual bootstrap around each
row's quadratic fit. `coupling_metrics` and `axis_optimum` share them.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ..landscape.types import Landscape

__all__ = ["REPLICATES", "interval", "pooled_sd", "replicates", "standard_errors"]

REPLICATES = 1000
_RESAMPLED_SEEDS = 8  # from this many seeds on, the seeds themselves are resampled
# At most this many picked values (replicates x seeds x cells) in one resample; past it, the parametric bootstrap.
_MAX_DRAWN = 20_000_000


def pooled_sd(landscape: Landscape) -> float:
    """The seeds' noise: the square root of the median variance over replicated cells (1 without replication)."""
    replicated = np.isfinite(landscape.std) & (landscape.n >= 2) & ~landscape.diverged
    if not replicated.any():
        return 1.0
    # A sample variance with k degrees of freedom has median sigma^2 * median(chi2_k) / k, about
    # sigma^2 * (1 - 2 / (9k))^3 (Wilson-Hilferty): divide it out, or the noise reads 20-50 % low.
    k = float(np.median(landscape.n[replicated])) - 1
    return float(np.sqrt(np.median(landscape.std[replicated] ** 2) / (1 - 2 / (9 * k)) ** 3))


def standard_errors(landscape: Landscape, mean: np.ndarray) -> np.ndarray:
    """Per cell: the pooled noise over sqrt(n), the weights of the ridge fit (1 / sqrt(n) with no replication).

    Pooled rather than each cell's own spread: with two seeds a cell's std is itself a guess within a factor of two.
    """
    n = np.maximum(landscape.n.astype(np.float64), 1)
    return np.where(np.isfinite(mean), pooled_sd(landscape) / np.sqrt(n), np.nan)


def replicates(landscape: Landscape, mean: np.ndarray, se: np.ndarray, x: np.ndarray, count: int, seed: int,
                notes: list[str]) -> tuple[str, np.ndarray, np.ndarray, float] | None:
    """Bootstrap replicates of the cell means (and their standard errors), how they were drawn, and the factor
    their spread is widened by: resampling S seeds underestimates the variance by (S - 1) / S."""
    rng = np.random.default_rng(seed)
    samples = landscape.samples
    seeds = 0 if samples is None else samples.shape[0]
    if seeds >= _RESAMPLED_SEEDS and count * seeds * mean.size <= _MAX_DRAWN:
        picks = rng.integers(0, seeds, size=(count, seeds))
        means, n, variance = _resampled_moments(samples, picks)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a replicate no cell of which has two seeds: NaN
            pooled = np.sqrt(np.nanmean(variance, axis=(1, 2)))
        fill = np.where(np.isfinite(pooled), pooled, 1.0)[:, None, None]
        draw_se = np.where(n >= 2, np.sqrt(variance), fill) / np.sqrt(np.maximum(n, 1.0))
        means[:, np.isnan(mean)] = np.nan
        return f"bootstrap over {seeds} seeds", means, draw_se, math.sqrt(seeds / (seeds - 1))
    if seeds >= 2:
        # (Also where resampling would not fit in memory: a binned Bayesian sweep can hold hundreds of trials per
        # bin, and with that many the normal approximation is as good as a resample.)
        # Resampling two or three seeds gives a handful of distinct replicates; instead each cell is redrawn around
        # its mean with the seeds' noise, pooled over the cells (the median variance: a few wild cells far from
        # the basin do not set it), divided by the cell's count.
        noise = pooled_sd(landscape)
        n = np.maximum(landscape.n, 1)
        cell_se = np.where(np.isfinite(mean), noise / np.sqrt(n), np.nan)
        means = mean[None] + cell_se[None] * rng.standard_normal((count, *mean.shape))
        return (f"parametric bootstrap from the spread of {seeds} seeds", means,
                np.broadcast_to(cell_se, means.shape).copy(), 1.0)
    fitted, residuals = _row_quadratics(mean, x)
    if residuals.size < 2:
        notes.append("no interval: one seed, and too few cells per row for a residual bootstrap (add a seed, or "
                     "more columns)")
        return None
    noise = rng.choice(residuals, size=(count, *mean.shape), replace=True)
    means = np.where(np.isfinite(mean), fitted[None] + noise, np.nan)
    return "residual bootstrap over cells (one seed)", means, np.broadcast_to(se, means.shape).copy(), 1.0


def _resampled_moments(samples: np.ndarray, picks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per replicate and cell: the mean, count (as float) and variance (ddof 1) of the picked seeds' values; NaN
    mean without a value, NaN variance with fewer than two.

    A replicate is a seed-count vector, so its sums are matrix products with the (seeds, cells) values: the same
    numbers as gathering every pick (count x seeds x cells values) and taking NaN-aware moments, at the cost of
    three small matmuls. Values are centred on each cell's mean first, so the sum of squares loses no precision;
    the rest is done in place (a replicate array is 1000 x cells, and each temporary costs a millisecond).
    """
    count, seeds = picks.shape
    rows = picks + seeds * np.arange(count)[:, None]
    weights = np.bincount(rows.ravel(), minlength=count * seeds).reshape(count, seeds).astype(np.float64)
    flat = samples.reshape(seeds, -1)
    measured = np.isfinite(flat)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a cell no seed measured
        centre = np.nan_to_num(np.nanmean(flat, axis=0))
    deviation = np.where(measured, flat - centre, 0.0)
    n = weights @ measured.astype(np.float64)
    first = weights @ deviation
    variance = weights @ (deviation * deviation)
    with np.errstate(invalid="ignore", divide="ignore"):
        inverse = 1.0 / n  # inf where no pick has a value: 0 * inf below is NaN, as meant
        means = first * inverse
        first *= means  # first^2 / n
        variance -= first
        np.maximum(variance, 0.0, out=variance)
        variance /= n - 1.0
    variance[n < 2] = np.nan
    means += centre
    shape = (count, *samples.shape[1:])
    return means.reshape(shape), n.reshape(shape), variance.reshape(shape)


def _row_quadratics(mean: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's least-squares quadratic in the horizontal coordinate, and the residuals, scaled to unbiased."""
    fitted = np.where(np.isfinite(mean), mean, np.nan)
    residuals: list[float] = []
    params = 0
    for i, row in enumerate(mean):
        ok = np.isfinite(row) & np.isfinite(x)
        if ok.sum() <= 3:
            continue
        coef = np.polynomial.polynomial.polyfit(x[ok], row[ok], 2)
        fitted[i, ok] = np.polynomial.polynomial.polyval(x[ok], coef)
        residuals += list(row[ok] - fitted[i, ok])
        params += 3
    out = np.asarray(residuals)
    if out.size > params:
        out = out * math.sqrt(out.size / (out.size - params))
    return fitted, out


def interval(values: np.ndarray, what: str, notes: list[str], estimate: float | None,
              inflate: float) -> tuple[float, float] | None:
    """The 2.5 and 97.5 percentiles of the replicates, their distances from `estimate` widened by `inflate`."""
    finite = values[np.isfinite(values)]
    if finite.size < 0.9 * values.size:
        notes.append(f"{what}: {values.size - finite.size} of {values.size} bootstrap replicates had none; the "
                     "interval is from the others")
    if finite.size < 20:
        return None
    lo, hi = np.percentile(finite, [2.5, 97.5])
    if estimate is None:
        return float(lo), float(hi)
    return float(estimate - inflate * (estimate - lo)), float(estimate + inflate * (hi - estimate))

"""From trial columns to cells: axis values, bins for scattered (Bayesian) trials, per-cell statistics."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .reader import CATEGORY_NAMES, STOPPED, Columns
from .types import AXIS_RTOL, ModelSurface

__all__ = ["aggregate", "bin_axis", "bin_index", "index_on", "kernel_surface", "merge_axis"]

# Bins over a linear axis's range, per `bins_per_octave` (log axes bin by powers of their base).
_LINEAR_BINS = 8


def merge_axis(spec_values: Sequence[float], observed: np.ndarray) -> tuple[np.ndarray, bool]:
    """Sorted union of the spec's values and any observed value not among them."""
    axis = np.unique(np.asarray(spec_values, dtype=np.float64))
    seen = np.unique(observed[np.isfinite(observed)])
    extra = seen[index_on(axis, seen) < 0]
    if extra.size:
        axis = np.unique(np.concatenate([axis, extra]))
    return axis, bool(extra.size)


def index_on(axis: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Position of each value on a sorted axis, or -1 when it is not on it."""
    if axis.size == 0:
        return np.full(values.shape, -1, dtype=np.int64)
    pos = np.searchsorted(axis, values)
    best = np.clip(pos, 0, axis.size - 1)
    left = np.clip(pos - 1, 0, axis.size - 1)
    pick = np.where(np.abs(axis[left] - values) < np.abs(axis[best] - values), left, best)
    ok = np.isclose(axis[pick], values, rtol=AXIS_RTOL, atol=0.0) & np.isfinite(values)
    return np.where(ok, pick, -1)


def _base(scale: str) -> float | None:
    return {"log2": 2.0, "log10": 10.0}.get(scale)


def bin_axis(values: np.ndarray, bounds: tuple[float, float] | None, per_octave: int, scale: str) -> np.ndarray:
    """Bin centres covering `bounds` (or the values seen): base**(k / per_octave) on log axes, even steps else."""
    base = _base(scale)
    usable = values[np.isfinite(values) & ((values > 0) if base else True)]
    if bounds is not None:
        lo, hi = bounds
    elif usable.size:
        lo, hi = float(usable.min()), float(usable.max())
    else:
        return np.zeros(0)
    if usable.size:
        lo, hi = min(lo, float(usable.min())), max(hi, float(usable.max()))
    if base is None:
        if hi <= lo:
            return np.array([lo])
        return np.linspace(lo, hi, _LINEAR_BINS * per_octave)
    log = math.log(base)
    k_lo = math.floor(math.log(lo) / log * per_octave + 0.5)
    k_hi = math.floor(math.log(hi) / log * per_octave + 0.5)
    return base ** (np.arange(k_lo, k_hi + 1) / per_octave)


def bin_index(axis: np.ndarray, values: np.ndarray, per_octave: int, scale: str) -> np.ndarray:
    """Bin of each value (on a log axis, values <= 0 go to a leading 0 column if there is one)."""
    out = np.full(values.shape, -1, dtype=np.int64)
    base = _base(scale)
    if base is None:
        if axis.size:
            pick = np.abs(values[:, None] - axis[None, :]).argmin(axis=1) if values.size else out
            ok = np.isfinite(values)
            out[ok] = np.asarray(pick)[ok]
        return out
    has_zero = axis.size > 0 and axis[0] == 0.0
    log_axis = axis[1:] if has_zero else axis
    if log_axis.size:
        k0 = math.log(log_axis[0]) / math.log(base) * per_octave
        with np.errstate(divide="ignore", invalid="ignore"):
            k = np.floor(np.log(values) / math.log(base) * per_octave - k0 + 0.5)
        ok = np.isfinite(k) & (k >= 0) & (k < log_axis.size) & (values > 0)
        out[ok] = k[ok].astype(np.int64) + (1 if has_zero else 0)
    if has_zero:
        out[values == 0.0] = 0
    return out


def aggregate(cols: Columns, row: np.ndarray, col: np.ndarray, shape: tuple[int, int]) -> dict[str, Any]:
    """Per cell: mean, std and n over the trials with a value, counts by category, states and trial numbers."""
    n_rows, n_cols = shape
    size = n_rows * n_cols
    placed = (row >= 0) & (col >= 0)
    key = np.where(placed, row * n_cols + col, 0)[placed]
    category = cols.category[placed]
    value = cols.value[placed]
    diverged = cols.diverged[placed]
    number = cols.number[placed]
    epochs_done = cols.epochs_done[placed]

    counts = {name: np.bincount(key[category == code], minlength=size) for code, name in enumerate(CATEGORY_NAMES)}
    # Stopped-early trials stand for a cell only when none of its trials finished the budget.
    usable = np.isfinite(value)
    stopped = category == STOPPED
    usable &= ~stopped | (counts["done"][key] == 0)
    n = np.bincount(key[usable], minlength=size)
    total = np.bincount(key[usable], weights=value[usable], minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, total / np.maximum(n, 1), np.nan)
        dev = np.bincount(key[usable], weights=(value[usable] - mean[key[usable]]) ** 2, minlength=size)
        std = np.where(n > 1, np.sqrt(dev / np.maximum(n - 1, 1)), np.nan)
    n_diverged = np.bincount(key[diverged], minlength=size)
    budget = np.zeros(size, dtype=np.int64)
    if stopped.any():
        np.maximum.at(budget, key[stopped], epochs_done[stopped])

    state = np.full(size, "empty", dtype=object)
    # Lowest priority first, so the more urgent states overwrite.
    for name in ("failed", "diverged", "stopped", "done", "queued", "running"):
        state[counts[name] > 0] = name

    order = np.lexsort((number, key))
    ends = np.cumsum(np.bincount(key, minlength=size)).tolist()
    ordered = number[order].tolist()
    starts = [0, *ends[:-1]]
    groups = [ordered[a:b] for a, b in zip(starts, ends)]
    trials = [groups[r * n_cols : (r + 1) * n_cols] for r in range(n_rows)]

    # Per seed: the cell's value (seeds with no value anywhere are left out). What bootstraps over seeds resample.
    seed = cols.seed[placed]
    seeds = np.unique(seed[usable & (seed >= 0)])
    samples = np.full((seeds.size, size), np.nan)
    if seeds.size:
        pick = usable & (seed >= 0)
        which = np.searchsorted(seeds, seed[pick])
        sums = np.zeros((seeds.size, size))
        hits = np.zeros((seeds.size, size))
        np.add.at(sums, (which, key[pick]), value[pick])
        np.add.at(hits, (which, key[pick]), 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            samples = np.where(hits > 0, sums / np.maximum(hits, 1), np.nan)

    return {
        "mean": mean.reshape(shape),
        "std": std.reshape(shape),
        "n": n.reshape(shape),
        "count": np.bincount(key, minlength=size).reshape(shape),
        "n_diverged": n_diverged.reshape(shape),
        "state": state.reshape(shape),
        "state_counts": {k: v.reshape(shape) for k, v in counts.items()},
        "budget": budget.reshape(shape),
        "trials": trials,
        "seeds": tuple(int(s) for s in seeds),
        "samples": samples.reshape((seeds.size, n_rows, n_cols)),
    }


def _coordinates(values: np.ndarray, scale: str) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        if scale == "log2":
            return np.log2(values)
        if scale == "log10":
            return np.log10(values)
    return values.astype(np.float64)


def kernel_surface(cols: Columns, y_axis: np.ndarray, x_axis: np.ndarray, scales: tuple[str, str],
                   bandwidth: float) -> ModelSurface:
    """A Gaussian kernel smoother of the trials' values in the axes' own scales: a MODEL, not measured data."""
    gy_all, gx_all = _coordinates(cols.y, scales[0]), _coordinates(cols.x, scales[1])
    ok = np.isfinite(cols.value) & np.isfinite(gy_all) & np.isfinite(gx_all)
    py, px, v = gy_all[ok], gx_all[ok], cols.value[ok]
    gy, gx = _coordinates(y_axis, scales[0]), _coordinates(x_axis, scales[1])
    mean = np.full((y_axis.size, x_axis.size), np.nan)
    if v.size:
        # Separable Gaussian weights: (rows x points) and (cols x points), combined per cell.
        wy = np.exp(-0.5 * ((gy[:, None] - py[None, :]) / bandwidth) ** 2)
        wx = np.exp(-0.5 * ((gx[:, None] - px[None, :]) / bandwidth) ** 2)
        weight = wy @ wx.T  # sum of weights per cell
        weighted = (wy * v[None, :]) @ wx.T
        # No extrapolation: a cell needs real support (a point within about two bandwidths).
        support = weight > math.exp(-0.5 * 2.0**2)
        mean = np.where(support, weighted / np.where(support, weight, 1.0), np.nan)
        mean[:, ~np.isfinite(gx)] = np.nan  # a 0 column is not on the log scale
    label = f"MODEL, not measured: Gaussian kernel smoother of {v.size} trials (bandwidth {bandwidth:g} octave)"
    return ModelSurface(mean=mean, bandwidth_octaves=bandwidth, n_points=int(v.size), label=label)

"""The budget study: how the optimal weight decay moves with the number of epochs, raw and normalized.

The paper's claim: the optimal raw decay shrinks as the budget grows, while the normalized decay
lambda_norm = lambda / sqrt(b / (B T)) (b the batch size, B the training-set size, T the epochs) stays put. For each
budget's landscape (an `epochs` facet over an lr x weight_decay grid) this takes the optimal decay of the best row
(`axis_optimum`, with its bootstrap interval), in both units, and fits the exponent k of lambda* ~ T^k across
budgets: about -0.5 when lambda_norm is constant, 0 when the raw value is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .coupling import axis_optimum
from .landscape.types import Landscape
from .spec import SweepSpec
from .variants import VARIANTS
from .vocabulary import DATASET_SIZES

__all__ = ["BudgetPoint", "BudgetTrend", "budget_study", "budget_supported"]


@dataclass(frozen=True)
class BudgetPoint:
    """One variant at one budget: the optimal decay (raw and normalized) with 95 % intervals."""

    variant: str
    epochs: int
    lr: float | None  # the row the optimum was read in
    raw: float | None
    raw_ci: tuple[float, float] | None
    normalized: float | None
    normalized_ci: tuple[float, float] | None
    note: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"variant": self.variant, "epochs": self.epochs, "lr": self.lr, "raw": self.raw,
                "raw_ci": None if self.raw_ci is None else list(self.raw_ci), "normalized": self.normalized,
                "normalized_ci": None if self.normalized_ci is None else list(self.normalized_ci),
                "note": self.note}


@dataclass(frozen=True)
class BudgetTrend:
    """Per variant: the exponent k of raw lambda* ~ T^k (normalized: k + 0.5), with its 95 % interval."""

    variant: str
    exponent: float | None
    exponent_ci: tuple[float, float] | None
    budgets: int  # budgets with an optimum
    note: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"variant": self.variant, "exponent": self.exponent,
                "exponent_ci": None if self.exponent_ci is None else list(self.exponent_ci),
                "normalized_exponent": None if self.exponent is None else self.exponent + 0.5,
                "budgets": self.budgets, "note": self.note}


def budget_supported(spec: SweepSpec | None) -> str | None:
    """None when `spec` is a budget study; otherwise why not (for a clear 422)."""
    if spec is None:
        return "the sweep's spec is not known"
    if spec.facet is None or spec.facet.axis != "epochs":
        return "the budget view needs an `epochs` facet (one landscape per budget), e.g. the quick-budget preset"
    if spec.grid is None or spec.swept_axes[1] != "weight_decay":
        return "the budget view needs weight_decay as the grid's horizontal axis"
    return None


def _scale(spec: SweepSpec, epochs: int) -> float:
    """sqrt(b / (B T)): raw = normalized x this."""
    train_size = DATASET_SIZES[spec.dataset][0]
    return math.sqrt(spec.batch_size / (train_size * epochs))


def budget_study(landscapes: Mapping[str, Landscape], spec: SweepSpec) -> tuple[list[BudgetPoint], list[BudgetTrend]]:
    """The optimum per (variant, budget) and the exponent per variant, from an epochs-faceted sweep's landscapes."""
    reason = budget_supported(spec)
    if reason is not None:
        raise ValueError(reason)
    points: list[BudgetPoint] = []
    draws: dict[str, list[tuple[float, float, np.ndarray | None]]] = {}
    for index, landscape in enumerate(landscapes.values()):
        if landscape.facet is None or landscape.facet.axis != "epochs":
            continue
        epochs = int(landscape.facet.value)
        scale = _scale(spec, epochs)
        # The grid holds lambda_norm for decoupled variants of a normalized sweep, the raw value otherwise.
        stored_normalized = spec.normalized_decay and VARIANTS[landscape.variant].decoupled
        to_raw = scale if stored_normalized else 1.0
        # Its own bootstrap seed: replicates shared between budgets would move together and shrink the exponent's
        # interval (measured: to a third of its width).
        optimum = axis_optimum(landscape, seed=index)
        raw = None if optimum.value is None else optimum.value * to_raw
        raw_ci = None if optimum.ci is None else (optimum.ci[0] * to_raw, optimum.ci[1] * to_raw)
        points.append(BudgetPoint(
            variant=landscape.variant, epochs=epochs, lr=optimum.row_value, raw=raw, raw_ci=raw_ci,
            normalized=None if raw is None else raw / scale,
            normalized_ci=None if raw_ci is None else (raw_ci[0] / scale, raw_ci[1] / scale),
            note=optimum.note,
        ))
        if raw is not None and landscape.x.scale == "log2":
            replicate_raw = None if optimum.coordinates is None else optimum.coordinates + math.log2(to_raw)
            draws.setdefault(landscape.variant, []).append((math.log2(epochs), math.log2(raw), replicate_raw))
    points.sort(key=lambda p: (list(VARIANTS).index(p.variant), p.epochs))
    trends = [_trend(variant, draws.get(variant, [])) for variant in spec.variants]
    return points, trends


def _slope(t: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Least-squares slopes of v (..., budgets) on t (budgets), NaN where fewer than two finite points."""
    ok = np.isfinite(v)
    n = ok.sum(axis=-1)
    tt = np.where(ok, t, 0.0)
    vv = np.where(ok, v, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        t_mean = tt.sum(axis=-1) / n
        v_mean = vv.sum(axis=-1) / n
        dt = np.where(ok, t - t_mean[..., None], 0.0)
        slope = (dt * (vv - v_mean[..., None])).sum(axis=-1) / (dt**2).sum(axis=-1)
    return np.where(n >= 2, slope, np.nan)


def _trend(variant: str, rows: list[tuple[float, float, np.ndarray | None]]) -> BudgetTrend:
    if len(rows) < 2:
        return BudgetTrend(variant, None, None, len(rows), "an exponent needs optima at two budgets or more")
    t = np.array([r[0] for r in rows])
    exponent = float(_slope(t, np.array([r[1] for r in rows]))[()])
    if any(r[2] is None for r in rows):
        return BudgetTrend(variant, exponent, None, len(rows), "no interval: a budget's optimum has none")
    replicate = np.stack([r[2] for r in rows], axis=-1)  # (replicates, budgets), each budget drawn independently
    slopes = _slope(t, replicate)
    finite = slopes[np.isfinite(slopes)]
    if finite.size < 20:
        return BudgetTrend(variant, exponent, None, len(rows), "no interval: too few bootstrap replicates had optima")
    lo, hi = np.percentile(finite, [2.5, 97.5])
    return BudgetTrend(variant, exponent, (float(lo), float(hi)), len(rows), None)

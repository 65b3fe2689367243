"""Does the effective step explain the landscapes? Each finished cell's final metric against its equilibrium angle.

docs/science.md ("the effective step"): weights that feed a BatchNorm are scale-invariant, and at equilibrium they
turn by an angle per step set by the decay, sqrt(2 * lr_t * lambda' / (1 + mu)) for SGD + L2 and
sqrt(2 * eta_t * lambda * (1 - mu) / (1 + mu)) for SGDW and the paper's AdamW. If that angle is what the metric
depends on, an L2 variant's cells and its decoupled partner's fall on one curve when plotted against it, however
differently their lr x decay landscapes look. `collapse` measures how nearly they do:

    R²_sep   = 1 - SSE_sep / SS      one quadratic in log(angle) per variant (SSE_sep: both fits' residuals)
    R²_joint = 1 - SSE_joint / SS    one quadratic through both variants' cells
    score    = R²_joint / R²_sep = 1 - (SSE_joint - SSE_sep) / (SS - SSE_sep)

SS is the spread of all cells of the pair around their mean. The joint fit is the separate fits with the variant
forced not to matter, so SSE_joint >= SSE_sep and the score lies in [0, 1]: 1 when one curve does as well as two
(the cells collapse), 0 when the angle explains nothing once the variant must not matter. Its 95 % interval is a
bootstrap over cells: each variant's cells resampled with replacement (a cell's seeds stay together, so their noise
is in the cell's mean once, not resampled twice).

The angle is the trial history's last epoch: `angular_update_theory` (the prediction, "theory") or
`angular_update` (what the trainer measured, "measured"); both are optional telemetry that older records lack.
With a cosine schedule the last epoch's angle is the end-of-schedule one; cells of one pair share the schedule and
the budget, so that is a common factor and moves every point alike on the log axis.

    pairs = sweep_mechanism(storage, "quick", spec)       # one `Collapse` per variant pair (and facet value)
    pairs[0].score, pairs[0].score_ci, pairs[0].notes
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from .coupling.bootstrap import REPLICATES, interval
from .keys import Facet, study_name
from .record.attrs import Attr
from .record.storage import as_storage
from .spec import SweepSpec
from .variants import get_variant, landscape_pairs, variant_label

__all__ = ["ANGLES", "MIN_ANGLES", "MIN_CELLS", "Collapse", "MechanismCell", "collapse", "sweep_mechanism"]

Angle = Literal["theory", "measured"]
ANGLES: dict[str, str] = {  # angle -> the history field it reads
    "theory": "angular_update_theory",
    "measured": "angular_update",
}
MIN_CELLS = 5  # per variant: a quadratic has 3 coefficients, and a fit needs residuals left to be judged by
MIN_ANGLES = 3  # distinct angles per variant: fewer, and its quadratic passes through every cell
_WEAK_R2 = 0.3  # separate fits explaining less than this: the score compares two small numbers
_CURVE_POINTS = 60


@dataclass(frozen=True)
class MechanismCell:
    """One finished cell (its seeds together): the final metric per seed and the last epoch's telemetry per seed
    (NaN where a seed's history lacks the field)."""

    variant: str
    params: dict[str, Any]
    seeds: tuple[int, ...]
    trials: tuple[int, ...]
    values: tuple[float, ...]
    theory: tuple[float, ...]
    measured: tuple[float, ...]
    weight_norm: tuple[float, ...]

    def angle(self, which: Angle) -> float | None:
        """The geometric mean over seeds of the chosen angle (None when no seed has a positive one)."""
        a = np.asarray(self.theory if which == "theory" else self.measured)
        ok = np.isfinite(a) & (a > 0)
        return float(np.exp(np.log(a[ok]).mean())) if ok.any() else None

    @property
    def value(self) -> float:
        return float(np.mean(self.values))

    @property
    def value_se(self) -> float | None:
        """The standard error of `value` over seeds (None with one seed)."""
        return float(np.std(self.values, ddof=1) / math.sqrt(len(self.values))) if len(self.values) >= 2 else None

    def to_dict(self) -> dict[str, Any]:
        def listed(values: Sequence[float]) -> list[float | None]:
            return [float(v) if math.isfinite(v) else None for v in values]

        return {"variant": self.variant, "params": self.params, "seeds": list(self.seeds),
                "trials": list(self.trials), "value": self.value, "value_se": self.value_se,
                "values": listed(self.values), "angle_theory": self.angle("theory"),
                "angle_measured": self.angle("measured"), "theory": listed(self.theory),
                "measured": listed(self.measured), "weight_norm": listed(self.weight_norm)}


@dataclass(frozen=True)
class Collapse:
    """One variant pair (at one facet value): its cells, the fits against log(angle) and the collapse score."""

    key: str  # 'sgd|sgdw', or 'sgd|sgdw/schedule=step'
    variants: tuple[str, str]
    facet: Facet | None
    metric: str
    angle: Angle
    cells: tuple[MechanismCell, ...]
    used: dict[str, int]  # per variant: cells with a value and a positive angle (what the fits see)
    score: float | None = None
    score_ci: tuple[float, float] | None = None
    r2_joint: float | None = None
    r2_joint_ci: tuple[float, float] | None = None
    r2_separate: float | None = None
    r2_separate_ci: tuple[float, float] | None = None
    overlap: float | None = None  # share of the narrower variant's log-angle range the other's range covers
    method: str | None = None
    # Fitted curves to draw: 'joint' and each variant -> (angles, metric values)
    curves: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        pair = " vs ".join(variant_label(v) for v in self.variants)
        return pair if self.facet is None else f"{pair} · {self.facet.label}"

    @property
    def telemetry(self) -> bool:
        """Whether any cell of the pair recorded the chosen angle at all."""
        return any(c.angle(self.angle) is not None for c in self.cells)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "variants": list(self.variants), "label": self.label,
                "facet": None if self.facet is None else self.facet.label, "metric": self.metric,
                "angle": self.angle, "field": ANGLES[self.angle], "telemetry": self.telemetry,
                "used": self.used, "score": self.score, "score_ci": _listed(self.score_ci),
                "r2_joint": self.r2_joint, "r2_joint_ci": _listed(self.r2_joint_ci),
                "r2_separate": self.r2_separate, "r2_separate_ci": _listed(self.r2_separate_ci),
                "overlap": self.overlap, "method": self.method,
                "curves": {k: {"angle": a, "value": v} for k, (a, v) in self.curves.items()},
                "notes": list(self.notes), "cells": [c.to_dict() for c in self.cells]}


def _listed(pair: tuple[float, float] | None) -> list[float] | None:
    return None if pair is None else [pair[0], pair[1]]


def _finite(value: Any) -> float:
    """A recorded number as a float, NaN for anything else (None, a bool, text, inf)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return math.nan
    return float(value)


def sweep_mechanism(storage: BaseStorage | str, record_name: str, spec: SweepSpec, *, metric: str | None = None,
                    angle: Angle = "theory", replicates: int = REPLICATES, seed: int = 0) -> list[Collapse]:
    """One `Collapse` per variant pair of `spec` (registry pairs, `landscape_pairs`) and facet value."""
    if angle not in ANGLES:
        raise ValueError(f"unknown angle {angle!r}; choose one of {', '.join(ANGLES)}")
    metric = metric or spec.metric
    storage = as_storage(storage)
    pairs = [(left, right) for left, right in landscape_pairs(spec.variants) if right is not None]
    out = []
    for facet in spec.facets():
        for left, right in pairs:
            cells = [c for v in (left, right) for c in _study_cells(storage, record_name, spec, v, facet, metric)]
            out.append(collapse(cells, (left, right), metric=metric, angle=angle, facet=facet,
                                replicates=replicates, seed=seed))
    return out


def _study_cells(storage: BaseStorage, record_name: str, spec: SweepSpec, variant: str, facet: Facet | None,
                 metric: str) -> list[MechanismCell]:
    try:
        study_id = storage.get_study_id_from_name(study_name(record_name, variant, facet))
    except KeyError:
        return []
    # Finished trials only: a stopped (pruned) one ended earlier in its schedule, so neither its metric nor its
    # angle is comparable with the others'; diverged ones have neither.
    trials = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.COMPLETE,))
    groups: dict[tuple[Any, ...], list[tuple[int, int, float, dict[str, Any]]]] = {}
    for trial in trials:
        attrs = trial.user_attrs
        if attrs.get(Attr.DIVERGED) is True:
            continue
        value = _finite(attrs.get(metric))
        if math.isnan(value) and metric == spec.metric and trial.value is not None:
            value = _finite(trial.value)
        if math.isnan(value):
            continue
        history = attrs.get(Attr.HISTORY)
        entries = [e for e in history if isinstance(e, dict) and math.isfinite(_finite(e.get("epoch")))] \
            if isinstance(history, list) else []
        last = max(entries, key=lambda e: e["epoch"], default={})
        params = {axis: trial.params.get(axis) for axis in spec.swept_axes}
        groups.setdefault(tuple(params.values()), []).append(
            (int(attrs.get(Attr.SEED, 0)), trial.number, value, last))
    cells = []
    for key, members in sorted(groups.items(), key=lambda item: tuple(_order(v) for v in item[0])):
        members.sort()
        cells.append(MechanismCell(
            variant=variant, params=dict(zip(spec.swept_axes, key)), seeds=tuple(m[0] for m in members),
            trials=tuple(m[1] for m in members), values=tuple(m[2] for m in members),
            theory=tuple(_finite(m[3].get(ANGLES["theory"])) for m in members),
            measured=tuple(_finite(m[3].get(ANGLES["measured"])) for m in members),
            weight_norm=tuple(_finite(m[3].get("weight_norm")) for m in members)))
    return cells


def _order(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, (int, float)) else (1, str(value))


def _no_closed_form(variant: str) -> bool:
    # Mirrors hpscape.workers.mechanism.has_closed_form (which needs torch): L2 inside an adaptive step is rescaled
    # per coordinate by the gradient's statistics, so no equilibrium formula is known and the trainer records None.
    spec = get_variant(variant)
    return spec.decay == "l2" and "momentum" not in spec.hyperparameters


def collapse(cells: Sequence[MechanismCell], variants: tuple[str, str], *, metric: str, angle: Angle = "theory",
             facet: Facet | None = None, replicates: int = REPLICATES, seed: int = 0) -> Collapse:
    """The collapse of `cells` (both variants') onto one curve of `metric` against log(`angle`); see the module."""
    key = "|".join(variants) + ("" if facet is None else f"/{facet.label}")
    mine = [c for c in cells if c.variant in variants]
    points = {v: [(math.log(a), c.value) for c in mine if c.variant == v for a in [c.angle(angle)] if a is not None]
              for v in variants}
    used = {v: len(points[v]) for v in variants}
    base = dict(key=key, variants=variants, facet=facet, metric=metric, angle=angle, cells=tuple(mine), used=used)
    field_name = ANGLES[angle]
    notes: list[str] = []
    if mine and not any(np.isfinite(getattr(c, angle)).any() for c in mine):
        other = "measured" if angle == "theory" else "theory"
        has_other = any(np.isfinite(getattr(c, other)).any() for c in mine)
        notes.append(f"this record has no telemetry: no trial's history holds {field_name}" + (
            f" (it has {ANGLES[other]}: try angle={other})" if has_other else
            " (it was written before the trainer measured the weights' angles)"))
        return Collapse(**base, notes=tuple(notes))
    if not mine:
        return Collapse(**base, notes=("no finished cell yet: the view fills in as the sweep runs",))
    for v in variants:
        zero = sum(1 for c in mine if c.variant == v and c.angle(angle) is None
                   and np.isfinite(getattr(c, angle)).any())
        if zero:
            notes.append(f"{variant_label(v)}: {zero} cell(s) with a zero angle (no decay) left out: a log axis has "
                         "no 0")
        if used[v] == 0 and angle == "theory" and _no_closed_form(v):
            notes.append(f"{variant_label(v)}: L2 inside an adaptive step has no closed-form equilibrium angle; "
                         "use the measured angle (angle=measured)")
    short = [v for v in variants if used[v] < MIN_CELLS or len({round(x, 9) for x, _ in points[v]}) < MIN_ANGLES]
    if short:
        notes.append("too few cells for a collapse score: " + ", ".join(
            f"{variant_label(v)} has {used[v]} with an angle ({len({round(x, 9) for x, _ in points[v]})} distinct)"
            for v in short) + f"; it needs {MIN_CELLS} cells and {MIN_ANGLES} distinct angles per variant")
        return Collapse(**base, notes=tuple(notes))

    x = np.array([p[0] for v in variants for p in points[v]])
    y = np.array([p[1] for v in variants for p in points[v]])
    group = np.array([i for i, v in enumerate(variants) for _ in points[v]])
    centre = float(x.mean())  # centred, so that x and x² are not nearly collinear in the fits
    estimate = _scores(x - centre, y, group, np.ones((1, x.size)))
    score, r2_joint, r2_sep = (float(s[0]) for s in estimate)
    out: dict[str, Any] = {}
    if not math.isfinite(score):
        notes.append("the separate fits explain nothing of the cells' spread: no collapse score")
        return Collapse(**base, notes=tuple(notes))
    out.update(score=score, r2_joint=r2_joint, r2_separate=r2_sep)
    if r2_sep < _WEAK_R2:
        notes.append(f"the angle explains little of either variant's values (R² of the separate fits "
                     f"{r2_sep:.2f}): a score near 1 then says little")
    ranges = [(x[group == i].min(), x[group == i].max()) for i in range(2)]
    shared = min(ranges[0][1], ranges[1][1]) - max(ranges[0][0], ranges[1][0])
    narrower = min(r[1] - r[0] for r in ranges)
    out["overlap"] = float(max(shared, 0.0) / narrower) if narrower > 0 else 0.0
    if shared <= 0:
        notes.append("the two variants' angles do not overlap: one curve through both is weakly constrained, read "
                     "the score with care")
    weights = _resample(group, replicates, np.random.default_rng(seed))
    boot = _scores(x - centre, y, group, weights)
    for name, values, est in zip(("score", "r2_joint", "r2_separate"), boot, (score, r2_joint, r2_sep)):
        ci = interval(values, f"the {name.replace('_', ' ')}", notes if name == "score" else [], None, 1.0)
        # A percentile interval that misses its own estimate (a skewed bootstrap near the bound 1): widen to it.
        out[f"{name}_ci"] = None if ci is None else (min(ci[0], est), max(ci[1], est))
    if out["score_ci"] is None:
        notes.append("no interval: too few bootstrap replicates had enough distinct angles")
    out["method"] = f"bootstrap over cells ({replicates} replicates, each variant's cells resampled)"
    out["curves"] = _curves(x, y, group, variants, centre)
    return Collapse(**base, **out, notes=tuple(notes))


def _resample(group: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap weights (count, cells): how often each cell is drawn, each variant's cells drawn among themselves."""
    weights = np.zeros((count, group.size))
    for g in np.unique(group):
        members = np.flatnonzero(group == g)
        picks = rng.integers(0, members.size, size=(count, members.size))
        np.add.at(weights, (np.arange(count)[:, None], members[picks]), 1.0)
    return weights


def _fit(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least-squares quadratics in x, one per row of `w`: (coefficients (R, 3), SSE (R,)).

    A replicate with fewer than three distinct x among its drawn cells has no unique quadratic: NaN."""
    design = np.stack([np.ones_like(x), x, x * x], axis=1)  # (n, 3)
    a = np.einsum("rn,ni,nj->rij", w, design, design)
    b = np.einsum("rn,ni,n->ri", w, design, y)
    distinct = np.array([np.unique(np.round(x[row > 0], 9)).size for row in w])
    ok = distinct >= MIN_ANGLES
    coef = np.full((w.shape[0], 3), np.nan)
    if ok.any():
        coef[ok] = np.linalg.solve(a[ok], b[ok][..., None])[..., 0]
    resid = y[None, :] - coef @ design.T
    return coef, np.sum(w * resid * resid, axis=1)


def _scores(x: np.ndarray, y: np.ndarray, group: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, ...]:
    """(score, R²_joint, R²_sep) per row of bootstrap weights `w`."""
    total = w.sum(axis=1)
    mean = (w * y).sum(axis=1) / total
    ss = np.sum(w * (y[None, :] - mean[:, None]) ** 2, axis=1)
    _, sse_joint = _fit(x, y, w)
    sse_sep = sum(_fit(x, y, np.where(group[None, :] == g, w, 0.0))[1] for g in np.unique(group))
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        explained = ss - sse_sep
        # Rounding can leave SSE_joint a hair below SSE_sep on a perfect collapse: clip to the score's [0, 1].
        score = np.where(explained > 1e-12 * np.maximum(ss, 1e-300),
                         np.clip((ss - sse_joint) / explained, 0.0, 1.0), np.nan)
        return score, 1 - sse_joint / ss, 1 - sse_sep / ss


def _curves(x: np.ndarray, y: np.ndarray, group: np.ndarray, variants: tuple[str, str],
            centre: float) -> dict[str, tuple[list[float], list[float]]]:
    """The fitted quadratics sampled over the log-angle range each one was fitted on."""
    out = {}
    for name, member in (("joint", np.ones_like(group, dtype=bool)), *((v, group == i) for i, v in
                                                                       enumerate(variants))):
        coef, _ = _fit(x - centre, y, member[None, :].astype(float))
        grid = np.linspace(x[member].min(), x[member].max(), _CURVE_POINTS)
        fitted = np.polynomial.polynomial.polyval(grid - centre, coef[0])
        out[name] = ([float(v) for v in np.exp(grid)], [float(v) for v in fitted])
    return out

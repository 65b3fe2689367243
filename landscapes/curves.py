"""Learning curves per cell, over seeds: what Figures 3 and 4 plot, read from the trials' per-epoch history.

    curves = sweep_curves(storage, "quick-fig4", spec)
    curves[0].mean("test_error")     # per epoch, over the cell's seeds
    anytime_speedups(curves, "test_loss")

A cell here is one grid point of one study (variant and facet value), its seeds together. Only sweeps with few
cells per study have curves worth drawing (`MAX_CURVE_CELLS`); the landscape view serves the others.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from .keys import Facet, study_name
from .record.attrs import Attr
from .record.storage import as_storage
from .record.studies import study_key
from .spec import SweepSpec
from .vocabulary import LANDSCAPE_METRICS

__all__ = ["MAX_CURVE_CELLS", "AnytimeSpeedup", "CellCurves", "anytime_speedups", "at_train_loss", "restart_epochs",
           "sweep_curves"]

MAX_CURVE_CELLS = 12  # per study (Figure 3 has 12): a figure with more lines than this is a landscape's job
_STATES = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.PRUNED)


@dataclass(frozen=True, eq=False)
class CellCurves:
    """One cell's per-epoch metrics, one row per seed (NaN where a seed has no value at that epoch)."""

    key: str  # the study key, 'sgdw/schedule=warm_restarts'
    variant: str
    facet: Facet | None
    params: dict[str, Any]  # the cell's swept values
    seeds: tuple[int, ...]
    trials: tuple[int, ...]
    epochs: np.ndarray  # 1..the longest recorded epoch
    values: dict[str, np.ndarray] = field(default_factory=dict)  # metric -> (seeds, epochs)

    @property
    def label(self) -> str:
        return ", ".join(f"{name} {_short(value)}" for name, value in self.params.items())

    def mean(self, metric: str) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an epoch no seed reached: NaN
            return np.nanmean(self.values[metric], axis=0)

    def std(self, metric: str) -> np.ndarray:
        """Sample std over seeds per epoch; NaN where fewer than two seeds have a value."""
        v = self.values[metric]
        n = np.isfinite(v).sum(axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.where(n >= 2, np.nanstd(v, axis=0, ddof=1), np.nan)

    def to_dict(self) -> dict[str, Any]:
        def listed(a: np.ndarray) -> list[Any]:
            return [None if not math.isfinite(x) else float(x) for x in a.tolist()]

        return {
            "key": self.key, "variant": self.variant, "facet": None if self.facet is None else self.facet.label,
            "params": self.params, "label": self.label, "seeds": list(self.seeds), "trials": list(self.trials),
            "epochs": self.epochs.tolist(),
            "metrics": {m: {"mean": listed(self.mean(m)), "std": listed(self.std(m)),
                            "seeds": [listed(row) for row in v]} for m, v in self.values.items()},
        }


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def restart_epochs(spec: SweepSpec, facet: Facet | None = None) -> list[int]:
    """The epochs after which a warm restart happens (the end of each period but the last); [] otherwise."""
    schedule = facet.value if facet is not None and facet.axis == "schedule" else spec.schedule
    if schedule != "warm_restarts":
        return []
    epochs = int(facet.value) if facet is not None and facet.axis == "epochs" else spec.max_epochs()
    ends, end, period = [], 0, spec.restart_period
    while end + period < epochs:
        end += period
        ends.append(end)
        period *= spec.restart_mult
    return ends


def sweep_curves(
    storage: BaseStorage | str,
    record_name: str,
    spec: SweepSpec,
    *,
    metrics: Sequence[str] = LANDSCAPE_METRICS,
    max_cells: int = MAX_CURVE_CELLS,
) -> list[CellCurves]:
    """Every cell's curves, study by study in the spec's order; ValueError for a sweep with too many cells."""
    unknown = [m for m in metrics if m not in LANDSCAPE_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(LANDSCAPE_METRICS)}")
    if spec.grid is not None:
        largest = max(spec.study_trials(v) // len(spec.seeds) for v in spec.variants)
        if largest > max_cells:
            raise ValueError(f"sweep {spec.name!r} has {largest} cells per study; curves are drawn for at most "
                             f"{max_cells} (use the landscape view, or a sweep over fewer cells)")
    storage = as_storage(storage)
    out: list[CellCurves] = []
    for variant, facet in spec.studies():
        try:
            study_id = storage.get_study_id_from_name(study_name(record_name, variant, facet))
        except KeyError:
            continue
        out.extend(_study_curves(storage.get_all_trials(study_id, deepcopy=False, states=_STATES), variant, facet,
                                 spec, metrics))
    if spec.grid is None and len(out) > max_cells * max(1, len(spec.studies())):
        raise ValueError(f"sweep {spec.name!r} has {len(out)} cells; curves are drawn for at most {max_cells} per "
                         "study")
    return out


def _study_curves(trials: Sequence[Any], variant: str, facet: Facet | None, spec: SweepSpec,
                  metrics: Sequence[str]) -> list[CellCurves]:
    cells: dict[tuple[Any, ...], list[Any]] = {}
    for trial in trials:
        history = trial.user_attrs.get(Attr.HISTORY)
        if not isinstance(history, list) or not history:
            continue
        params = {axis: trial.params.get(axis) for axis in spec.swept_axes}
        cells.setdefault(tuple(params.values()), []).append(trial)
    out = []
    for _, members in sorted(cells.items(), key=lambda item: tuple(_order(v) for v in item[0])):
        members.sort(key=lambda t: (t.user_attrs.get(Attr.SEED, 0), t.number))
        longest = max(int(e.get("epoch", 0)) for t in members for e in t.user_attrs[Attr.HISTORY])
        epochs = np.arange(1, longest + 1)
        values = {m: np.full((len(members), longest), np.nan) for m in metrics}
        for s, trial in enumerate(members):
            for entry in trial.user_attrs[Attr.HISTORY]:
                e = int(entry.get("epoch", 0))
                if not 1 <= e <= longest or entry.get("diverged"):
                    continue
                for m in metrics:
                    v = entry.get(m)
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                        values[m][s, e - 1] = float(v)
        out.append(CellCurves(
            key=study_key(variant, facet), variant=variant, facet=facet,
            params={axis: members[0].params.get(axis) for axis in spec.swept_axes},
            seeds=tuple(int(t.user_attrs.get(Attr.SEED, 0)) for t in members),
            trials=tuple(t.number for t in members), epochs=epochs, values=values,
        ))
    return out


def _order(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, (int, float)) else (1, str(value))


@dataclass(frozen=True)
class AnytimeSpeedup:
    """At one restart of a warm-restart run: its value, and when the single-period run first got that good."""

    variant: str
    params: dict[str, Any]
    restart_epoch: int  # the warm-restart run's epoch (the end of a period)
    value: float  # its mean over seeds there
    reference_epoch: int | None  # the first epoch the reference (one cosine period) run reached `value`; None: never
    speedup: float | None  # reference_epoch / restart_epoch; None when the reference never got there

    def to_dict(self) -> dict[str, Any]:
        return {"variant": self.variant, "params": self.params, "restart_epoch": self.restart_epoch,
                "value": self.value, "reference_epoch": self.reference_epoch, "speedup": self.speedup}


def anytime_speedups(curves: Sequence[CellCurves], spec: SweepSpec, metric: str,
                     reference: str = "cosine") -> list[AnytimeSpeedup]:
    """Figure 4's anytime comparison for a schedule-faceted sweep: at each restart of a warm_restarts cell, how
    many epochs the same cell under `reference` needed to reach the same mean `metric` (lower is better)."""
    if spec.facet is None or spec.facet.axis != "schedule":
        raise ValueError("anytime speedups compare schedules: the sweep needs a `schedule` facet with "
                         f"warm_restarts and {reference}")
    by_cell = {(c.variant, tuple(c.params.items()), c.facet.value if c.facet else None): c for c in curves}
    out = []
    for c in curves:
        if c.facet is None or c.facet.value != "warm_restarts":
            continue
        ref = by_cell.get((c.variant, tuple(c.params.items()), reference))
        if ref is None:
            continue
        ref_mean = ref.mean(metric)
        mean = c.mean(metric)
        for end in restart_epochs(spec, c.facet) + [int(c.epochs[-1])]:
            if end > mean.size or not math.isfinite(mean[end - 1]):
                continue
            value = float(mean[end - 1])
            reached = np.flatnonzero(np.isfinite(ref_mean) & (ref_mean <= value))
            first = int(reached[0]) + 1 if reached.size else None
            out.append(AnytimeSpeedup(c.variant, dict(c.params), end, value, first,
                                      None if first is None else first / end))
    return out


def at_train_loss(curve: CellCurves, level: float, metric: str) -> float | None:
    """`metric` of `curve` (means over seeds) where its training loss first falls to `level`, interpolated between
    the epochs on either side (in log training loss); None when it never gets there."""
    loss, value = curve.mean("train_loss"), curve.mean(metric)
    ok = np.isfinite(loss) & np.isfinite(value) & (loss > 0)
    loss, value = loss[ok], value[ok]
    below = np.flatnonzero(loss <= level)
    if below.size == 0:
        return None
    i = int(below[0])
    if i == 0:
        return float(value[0])
    a, b = math.log(loss[i - 1]), math.log(loss[i])
    w = 0.0 if a == b else (a - math.log(level)) / (a - b)
    return float(value[i - 1] + w * (value[i] - value[i - 1]))

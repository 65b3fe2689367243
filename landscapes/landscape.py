"""The landscape of a sweep: one metric over the (learning rate, weight decay) cells of one study.

    build_landscape(study, metric="test_error", epoch=None)          # one variant
    build_sweep_landscapes(storage, "fig2", metric="test_loss")       # every variant of a sweep

A cell holds the mean, std and n of the metric over its seeds, the summary state of its trials,
the numbers of those trials and, for cells whose trials were stopped early, the budget (epochs)
they reached. Nothing is interpolated: a cell without a measured value stays empty (NaN).

Where values come from:
- final epoch (`epoch=None`): the trial user attrs (`test_error`, `test_loss`, `train_loss`,
  `train_error`), written by `record.finish_trial`; the objective value when the attr is absent.
- any epoch: the intermediate values, which hold only the sweep's metric (the spec's `metric`,
  read from the study user attr ``sweep_spec``). Other metrics at earlier epochs were not
  recorded, and asking for them raises `LandscapeError` saying so.

Grid sweeps use the spec's lr and weight-decay values as the axes (every spec cell appears, even
before it runs). Bayesian sweeps (scattered points) are binned onto a log2 grid; an optional
kernel-smoothed surface is attached as `Landscape.model`, labelled as a model, never as data.

Trials are read once per study: with SQL straight from Optuna's tables when the storage is an
RDBStorage, else with ``get_all_trials(deepcopy=False)``. Finished trials never change in Optuna,
so their columns are cached per (database, study, view) and a repeated request (a page polling a
running sweep) reads only the trials that are new, unfinished, or finished since the last read.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import numpy as np
from optuna.storages import BaseStorage, RDBStorage
from optuna.study import Study
from optuna.trial import FrozenTrial

from .record import (
    DIVERGED_LOSS,
    DIVERGED_VALUE,
    PARAM_LR,
    PARAM_WEIGHT_DECAY,
    Attr,
    make_storage,
)
from .spec import VARIANTS, study_name

__all__ = [
    "CELL_STATES",
    "LANDSCAPE_METRICS",
    "SPEC_ATTR",
    "Landscape",
    "LandscapeError",
    "ModelSurface",
    "build_landscape",
    "build_sweep_landscapes",
    "clear_landscape_cache",
    "study_spec",
    "trial_details",
]

# The study user attr holding the SweepSpec JSON (written by workers.sweep.prepare_sweep).
SPEC_ATTR = "sweep_spec"
# Metrics a landscape can show at the final epoch (user attrs written by the worker).
LANDSCAPE_METRICS: tuple[str, ...] = ("test_error", "test_loss", "train_loss", "train_error")
# A cell's summary state, most "in progress" first: a cell with one running seed is running.
CELL_STATES: tuple[str, ...] = (
    "running",
    "queued",
    "done",
    "stopped",
    "diverged",
    "failed",
    "empty",
)

# Per-trial categories (array codes).
_DONE, _DIVERGED, _STOPPED, _RUNNING, _QUEUED, _FAILED = range(6)
_CATEGORY_NAMES = ("done", "diverged", "stopped", "running", "queued", "failed")
_STATE_CODES = {
    "COMPLETE": _DONE,
    "PRUNED": _STOPPED,
    "RUNNING": _RUNNING,
    "WAITING": _QUEUED,
    "FAIL": _FAILED,
}
# Above this many distinct values per axis, trials without a spec are treated as scattered.
_MAX_GRID_AXIS = 64
# Two floats closer than this (relative) are the same axis value (SQL round trips are exact
# for doubles, but values typed by hand into a spec may differ in the last bits).
_AXIS_RTOL = 1e-9
# Trial numbers listed per cell in `to_dict` are never truncated: the page needs them all for
# the learning curves. (A 10 000-trial study lists 10 000 numbers in total.)


class LandscapeError(ValueError):
    """A landscape cannot be built as asked (unknown metric, metric not recorded at that epoch)."""


# ---------------------------------------------------------------------------------------------
# The result


@dataclass(frozen=True, eq=False)
class ModelSurface:
    """A model-based estimate of the metric on the landscape's cells: NOT measured data.

    A Gaussian kernel smoother in log2(lr) x log2(weight decay) over the trials with a value;
    cells with no trial within two bandwidths stay NaN (no extrapolation).
    """

    mean: np.ndarray
    bandwidth_octaves: float
    n_points: int
    label: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "gaussian_kernel_smoother",
            "label": self.label,
            "bandwidth_octaves": self.bandwidth_octaves,
            "n_points": self.n_points,
            "mean": _nan_to_none(self.mean),
        }


@dataclass(frozen=True, eq=False)
class Landscape:
    """One metric over the lr (rows, ascending) x weight decay (columns, ascending) cells."""

    sweep: str
    variant: str
    metric: str
    epoch: int | None  # None: the final epoch
    kind: Literal["grid", "binned"]
    spec_metric: str  # what the intermediate values (and the objective) hold
    epochs: int | None  # the spec's epoch budget, if known
    lr: np.ndarray  # row values (bin centres when binned)
    weight_decay: np.ndarray  # column values; a 0 column comes first
    mean: np.ndarray  # (rows, cols); NaN: no measured value (empty, running, diverged...)
    std: np.ndarray  # sample std over seeds; NaN where n < 2
    n: np.ndarray  # trials with a measured value
    count: np.ndarray  # all trials in the cell
    n_diverged: np.ndarray  # trials diverged (by this epoch)
    state: np.ndarray  # summary state per cell, one of CELL_STATES
    state_counts: dict[str, np.ndarray]  # per trial category (done, diverged, ...), counts
    budget: np.ndarray  # epochs reached by the cell's stopped-early trials (0: none)
    trials: list[list[list[int]]]  # trial numbers per cell
    notes: tuple[str, ...] = ()
    model: ModelSurface | None = None
    value_source: str = ""
    points: dict[str, np.ndarray] = field(default_factory=dict)  # binned: the raw trials

    @property
    def shape(self) -> tuple[int, int]:
        return self.mean.shape  # type: ignore[return-value]

    @property
    def diverged(self) -> np.ndarray:
        """Cells whose only outcome is divergence: marked on the plot, kept out of its colours."""
        return (self.n == 0) & (self.n_diverged > 0)

    @property
    def n_trials(self) -> int:
        return int(self.count.sum())

    def best_cells(self, k: int = 10) -> list[tuple[int, int]]:
        """The (row, col) of the `k` cells with the lowest mean, best first (ties: lower lr, wd)."""
        flat = self.mean.ravel()
        finite = np.flatnonzero(np.isfinite(flat))
        order = finite[np.lexsort((finite, flat[finite]))][:k]
        cols = self.mean.shape[1]
        return [(int(i // cols), int(i % cols)) for i in order]

    def cell_index(self, lr: float, weight_decay: float) -> tuple[int, int]:
        """The (row, col) of the cell holding (lr, weight_decay); KeyError if there is none."""
        row = _lookup(self.lr, lr, "lr")
        col = _lookup(self.weight_decay, weight_decay, "weight_decay")
        return row, col

    def progress(self) -> dict[str, int]:
        """Trials per category over the whole study (done, diverged, stopped, running, ...)."""
        return {name: int(counts.sum()) for name, counts in self.state_counts.items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: lists of lists, NaN as None, cells indexed [row][col]."""
        return {
            "sweep": self.sweep,
            "variant": self.variant,
            "study": f"{self.sweep}/{self.variant}",
            "metric": self.metric,
            "epoch": self.epoch,
            "epochs": self.epochs,
            "kind": self.kind,
            "spec_metric": self.spec_metric,
            "value_source": self.value_source,
            "lr": [float(v) for v in self.lr],
            "weight_decay": [float(v) for v in self.weight_decay],
            "mean": _nan_to_none(self.mean),
            "std": _nan_to_none(self.std),
            "n": self.n.tolist(),
            "count": self.count.tolist(),
            "n_diverged": self.n_diverged.tolist(),
            "diverged": self.diverged.tolist(),
            "state": self.state.tolist(),
            "state_counts": {k: v.tolist() for k, v in self.state_counts.items()},
            "budget": self.budget.tolist(),
            "trials": self.trials,
            "best": [list(cell) for cell in self.best_cells(10)],
            "progress": self.progress(),
            "n_trials": self.n_trials,
            "notes": list(self.notes),
            "model": None if self.model is None else self.model.to_dict(),
        }


def _lookup(axis: np.ndarray, value: float, what: str) -> int:
    hits = np.flatnonzero(np.isclose(axis, value, rtol=_AXIS_RTOL, atol=0.0))
    if hits.size == 0:
        raise KeyError(f"{what}={value!r} is not on this landscape's axis {axis.tolist()}")
    return int(hits[0])


def _nan_to_none(array: np.ndarray) -> list[Any]:
    # tolist() then a cheap scan: much faster than np.where(..., None) on object arrays.
    out = array.tolist()
    if array.ndim == 1:
        return [None if v != v else v for v in out]
    return [[None if v != v else v for v in row] for row in out]


# ---------------------------------------------------------------------------------------------
# The spec stored with the studies


def study_spec(study: Study) -> dict[str, Any] | None:
    """The SweepSpec JSON stored in the study's user attr ``sweep_spec`` (None if absent)."""
    spec = study.user_attrs.get(SPEC_ATTR)
    return spec if isinstance(spec, dict) else None


def _spec_axes(spec: Mapping[str, Any] | None, variant: str) -> tuple[list[float], list[float]] | None:
    grid = spec.get("grid") if spec else None
    if not isinstance(grid, Mapping):
        return None
    lr = grid.get("lr")
    if isinstance(lr, Mapping):
        lr = lr.get(variant)
    wd = grid.get("weight_decay")
    if not isinstance(lr, list) or not isinstance(wd, list):
        return None
    try:
        return [float(v) for v in lr], [float(v) for v in wd]
    except (TypeError, ValueError):
        return None


def _spec_bayes_ranges(
    spec: Mapping[str, Any] | None,
) -> tuple[tuple[float, float], tuple[float, float]] | None:
    bayes = spec.get("bayes") if spec else None
    if not isinstance(bayes, Mapping):
        return None
    try:
        lr = (float(bayes["lr"][0]), float(bayes["lr"][1]))
        wd = (float(bayes["weight_decay"][0]), float(bayes["weight_decay"][1]))
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return lr, wd


# ---------------------------------------------------------------------------------------------
# Reading trials: one set of numpy columns per study


@dataclass
class _Columns:
    trial_id: np.ndarray  # int64 (storage ids; the trial number where the storage has none)
    number: np.ndarray  # int64
    category: np.ndarray  # int8, _DONE ...
    lr: np.ndarray  # float64, NaN if missing
    wd: np.ndarray  # float64
    value: np.ndarray  # float64: the metric at this view (NaN: none)
    diverged: np.ndarray  # bool: diverged at this view
    epochs_done: np.ndarray  # int64 (0 if unknown)

    def take(self, index: np.ndarray) -> _Columns:
        return _Columns(*(getattr(self, f.name)[index] for f in fields(self)))

    @staticmethod
    def concat(parts: Sequence[_Columns]) -> _Columns:
        return _Columns(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(_Columns)))


@dataclass(frozen=True)
class _View:
    """Where a value comes from: a user attr at the final epoch, or the intermediate value."""

    metric: str
    epoch: int | None  # None: final epoch (user attrs)
    spec_metric: str

    @property
    def diverged_value(self) -> float:
        return DIVERGED_VALUE if self.spec_metric.endswith("error") else DIVERGED_LOSS


def _backend(storage: BaseStorage) -> BaseStorage:
    return getattr(storage, "_backend", storage)


def _read_columns(storage: BaseStorage, study_id: int, view: _View) -> _Columns:
    backend = _backend(storage)
    if isinstance(backend, RDBStorage):
        return _FINISHED_CACHE.read(backend, study_id, view)
    return _read_frozen(storage.get_all_trials(study_id, deepcopy=False), view)


# One row per trial; the LEFT JOINs are index lookups on Optuna's (trial_id, key) constraints.
# Every value spliced in is an integer or one of our own constant names (see `_literal`), so the
# queries run on the raw DB-API cursor: building SQLAlchemy rows costs more than the query itself.
_SQL_FINAL = """
SELECT t.trial_id, t.number, t.state, lr.param_value, wd.param_value, v.value, v.value_type,
       m.value_json, dv.value_json, ed.value_json
FROM trials t
LEFT JOIN trial_params lr ON lr.trial_id = t.trial_id AND lr.param_name = {lr}
LEFT JOIN trial_params wd ON wd.trial_id = t.trial_id AND wd.param_name = {wd}
LEFT JOIN trial_values v ON v.trial_id = t.trial_id AND v.objective = 0
LEFT JOIN trial_user_attributes m ON m.trial_id = t.trial_id AND m.key = {metric}
LEFT JOIN trial_user_attributes dv ON dv.trial_id = t.trial_id AND dv.key = {diverged}
LEFT JOIN trial_user_attributes ed ON ed.trial_id = t.trial_id AND ed.key = {epochs_done}
WHERE t.study_id = {study_id}"""

_SQL_EPOCH = """
SELECT t.trial_id, t.number, t.state, lr.param_value, wd.param_value, iv.intermediate_value,
       iv.intermediate_value_type, NULL, dv.value_json, ed.value_json
FROM trials t
LEFT JOIN trial_params lr ON lr.trial_id = t.trial_id AND lr.param_name = {lr}
LEFT JOIN trial_params wd ON wd.trial_id = t.trial_id AND wd.param_name = {wd}
LEFT JOIN trial_intermediate_values iv ON iv.trial_id = t.trial_id AND iv.step = {epoch}
LEFT JOIN trial_user_attributes dv ON dv.trial_id = t.trial_id AND dv.key = {diverged}
LEFT JOIN trial_user_attributes ed ON ed.trial_id = t.trial_id AND ed.key = {epochs_done}
WHERE t.study_id = {study_id}"""
# The trials that may have changed since the last read: unfinished now, new, or unfinished before.
_SQL_CHANGED = " AND (t.state NOT IN ('COMPLETE', 'PRUNED', 'FAIL') OR t.trial_id > {max_id} OR t.trial_id IN ({prev}))"
_SQL_COUNT = "SELECT COUNT(*) FROM trials WHERE study_id = {study_id}"
_SAFE_NAME = frozenset({PARAM_LR, PARAM_WEIGHT_DECAY, Attr.DIVERGED, Attr.EPOCHS_DONE, *LANDSCAPE_METRICS})

# Optuna stores +-inf (and NaN for intermediate values) as NULL with a type tag.
_STORED_SPECIAL = {"INF_POS": math.inf, "INF_NEG": -math.inf, "NAN": math.nan}


def _literal(value: str | int) -> str:
    """An SQL literal for a whitelisted name or an integer (nothing else is ever spliced in)."""
    if isinstance(value, str):
        if value not in _SAFE_NAME:
            raise LandscapeError(f"unknown metric {value!r}; choose one of {', '.join(LANDSCAPE_METRICS)}")
        return f"'{value}'"
    return str(int(value))


def _state_name(value: Any) -> str:
    return str(getattr(value, "name", value))


def _json_float(raw: str | None) -> float:
    if raw is None or raw == "null":
        return math.nan
    try:
        return float(raw)  # JSON numbers, and Python's json "NaN"/"Infinity"
    except ValueError:
        loaded = json.loads(raw)
        return float(loaded) if isinstance(loaded, (int, float)) and not isinstance(loaded, bool) else math.nan


def _json_floats(raw: Sequence[str | None]) -> np.ndarray:
    """JSON-encoded numbers (or null) to float64, in one numpy pass when they are all numbers."""
    array = np.array(raw, dtype=object)
    missing = np.equal(array, None) | (array == "null")
    try:
        return np.where(missing, "nan", array).astype(np.float64)
    except ValueError:  # something other than a number (a string, a boolean): parse one by one
        return np.array([_json_float(v) for v in raw], dtype=np.float64)


def _stored_floats(values: Sequence[float | None], kinds: Sequence[Any]) -> np.ndarray:
    out = np.array(values, dtype=np.float64)  # None -> NaN
    for i in np.flatnonzero(np.isnan(out)):
        out[i] = _STORED_SPECIAL.get(_state_name(kinds[i]), math.nan)
    return out


def _fetch(backend: RDBStorage, sql: str) -> list[tuple[Any, ...]]:
    with backend.engine.connect() as connection:
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(sql)
            return list(cursor.fetchall())
        finally:
            cursor.close()


def _query_rdb(
    backend: RDBStorage, study_id: int, view: _View, changed_since: tuple[int, np.ndarray] | None = None
) -> _Columns:
    """The columns of a study's trials straight from Optuna's tables.

    `changed_since` (max trial id seen, trial ids unfinished then) limits the read to the trials
    that may have changed: unfinished now, newer, or unfinished then.
    """
    names = {
        "lr": _literal(PARAM_LR),
        "wd": _literal(PARAM_WEIGHT_DECAY),
        "diverged": _literal(Attr.DIVERGED),
        "epochs_done": _literal(Attr.EPOCHS_DONE),
        "study_id": _literal(study_id),
    }
    if view.epoch is None:
        sql = _SQL_FINAL.format(metric=_literal(view.metric), **names)
    else:
        sql = _SQL_EPOCH.format(epoch=_literal(view.epoch), **names)
    if changed_since is not None:
        max_id, prev = changed_since
        sql += _SQL_CHANGED.format(max_id=_literal(max_id), prev=",".join(str(int(i)) for i in prev) or "-1")
    rows = _fetch(backend, sql)
    if not rows:
        return _empty_columns()
    cols = list(zip(*rows))
    n = len(rows)
    done = _json_floats(cols[9])
    return _finish_columns(
        view,
        trial_id=np.fromiter(cols[0], dtype=np.int64, count=n),
        number=np.fromiter(cols[1], dtype=np.int64, count=n),
        state=[_state_name(s) for s in cols[2]],
        lr=np.array(cols[3], dtype=np.float64),
        wd=np.array(cols[4], dtype=np.float64),
        measured=_stored_floats(cols[5], cols[6]),
        attr=_json_floats(cols[7]) if view.epoch is None else None,
        flagged=(np.array(cols[8], dtype=object) == "true").astype(bool),
        epochs_done=np.where(np.isfinite(done), done, 0).astype(np.int64),
    )


@dataclass
class _CacheEntry:
    finished: _Columns  # trials that were finished when read: Optuna never changes them again
    unfinished: np.ndarray  # trial ids unfinished at the last read
    max_id: int


class _FinishedTrialCache:
    """Per (database, study, view): the finished trials' columns, so only changes are read again.

    A poll of a 10 000-trial study then reads a count and the few trials that are running, queued,
    new or finished since the last read, instead of every trial. The count guards against a study
    replaced under the same id: if it does not add up, everything is read again.
    """

    def __init__(self, max_entries: int = 64) -> None:
        self._entries: OrderedDict[tuple[Any, ...], _CacheEntry] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_entries

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def read(self, backend: RDBStorage, study_id: int, view: _View) -> _Columns:
        key = (str(backend.engine.url), study_id, view)
        with self._lock:
            entry = self._entries.get(key)
        cols = None
        if entry is not None:
            delta = _query_rdb(backend, study_id, view, (entry.max_id, entry.unfinished))
            total = _fetch(backend, _SQL_COUNT.format(study_id=_literal(study_id)))[0][0]
            if total == entry.finished.number.size + delta.number.size:
                cols = _Columns.concat([entry.finished, delta])
        if cols is None:
            cols = _query_rdb(backend, study_id, view)
        finished = np.isin(cols.category, (_DONE, _DIVERGED, _STOPPED, _FAILED))
        new_entry = _CacheEntry(
            finished=cols.take(np.flatnonzero(finished)),
            unfinished=cols.trial_id[~finished],
            max_id=int(cols.trial_id.max()) if cols.trial_id.size else -1,
        )
        with self._lock:
            self._entries[key] = new_entry
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return cols


_FINISHED_CACHE = _FinishedTrialCache()


def clear_landscape_cache() -> None:
    """Forget the cached finished trials (the next landscape reads every trial again)."""
    _FINISHED_CACHE.clear()


def _read_frozen(trials: Sequence[FrozenTrial], view: _View) -> _Columns:
    if not trials:
        return _empty_columns()
    attr: np.ndarray | None
    if view.epoch is None:
        measured = [math.nan if t.value is None else float(t.value) for t in trials]
        attr = np.array([_attr_float(t.user_attrs.get(view.metric)) for t in trials], dtype=np.float64)
    else:
        measured = [float(t.intermediate_values.get(view.epoch, math.nan)) for t in trials]
        attr = None
    return _finish_columns(
        view,
        trial_id=np.array([t._trial_id for t in trials], dtype=np.int64),
        number=np.array([t.number for t in trials], dtype=np.int64),
        state=[t.state.name for t in trials],
        lr=np.array([float(t.params.get(PARAM_LR, math.nan)) for t in trials], dtype=np.float64),
        wd=np.array([float(t.params.get(PARAM_WEIGHT_DECAY, math.nan)) for t in trials], dtype=np.float64),
        measured=np.array(measured, dtype=np.float64),
        attr=attr,
        flagged=np.array([t.user_attrs.get(Attr.DIVERGED) is True for t in trials], dtype=bool),
        epochs_done=np.array([int(t.user_attrs.get(Attr.EPOCHS_DONE) or 0) for t in trials], dtype=np.int64),
    )


def _attr_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def _empty_columns() -> _Columns:
    return _Columns(
        trial_id=np.zeros(0, dtype=np.int64),
        number=np.zeros(0, dtype=np.int64),
        category=np.zeros(0, dtype=np.int8),
        lr=np.zeros(0),
        wd=np.zeros(0),
        value=np.zeros(0),
        diverged=np.zeros(0, dtype=bool),
        epochs_done=np.zeros(0, dtype=np.int64),
    )


def _finish_columns(
    view: _View,
    *,
    trial_id: np.ndarray,
    number: np.ndarray,
    state: list[str],
    lr: np.ndarray,
    wd: np.ndarray,
    measured: np.ndarray,
    attr: np.ndarray | None,
    flagged: np.ndarray,
    epochs_done: np.ndarray,
) -> _Columns:
    """Trial categories and the value each trial contributes at this view (NaN: none)."""
    category = np.fromiter((_STATE_CODES.get(s, _FAILED) for s in state), dtype=np.int8, count=len(state))
    complete = category == _DONE
    # A COMPLETE trial flagged diverged (or, at the final epoch, with an infinite objective).
    diverged_trial = complete & flagged
    if view.epoch is None:
        diverged_trial |= complete & np.isinf(measured)
    category[diverged_trial] = _DIVERGED
    if view.epoch is None:
        assert attr is not None
        value = attr
        if view.metric == view.spec_metric:
            # Trials recorded without metric attrs (e.g. study.add_trial) still have the objective.
            value = np.where(np.isnan(value), measured, value)
        has_final = (category == _DONE) | (category == _STOPPED)
        value = np.where(has_final, value, np.nan)
        diverged = category == _DIVERGED
    else:
        value = measured
        # A diverged run records diverged_value at the epoch it blew up and nothing after.
        blown = flagged & (np.isnan(value) | (value == view.diverged_value))
        diverged = (blown | np.isinf(value)) & (category != _QUEUED)
    value = np.where(diverged | ~np.isfinite(value), np.nan, value)
    return _Columns(trial_id, number, category, lr, wd, value, diverged, epochs_done)


# ---------------------------------------------------------------------------------------------
# Axes and aggregation


def _merge_axis(spec_values: Sequence[float], observed: np.ndarray) -> tuple[np.ndarray, bool]:
    """Sorted union of the spec's values and any observed value not among them."""
    axis = np.unique(np.asarray(spec_values, dtype=np.float64))
    seen = np.unique(observed[np.isfinite(observed)])
    extra = seen[_index_on(axis, seen) < 0]
    if extra.size:
        axis = np.unique(np.concatenate([axis, extra]))
    return axis, bool(extra.size)


def _index_on(axis: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Position of each value on a sorted axis, or -1 when it is not on it."""
    if axis.size == 0:
        return np.full(values.shape, -1, dtype=np.int64)
    pos = np.searchsorted(axis, values)
    best = np.clip(pos, 0, axis.size - 1)
    left = np.clip(pos - 1, 0, axis.size - 1)
    pick = np.where(np.abs(axis[left] - values) < np.abs(axis[best] - values), left, best)
    ok = np.isclose(axis[pick], values, rtol=_AXIS_RTOL, atol=0.0) & np.isfinite(values)
    return np.where(ok, pick, -1)


def _log2_bins(values: np.ndarray, bounds: tuple[float, float] | None, per_octave: int) -> np.ndarray:
    """Bin centres 2**(k / per_octave) covering `bounds` (or the positive values seen)."""
    positive = values[np.isfinite(values) & (values > 0)]
    if bounds is not None:
        lo, hi = bounds
    elif positive.size:
        lo, hi = float(positive.min()), float(positive.max())
    else:
        return np.zeros(0)
    if positive.size:
        lo, hi = min(lo, float(positive.min())), max(hi, float(positive.max()))
    k_lo = math.floor(math.log2(lo) * per_octave + 0.5)
    k_hi = math.floor(math.log2(hi) * per_octave + 0.5)
    return 2.0 ** (np.arange(k_lo, k_hi + 1) / per_octave)


def _bin_index(axis: np.ndarray, values: np.ndarray, per_octave: int) -> np.ndarray:
    """Bin of each value on a log2 axis (values <= 0 go to a leading 0 column if there is one)."""
    out = np.full(values.shape, -1, dtype=np.int64)
    has_zero = axis.size > 0 and axis[0] == 0.0
    log_axis = axis[1:] if has_zero else axis
    if log_axis.size:
        k0 = math.log2(log_axis[0]) * per_octave
        with np.errstate(divide="ignore", invalid="ignore"):
            k = np.floor(np.log2(values) * per_octave - k0 + 0.5)
        ok = np.isfinite(k) & (k >= 0) & (k < log_axis.size) & (values > 0)
        out[ok] = k[ok].astype(np.int64) + (1 if has_zero else 0)
    if has_zero:
        out[values == 0.0] = 0
    return out


def _aggregate(
    cols: _Columns, row: np.ndarray, col: np.ndarray, shape: tuple[int, int]
) -> dict[str, Any]:
    n_rows, n_cols = shape
    size = n_rows * n_cols
    placed = (row >= 0) & (col >= 0)
    key = np.where(placed, row * n_cols + col, 0)[placed]
    category = cols.category[placed]
    value = cols.value[placed]
    diverged = cols.diverged[placed]
    number = cols.number[placed]
    epochs_done = cols.epochs_done[placed]

    counts = {
        name: np.bincount(key[category == code], minlength=size)
        for code, name in enumerate(_CATEGORY_NAMES)
    }
    # Stopped-early trials stand for a cell only when none of its trials finished the budget.
    usable = np.isfinite(value)
    stopped = category == _STOPPED
    usable &= ~stopped | (counts["done"][key] == 0)
    n = np.bincount(key[usable], minlength=size)
    total = np.bincount(key[usable], weights=value[usable], minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, total / np.maximum(n, 1), np.nan)
        dev = np.bincount(
            key[usable], weights=(value[usable] - mean[key[usable]]) ** 2, minlength=size
        )
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
    }


# ---------------------------------------------------------------------------------------------
# Building


def _check_request(metric: str, epoch: int | None, spec_metric: str, epochs: int | None) -> int | None:
    if metric not in LANDSCAPE_METRICS:
        raise LandscapeError(
            f"unknown metric {metric!r}; choose one of {', '.join(LANDSCAPE_METRICS)}"
        )
    if epoch is None:
        return None
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
        raise LandscapeError(f"epoch must be an integer >= 1 (or omitted for the final epoch), got {epoch!r}")
    if epochs is not None and epoch > epochs:
        raise LandscapeError(
            f"epoch {epoch} is past this sweep's last epoch ({epochs}); choose 1..{epochs} or "
            "omit it for the final epoch"
        )
    if epochs is not None and epoch == epochs:
        return None  # the final epoch: every metric is recorded there
    if metric != spec_metric:
        raise LandscapeError(
            f"{metric} is not recorded at epoch {epoch}: the per-epoch values hold only this "
            f"sweep's metric ({spec_metric}); other metrics exist at the final epoch only. "
            f"Choose metric={spec_metric} for epoch {epoch}, or the final epoch for {metric}."
        )
    return epoch


def build_landscape(
    study: Study,
    *,
    metric: str = "test_error",
    epoch: int | None = None,
    bins_per_octave: int = 1,
    model: bool = False,
    model_bandwidth: float = 0.75,
) -> Landscape:
    """The landscape of `metric` (at `epoch`, or the final epoch) over one study's cells.

    Grid sweeps: the spec's lr x weight-decay values. Bayesian sweeps or studies with scattered
    points: log2 bins, `bins_per_octave` per factor of two. `model=True` attaches a kernel-smoothed
    `ModelSurface` to binned landscapes. Raises LandscapeError for an unknown metric, an epoch
    out of range, or a metric that was not recorded at that epoch.
    """
    spec = study_spec(study)
    return _build(
        study._storage, study._study_id, study.study_name, spec, metric, epoch, bins_per_octave, model,
        model_bandwidth,
    )


def build_sweep_landscapes(
    storage: BaseStorage | str,
    record_name: str,
    *,
    metric: str = "test_error",
    epoch: int | None = None,
    bins_per_octave: int = 1,
    model: bool = False,
) -> dict[str, Landscape]:
    """`build_landscape` for every study ``"<record_name>/<variant>"``, in variant order.

    Pass a storage object (`hpscape.landscapes.make_storage`) rather than a URL when calling repeatedly:
    a URL opens a new connection pool each time. An unknown sweep gives an empty dict.
    """
    if isinstance(storage, str):
        storage = make_storage(storage)
    # Study ids by name: a few indexed lookups, no Study objects (load_study reads more).
    found: dict[str, int] = {}
    for variant in VARIANTS:
        try:
            found[variant] = storage.get_study_id_from_name(study_name(record_name, variant))
        except KeyError:
            continue
    if not found:
        return {}
    # Every study of a sweep holds the same spec; read it once.
    attrs = storage.get_study_user_attrs(next(iter(found.values())))
    spec = attrs.get(SPEC_ATTR) if isinstance(attrs.get(SPEC_ATTR), dict) else None
    return {
        variant: _build(
            storage, study_id, study_name(record_name, variant), spec, metric, epoch, bins_per_octave, model, 0.75
        )
        for variant, study_id in found.items()
    }


def _build(
    storage: BaseStorage,
    study_id: int,
    name: str,
    spec: Mapping[str, Any] | None,
    metric: str,
    epoch: int | None,
    bins_per_octave: int,
    model: bool,
    model_bandwidth: float,
) -> Landscape:
    sweep, _, variant = name.rpartition("/")
    notes: list[str] = []
    spec_metric = str(spec.get("metric", "test_error")) if spec else "test_error"
    epochs = spec.get("epochs") if spec else None
    epochs = int(epochs) if isinstance(epochs, int) and not isinstance(epochs, bool) else None
    if spec is None:
        notes.append(
            f"no {SPEC_ATTR!r} on the study: axes come from the trials, and the per-epoch "
            "values are assumed to hold test_error"
        )
    if not isinstance(bins_per_octave, int) or isinstance(bins_per_octave, bool) or bins_per_octave < 1:
        raise LandscapeError(f"bins_per_octave must be an integer >= 1, got {bins_per_octave!r}")
    view_epoch = _check_request(metric, epoch, spec_metric, epochs)
    view = _View(metric, view_epoch, spec_metric)
    cols = _read_columns(storage, study_id, view)

    axes = _spec_axes(spec, variant)
    bayes = _spec_bayes_ranges(spec)
    scattered = axes is None and (
        bayes is not None
        or np.unique(cols.lr).size > _MAX_GRID_AXIS
        or np.unique(cols.wd).size > _MAX_GRID_AXIS
    )
    if scattered:
        kind: Literal["grid", "binned"] = "binned"
        lr_axis = _log2_bins(cols.lr, bayes[0] if bayes else None, bins_per_octave)
        wd_axis = _log2_bins(cols.wd, bayes[1] if bayes else None, bins_per_octave)
        if np.any(cols.wd == 0.0):
            wd_axis = np.concatenate([[0.0], wd_axis])
        row = _bin_index(lr_axis, cols.lr, bins_per_octave)
        col = _bin_index(wd_axis, cols.wd, bins_per_octave)
        notes.append(
            f"scattered trials binned onto a log2 grid ({bins_per_octave} bin(s) per factor of 2); "
            "each cell averages the trials that fell into it"
        )
    else:
        kind = "grid"
        spec_lr, spec_wd = axes if axes is not None else ([], [])
        lr_axis, extra_lr = _merge_axis(spec_lr, cols.lr)
        wd_axis, extra_wd = _merge_axis(spec_wd, cols.wd)
        if axes is not None and (extra_lr or extra_wd):
            notes.append("some trials lie off the spec's grid; their values were added as axis values")
        row = _index_on(lr_axis, cols.lr)
        col = _index_on(wd_axis, cols.wd)
    unplaced = int(np.sum((row < 0) | (col < 0)))
    if unplaced:
        notes.append(f"{unplaced} trial(s) without a usable lr/weight_decay were left out")

    agg = _aggregate(cols, row, col, (lr_axis.size, wd_axis.size))
    if view.epoch is None:
        source = f"user attr {metric!r} at the final epoch"
        if metric == spec_metric:
            source += " (the objective where the attr is missing)"
    else:
        source = f"intermediate value at epoch {view.epoch} (holds {spec_metric})"
    if np.any(agg["state_counts"]["stopped"]) and view.epoch is None:
        notes.append(
            "cells marked 'stopped' hold values at the epoch their trials were stopped "
            "(budget b), not at the final epoch"
        )

    surface = None
    if model and kind == "binned":
        surface = _kernel_surface(cols, lr_axis, wd_axis, model_bandwidth)
    elif model:
        notes.append("a model surface is only drawn for Bayesian (binned) sweeps")

    points: dict[str, np.ndarray] = {}
    if kind == "binned":
        points = {"number": cols.number, "lr": cols.lr, "weight_decay": cols.wd, "value": cols.value}
    return Landscape(
        sweep=sweep,
        variant=variant,
        metric=metric,
        epoch=epoch,
        kind=kind,
        spec_metric=spec_metric,
        epochs=epochs,
        lr=lr_axis,
        weight_decay=wd_axis,
        notes=tuple(notes),
        model=surface,
        value_source=source,
        points=points,
        **agg,
    )


def _kernel_surface(
    cols: _Columns, lr_axis: np.ndarray, wd_axis: np.ndarray, bandwidth: float
) -> ModelSurface:
    ok = np.isfinite(cols.value) & (cols.lr > 0) & (cols.wd > 0)
    x, y, v = np.log2(cols.lr[ok]), np.log2(cols.wd[ok]), cols.value[ok]
    gx = np.log2(lr_axis)
    with np.errstate(divide="ignore"):
        gy = np.log2(wd_axis)
    mean = np.full((lr_axis.size, wd_axis.size), np.nan)
    if v.size:
        # Separable Gaussian weights: (rows x points) and (cols x points), combined per cell.
        wx = np.exp(-0.5 * ((gx[:, None] - x[None, :]) / bandwidth) ** 2)
        wy = np.exp(-0.5 * ((gy[:, None] - y[None, :]) / bandwidth) ** 2)
        weight = wx @ wy.T  # sum of weights per cell
        weighted = (wx * v[None, :]) @ wy.T
        # No extrapolation: a cell needs real support (a point within about two bandwidths).
        support = weight > math.exp(-0.5 * 2.0**2)
        mean = np.where(support, weighted / np.where(support, weight, 1.0), np.nan)
        mean[:, ~np.isfinite(gy)] = np.nan  # the 0 column is not on the log scale
    label = (
        f"MODEL, not measured: Gaussian kernel smoother of {v.size} trials "
        f"(bandwidth {bandwidth:g} octave)"
    )
    return ModelSurface(mean=mean, bandwidth_octaves=bandwidth, n_points=int(v.size), label=label)


# ---------------------------------------------------------------------------------------------
# Trial details: the trial table and the learning curves of a cell


def trial_details(
    study: Study,
    numbers: Sequence[int] | None = None,
    *,
    metric: str = "test_error",
    limit: int = 20,
) -> list[dict[str, Any]]:
    """Rows for a trial table, each with its learning curve (epoch, intermediate value).

    `numbers` picks the trials (unknown numbers are skipped); without it, the `limit` finished
    trials with the lowest final `metric`. JSON-ready (NaN as None).
    """
    if metric not in LANDSCAPE_METRICS:
        raise LandscapeError(
            f"unknown metric {metric!r}; choose one of {', '.join(LANDSCAPE_METRICS)}"
        )
    spec = study_spec(study)
    spec_metric = str(spec.get("metric", "test_error")) if spec else "test_error"
    if numbers is None:
        cols = _read_columns(study._storage, study._study_id, _View(metric, None, spec_metric))
        ok = np.flatnonzero(np.isfinite(cols.value))
        order = ok[np.lexsort((cols.number[ok], cols.value[ok]))][: max(0, int(limit))]
        numbers = cols.number[order].tolist()
    storage = study._storage
    rows = []
    for number in numbers:
        try:
            trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, int(number))
        except KeyError:
            continue
        rows.append(_trial_row(storage.get_trial(trial_id), metric, spec_metric))
    return rows


def _trial_row(trial: FrozenTrial, metric: str, spec_metric: str) -> dict[str, Any]:
    attrs = trial.user_attrs
    category = _STATE_CODES.get(trial.state.name, _FAILED)
    if category == _DONE and (attrs.get(Attr.DIVERGED) is True or trial.value is None or not math.isfinite(trial.value)):
        category = _DIVERGED
    value = _attr_float(attrs.get(metric))
    if math.isnan(value) and metric == spec_metric and trial.value is not None:
        value = float(trial.value)
    if category not in (_DONE, _STOPPED):
        value = math.nan
    curve = [
        [int(step), float(v) if math.isfinite(v) else None]
        for step, v in sorted(trial.intermediate_values.items())
    ]

    def num(key: str) -> float | None:
        v = _attr_float(attrs.get(key))
        return None if math.isnan(v) else v

    return {
        "number": trial.number,
        "state": _CATEGORY_NAMES[category],
        "lr": trial.params.get(PARAM_LR),
        "weight_decay": trial.params.get(PARAM_WEIGHT_DECAY),
        "seed": attrs.get(Attr.SEED),
        "epochs_done": attrs.get(Attr.EPOCHS_DONE),
        "epochs_budget": attrs.get(Attr.EPOCHS_BUDGET),
        "value": None if math.isnan(value) else value,
        "test_error": num(Attr.TEST_ERROR),
        "test_loss": num(Attr.TEST_LOSS),
        "train_loss": num(Attr.TRAIN_LOSS),
        "train_error": num(Attr.TRAIN_ERROR),
        "error": attrs.get(Attr.ERROR),
        "curve_metric": spec_metric,
        "curve": curve,
    }

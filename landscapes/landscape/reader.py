"""Reading a study's trials as numpy columns: one read per study, finished trials cached.

Values come from one of three places (a `View`):
- ``final``: the trial's user attr `metric` at the final epoch (the objective where the attr is missing);
- ``intermediate``: the intermediate value at an epoch, which holds the sweep's metric;
- ``history``: the entry for an epoch in the trial's ``history`` user attr, which holds every metric.

On an RDBStorage the columns come from SQL over Optuna's tables (`record._optuna`); elsewhere from the public
``get_all_trials``. Finished trials never change in Optuna, so their columns are cached per (database, study,
view) and a repeated request (a page polling a running sweep) reads only the trials that are new, unfinished, or
finished since the last read.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial

from ..axes import AXIS_NAMES
from ..record import _optuna
from ..record.attrs import DIVERGED_LOSS, DIVERGED_VALUE, Attr
from ..vocabulary import LANDSCAPE_METRICS

__all__ = ["CATEGORY_NAMES", "Columns", "View", "clear_landscape_cache", "read_columns"]

# Per-trial categories (array codes).
DONE, DIVERGED, STOPPED, RUNNING, QUEUED, FAILED = range(6)
CATEGORY_NAMES = ("done", "diverged", "stopped", "running", "queued", "failed")
STATE_CODES = {"COMPLETE": DONE, "PRUNED": STOPPED, "RUNNING": RUNNING, "WAITING": QUEUED, "FAIL": FAILED}
# The only names spliced into SQL: axis names (params) and hpscape's own attr names.
_SQL_NAMES = frozenset({*AXIS_NAMES, Attr.DIVERGED, Attr.EPOCHS_DONE, Attr.SEED, Attr.HISTORY, *LANDSCAPE_METRICS})


@dataclass(frozen=True)
class View:
    """Which value of each trial a landscape shows, and which two params place it."""

    metric: str
    epoch: int | None  # None: the final epoch
    spec_metric: str
    source: Literal["final", "intermediate", "history"]
    y: str
    x: str

    @property
    def diverged_value(self) -> float:
        return DIVERGED_VALUE if self.spec_metric.endswith("error") else DIVERGED_LOSS


@dataclass
class Columns:
    trial_id: np.ndarray  # int64 (storage ids)
    number: np.ndarray  # int64
    category: np.ndarray  # int8, DONE ...
    y: np.ndarray  # float64, NaN if missing
    x: np.ndarray  # float64
    value: np.ndarray  # float64: the metric at this view (NaN: none)
    diverged: np.ndarray  # bool: diverged at this view
    epochs_done: np.ndarray  # int64 (0 if unknown)
    seed: np.ndarray  # int64 (-1 if unknown)

    def take(self, index: np.ndarray) -> Columns:
        return Columns(*(getattr(self, f.name)[index] for f in fields(self)))

    @staticmethod
    def concat(parts: Sequence[Columns]) -> Columns:
        return Columns(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Columns)))

    @staticmethod
    def empty() -> Columns:
        ints, floats = np.zeros(0, dtype=np.int64), np.zeros(0)
        return Columns(ints, ints, np.zeros(0, dtype=np.int8), floats, floats, floats, np.zeros(0, dtype=bool),
                       ints, ints)


def read_columns(storage: BaseStorage, study_id: int, view: View) -> Columns:
    backend = _optuna.rdb_backend(storage)
    if backend is not None:
        return _CACHE.read(backend, study_id, view)
    return _from_frozen(storage.get_all_trials(study_id, deepcopy=False), view)


# ---------------------------------------------------------------------------------------------
# Decoding stored values


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
        out[i] = _optuna.STORED_SPECIAL.get(_state_name(kinds[i]), math.nan)
    return out


def _seed(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else -1


def _int_attr(raw: Sequence[str | None]) -> np.ndarray:
    """JSON-encoded seeds to int64 (-1 where missing)."""
    values = _json_floats(raw)
    return np.where(np.isfinite(values), values, -1).astype(np.int64)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def _history_entries(histories: Sequence[Any], view: View) -> tuple[np.ndarray, np.ndarray]:
    """(value of the view's metric, diverged flag) at the view's epoch, from each trial's history."""
    values = np.full(len(histories), math.nan)
    blown = np.zeros(len(histories), dtype=bool)
    assert view.epoch is not None
    for i, history in enumerate(histories):
        if isinstance(history, str):
            history = json.loads(history)
        if not isinstance(history, list) or len(history) < view.epoch:
            continue
        entry = history[view.epoch - 1]
        if isinstance(entry, dict):
            values[i] = _number(entry.get(view.metric))
            blown[i] = bool(entry.get(Attr.DIVERGED))
    return values, blown


# ---------------------------------------------------------------------------------------------
# From SQL


def _sql(study_id: int, view: View) -> str:
    name = lambda value: _optuna.literal(value, _SQL_NAMES)  # noqa: E731
    if view.source == "final":
        value_from, value_key = "final", name(view.metric)
    elif view.source == "intermediate":
        value_from, value_key = "intermediate", name(int(view.epoch or 0))
    else:
        value_from, value_key = "attr", name(Attr.HISTORY)
    return _optuna.trial_columns_sql(
        study_id=name(int(study_id)), y=name(view.y), x=name(view.x), value_from=value_from, value_key=value_key,
        epochs_done=name(Attr.EPOCHS_DONE), diverged=name(Attr.DIVERGED), seed=name(Attr.SEED),
    )


def _from_sql(backend: RDBStorage, study_id: int, view: View,
              changed_since: tuple[int, np.ndarray] | None = None) -> Columns:
    """The columns of a study's trials straight from Optuna's tables.

    `changed_since` (max trial id seen, trial ids unfinished then) limits the read to the trials that may have
    changed: unfinished now, newer, or unfinished then.
    """
    sql = _sql(study_id, view)
    if changed_since is not None:
        max_id, prev = changed_since
        sql += _optuna.CHANGED_SQL.format(max_id=int(max_id), prev=",".join(str(int(i)) for i in prev) or "-1")
    if view.source != "history":
        packed = _optuna.packed_columns_sql(sql, backend.engine.dialect.name, STATE_CODES, FAILED)
        cols = None if packed is None else _from_packed(_optuna.fetch(backend, packed)[0], view)
        if cols is not None:
            return cols
    rows = _optuna.fetch(backend, sql)
    if not rows:
        return Columns.empty()
    cols = list(zip(*rows))
    n = len(rows)
    done = _json_floats(cols[9])
    if view.source == "history":
        measured, attr_blown = _history_entries(cols[7], view)
        attr = None
    else:
        measured, attr_blown = _stored_floats(cols[5], cols[6]), None
        attr = _json_floats(cols[7]) if view.source == "final" else None
    return _finish(
        view,
        trial_id=np.fromiter(cols[0], dtype=np.int64, count=n),
        number=np.fromiter(cols[1], dtype=np.int64, count=n),
        state=[_state_name(s) for s in cols[2]],
        y=np.array(cols[3], dtype=np.float64),
        x=np.array(cols[4], dtype=np.float64),
        measured=measured,
        attr=attr,
        flagged=(np.array(cols[8], dtype=object) == "true").astype(bool),
        history_blown=attr_blown,
        epochs_done=np.where(np.isfinite(done), done, 0).astype(np.int64),
        seed=_int_attr(cols[10]),
    )


def _from_packed(row: tuple[Any, ...], view: View) -> Columns | None:
    """The columns from `packed_columns_sql`'s one row; None when a column does not parse (read rows instead)."""
    count = int(row[0])
    if count == 0:
        return Columns.empty()

    def parse(text: str | None, dtype: type) -> np.ndarray:
        values = np.fromstring(text or "", sep=",", dtype=dtype)  # C parsing; ValueError on anything else
        if values.size != count:
            raise ValueError(f"{values.size} values for {count} trials")
        return values

    try:
        trial_id, number, category = parse(row[1], np.int64), parse(row[2], np.int64), parse(row[3], np.int64)
        y, x, measured, attr = (parse(text, np.float64) for text in row[4:8])
        flagged, done, seed = parse(row[8], np.int64) == 1, parse(row[9], np.float64), parse(row[10], np.float64)
    except ValueError:
        return None
    return _finish(
        view, trial_id=trial_id, number=number, state=category.astype(np.int8), y=y, x=x, measured=measured,
        attr=attr if view.source == "final" else None, flagged=flagged, history_blown=None,
        epochs_done=np.where(np.isfinite(done), done, 0).astype(np.int64),
        seed=np.where(np.isfinite(seed), seed, -1).astype(np.int64),
    )


@dataclass
class _CacheEntry:
    finished: Columns  # trials that were finished when read: Optuna never changes them again
    unfinished: np.ndarray  # trial ids unfinished at the last read
    max_id: int


class _FinishedTrialCache:
    """Per (database, study, view): the finished trials' columns, so only changes are read again.

    A poll of a 10 000-trial study then reads a count and the few trials that are running, queued, new or
    finished since the last read, instead of every trial. The count guards against a study replaced under the
    same id: if it does not add up, everything is read again.
    """

    def __init__(self, max_entries: int = 64) -> None:
        self._entries: OrderedDict[tuple[Any, ...], _CacheEntry] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_entries

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def read(self, backend: RDBStorage, study_id: int, view: View) -> Columns:
        key = (str(backend.engine.url), study_id, view)
        with self._lock:
            entry = self._entries.get(key)
        cols = None
        if entry is not None:
            delta = _from_sql(backend, study_id, view, (entry.max_id, entry.unfinished))
            total = _optuna.fetch(backend, _optuna.count_sql(study_id))[0][0]
            if total == entry.finished.number.size + delta.number.size:
                cols = Columns.concat([entry.finished, delta])
        if cols is None:
            cols = _from_sql(backend, study_id, view)
        finished = np.isin(cols.category, (DONE, DIVERGED, STOPPED, FAILED))
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


_CACHE = _FinishedTrialCache()


def clear_landscape_cache() -> None:
    """Forget the cached finished trials (the next landscape reads every trial again)."""
    _CACHE.clear()


# ---------------------------------------------------------------------------------------------
# From FrozenTrials (storages other than RDB)


def _from_frozen(trials: Sequence[FrozenTrial], view: View) -> Columns:
    if not trials:
        return Columns.empty()
    attr: np.ndarray | None = None
    blown: np.ndarray | None = None
    if view.source == "final":
        measured = np.array([math.nan if t.value is None else float(t.value) for t in trials], dtype=np.float64)
        attr = np.array([_number(t.user_attrs.get(view.metric)) for t in trials], dtype=np.float64)
    elif view.source == "intermediate":
        measured = np.array([float(t.intermediate_values.get(view.epoch, math.nan)) for t in trials])
    else:
        measured, blown = _history_entries([t.user_attrs.get(Attr.HISTORY) for t in trials], view)
    return _finish(
        view,
        trial_id=np.array([_optuna.frozen_trial_id(t) for t in trials], dtype=np.int64),
        number=np.array([t.number for t in trials], dtype=np.int64),
        state=[t.state.name for t in trials],
        y=np.array([_number(t.params.get(view.y, math.nan)) for t in trials], dtype=np.float64),
        x=np.array([_number(t.params.get(view.x, math.nan)) for t in trials], dtype=np.float64),
        measured=measured,
        attr=attr,
        flagged=np.array([t.user_attrs.get(Attr.DIVERGED) is True for t in trials], dtype=bool),
        history_blown=blown,
        epochs_done=np.array([int(t.user_attrs.get(Attr.EPOCHS_DONE) or 0) for t in trials], dtype=np.int64),
        seed=np.array([_seed(t.user_attrs.get(Attr.SEED)) for t in trials], dtype=np.int64),
    )


def _finish(
    view: View,
    *,
    trial_id: np.ndarray,
    number: np.ndarray,
    state: list[str] | np.ndarray,  # names, or codes (DONE ...)
    y: np.ndarray,
    x: np.ndarray,
    measured: np.ndarray,
    attr: np.ndarray | None,
    flagged: np.ndarray,
    history_blown: np.ndarray | None,
    epochs_done: np.ndarray,
    seed: np.ndarray,
) -> Columns:
    """Trial categories and the value each trial contributes at this view (NaN: none)."""
    if isinstance(state, np.ndarray):  # already codes
        category = state.astype(np.int8, copy=True)
    else:
        category = np.fromiter((STATE_CODES.get(s, FAILED) for s in state), dtype=np.int8, count=len(state))
    complete = category == DONE
    # A COMPLETE trial flagged diverged (or, at the final epoch, with an infinite objective).
    diverged_trial = complete & flagged
    if view.source == "final":
        diverged_trial |= complete & np.isinf(measured)
    category[diverged_trial] = DIVERGED
    if view.source == "final":
        assert attr is not None
        value = attr
        if view.metric == view.spec_metric:
            # Trials recorded without metric attrs (e.g. study.add_trial) still have the objective.
            value = np.where(np.isnan(value), measured, value)
        has_final = (category == DONE) | (category == STOPPED)
        value = np.where(has_final, value, np.nan)
        diverged = category == DIVERGED
    elif view.source == "intermediate":
        value = measured
        # A diverged run records diverged_value at the epoch it blew up and nothing after.
        blown = flagged & (np.isnan(value) | (value == view.diverged_value))
        diverged = (blown | np.isinf(value)) & (category != QUEUED)
    else:
        assert history_blown is not None
        value = measured
        diverged = (history_blown | np.isinf(value)) & (category != QUEUED)
    value = np.where(diverged | ~np.isfinite(value), np.nan, value)
    return Columns(trial_id, number, category, y, x, value, diverged, epochs_done, seed)

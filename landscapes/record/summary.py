"""What a sweep's record says: a few numbers per study (trials by state, diverged count, the best cell), and its
trials page by page.

Both read a database through aggregate queries and pages (`_optuna`), never by loading every trial: a 5 000-trial,
100-epoch record takes seconds through FrozenTrials. Other storages (in-memory, journal) load the trials through
Optuna's public API; the answers are the same (tested).

The summary of the finished trials (diverged count, best cell) is kept per study in this process and read again
only when a trial has finished since (Optuna never changes a finished trial): a status poll of a quiet sweep is one
``GROUP BY`` over the trials' states.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from optuna.distributions import BaseDistribution, json_to_distribution
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from ..axes import AXES
from ..keys import Facet, study_name
from . import _optuna
from .attrs import Attr
from .storage import as_storage
from .studies import list_sweep_studies, study_key

__all__ = [
    "TrialRecord",
    "clear_summary_cache",
    "count_sweep_trials",
    "iter_sweep_trials",
    "summarize_trials",
    "sweep_summary",
    "sweep_trial_page",
]

StudyRef = tuple[str, Facet | None]  # (variant, facet), as `SweepSpec.studies()` lists them


def _empty(study: str) -> dict[str, Any]:
    return {"study": study, "n_trials": 0, "counts": {state.name: 0 for state in TrialState}, "diverged": 0,
            "best": None}


def summarize_trials(study: str, trials: Sequence[FrozenTrial]) -> dict[str, Any]:
    """One study's summary from trials already loaded: ``{"study", "n_trials", "counts": {state: n}, "diverged",
    "best": {"number", "value", "params": {axis: value}, "seed"} or None}`` (JSON-ready)."""
    out = _empty(study)
    for trial in trials:
        out["counts"][trial.state.name] += 1
    out["n_trials"] = len(trials)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    healthy = [t for t in complete if not t.user_attrs.get(Attr.DIVERGED) and t.value is not None]
    out["diverged"] = len(complete) - len([t for t in complete if not t.user_attrs.get(Attr.DIVERGED)])
    best = min(healthy, key=lambda t: (t.value, t.number), default=None)
    if best is not None:
        out["best"] = {"number": best.number, "value": best.value, "params": dict(best.params),
                       "seed": best.user_attrs.get(Attr.SEED)}
    return out


def _wanted(storage: BaseStorage, sweep: str, studies: Sequence[StudyRef] | None) -> dict[str, str]:
    """Study key -> study name: the given (variant, facet) pairs, or the studies of `sweep` that exist."""
    if studies is None:
        return {key: study.study_name for key, study in list_sweep_studies(storage, sweep).items()}
    return {study_key(variant, facet): study_name(sweep, variant, facet) for variant, facet in studies}


def _study_ids(storage: BaseStorage, wanted: Mapping[str, str]) -> dict[str, int]:
    """Study key -> id for the studies that exist (one query on a database)."""
    backend = _optuna.rdb_backend(storage)
    if backend is not None:
        found = _optuna.study_ids(backend, list(wanted.values()))
        return {key: found[name] for key, name in wanted.items() if name in found}
    ids = {}
    for key, name in wanted.items():
        try:
            ids[key] = storage.get_study_id_from_name(name)
        except KeyError:
            continue
    return ids


# ---------------------------------------------------------------------------------------------
# Summaries


@dataclass(frozen=True)
class _Finished:
    """What a study's COMPLETE trials say, and the (count, largest trial id) of them it was read at."""

    signature: tuple[int, int]
    diverged: int
    best: dict[str, Any] | None


class _FinishedSummaryCache:
    """Per (database, study): `_Finished`, read again only when the study's COMPLETE trials changed."""

    def __init__(self, max_entries: int = 4096) -> None:
        self._entries: OrderedDict[tuple[str, int], _Finished] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_entries

    def get(self, key: tuple[str, int], signature: tuple[int, int]) -> _Finished | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.signature != signature:
                return None
            self._entries.move_to_end(key)
            return entry

    def put(self, key: tuple[str, int], entry: _Finished) -> None:
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_FINISHED = _FinishedSummaryCache()


def clear_summary_cache() -> None:
    """Forget the cached summaries of finished trials (the next summary reads them again)."""
    _FINISHED.clear()


def sweep_summary(
    storage: BaseStorage | str, sweep: str, studies: Sequence[StudyRef] | None = None
) -> dict[str, dict[str, Any]]:
    """`summarize_trials` for each study of `sweep`, keyed by `study_key` ('sgdw', 'sgdw/schedule=step').

    `studies` lists the expected (variant, facet) pairs (e.g. `SweepSpec.studies()`), so studies not created yet
    appear with zero counts; without it, the studies that exist. On an RDBStorage this is one query for the study
    ids, one ``GROUP BY`` over the trials' states and, only for studies where a trial completed since the last call
    in this process, three aggregate queries for the diverged count and the best cell; the result is the same as
    `summarize_trials` over every loaded trial (tested).
    """
    storage = as_storage(storage)
    wanted = _wanted(storage, sweep, studies)
    ids = _study_ids(storage, wanted)
    backend = _optuna.rdb_backend(storage)
    if backend is None:
        return {key: summarize_trials(name, storage.get_all_trials(ids[key], deepcopy=False)) if key in ids
                else _empty(name) for key, name in wanted.items()}
    out = {key: _empty(name) for key, name in wanted.items()}
    key_of = {study_id: key for key, study_id in ids.items()}
    signature = {study_id: (0, -1) for study_id in key_of}
    for study_id, state, n, top in _optuna.state_counts(backend, list(key_of)):
        info = out[key_of[study_id]]
        info["counts"][state] = n
        info["n_trials"] += n
        if state == TrialState.COMPLETE.name:
            signature[study_id] = (n, top)
    database = str(backend.engine.url)
    finished = {sid: _FINISHED.get((database, sid), signature[sid]) for sid in key_of}
    stale = [sid for sid, entry in finished.items() if entry is None]
    if stale:
        finished.update(_read_finished(backend, stale, signature))
        for sid in stale:
            _FINISHED.put((database, sid), finished[sid])  # type: ignore[arg-type]
    for study_id, entry in finished.items():
        assert entry is not None
        info = out[key_of[study_id]]
        info["diverged"] = entry.diverged
        if entry.best is not None:
            info["best"] = {**entry.best, "params": dict(entry.best["params"])}
    return out


def _read_finished(backend: RDBStorage, study_ids: list[int],
                   signature: Mapping[int, tuple[int, int]]) -> dict[int, _Finished]:
    # The signature was read before these rows: a trial that completes in between only makes the next call read
    # again, never keeps an answer older than its signature.
    diverged, best, params = _optuna.finished_rows(
        backend, study_ids, diverged_key=_optuna.literal(Attr.DIVERGED, [Attr.DIVERGED]),
        seed_key=_optuna.literal(Attr.SEED, [Attr.SEED]))
    diverged_of = dict(diverged)
    params_of: dict[int, dict[str, float]] = {}
    for study_id, name, value in params:
        params_of.setdefault(study_id, {})[name] = value
    best_of = {
        study_id: {"number": number, "value": value, "params": _typed_params(params_of.get(study_id, {})),
                   "seed": json.loads(seed_json) if seed_json is not None else None}
        for study_id, number, value, seed_json in best
    }
    return {sid: _Finished(signature[sid], diverged_of.get(sid, 0), best_of.get(sid)) for sid in study_ids}


def _typed_params(raw: dict[str, float]) -> dict[str, Any]:
    # trial_params holds floats; an IntDistribution's value comes back as the integer it was.
    return {name: int(value) if name in AXES and AXES[name].kind == "int" else value for name, value in raw.items()}


# ---------------------------------------------------------------------------------------------
# Trials, page by page


@dataclass(frozen=True)
class TrialRecord:
    """One trial as stored, without its per-epoch intermediate values: what the API lists and exports.

    `raw_attrs` holds each user attr as the JSON text Optuna stored (`attr` decodes one), so a large attr such as
    the per-epoch ``history`` can be passed on without decoding it.
    """

    number: int
    state: str
    values: tuple[float, ...] | None
    params: dict[str, Any]
    raw_attrs: Mapping[str, str]
    datetime_start: datetime | None  # aware, UTC
    datetime_complete: datetime | None

    def attr(self, key: str, default: Any = None) -> Any:
        raw = self.raw_attrs.get(key)
        return default if raw is None else json.loads(raw)

    @classmethod
    def of(cls, trial: FrozenTrial) -> TrialRecord:
        """The record of a FrozenTrial (its naive datetimes are local time, as Optuna returns them)."""
        return cls(
            number=trial.number, state=trial.state.name,
            values=None if trial.values is None else tuple(float(v) for v in trial.values),
            params=dict(trial.params), raw_attrs={key: json.dumps(value) for key, value in trial.user_attrs.items()},
            datetime_start=_aware(trial.datetime_start), datetime_complete=_aware(trial.datetime_complete),
        )


def _aware(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(timezone.utc)


@functools.lru_cache(maxsize=1024)
def _distribution(text: str) -> BaseDistribution:
    return json_to_distribution(text)


def _stored_value(value: float | None, kind: str) -> float:
    return _optuna.STORED_SPECIAL.get(kind, math.nan) if value is None else float(value)


def _record(row: Mapping[str, Any]) -> TrialRecord:
    values = row["values"]
    return TrialRecord(
        number=row["number"], state=row["state"],
        values=tuple(_stored_value(*values[k]) for k in sorted(values)) if values else None,
        params={name: _distribution(dist).to_external_repr(value) for name, (value, dist) in row["params"].items()},
        raw_attrs=row["user_attrs"], datetime_start=row["datetime_start"], datetime_complete=row["datetime_complete"],
    )


def _counts(storage: BaseStorage, ids: Mapping[str, int], state: str | None) -> dict[str, int]:
    backend = _optuna.rdb_backend(storage)
    if backend is not None:
        found = _optuna.matching_counts(backend, list(ids.values()), state)
        return {key: found.get(sid, 0) for key, sid in ids.items()}
    return {key: len(_all(storage, sid, state)) for key, sid in ids.items()}


def _all(storage: BaseStorage, study_id: int, state: str | None) -> list[FrozenTrial]:
    states = None if state is None else (TrialState[state],)
    return sorted(storage.get_all_trials(study_id, deepcopy=False, states=states), key=lambda t: t.number)


def _page(storage: BaseStorage, study_id: int, *, limit: int, offset: int = 0, after: int | None = None,
          state: str | None = None, history: bool = True) -> list[TrialRecord]:
    backend = _optuna.rdb_backend(storage)
    if backend is not None:
        skip = () if history else (Attr.HISTORY,)
        return [_record(row) for row in _optuna.trial_page(backend, study_id, limit=limit, offset=offset,
                                                           after=after, state=state, skip_attrs=skip)]
    trials = [t for t in _all(storage, study_id, state) if after is None or t.number > after]
    records = [TrialRecord.of(t) for t in trials[offset: offset + limit]]
    if not history:
        records = [dataclasses.replace(r, raw_attrs={k: v for k, v in r.raw_attrs.items() if k != Attr.HISTORY})
                   for r in records]
    return records


def _check_state(state: str | None) -> None:
    if state is not None and state not in _optuna.STATE_NAMES:
        raise ValueError(f"unknown trial state {state!r}; choose one of {', '.join(sorted(_optuna.STATE_NAMES))}")


def count_sweep_trials(
    storage: BaseStorage | str, sweep: str, studies: Sequence[StudyRef], *, state: str | None = None
) -> dict[str, int]:
    """Trials per study key (those in `state`, if given); 0 for a study not created yet. One query on a database."""
    _check_state(state)
    storage = as_storage(storage)
    wanted = _wanted(storage, sweep, studies)
    ids = _study_ids(storage, wanted)
    counts = _counts(storage, ids, state)
    return {key: counts.get(key, 0) for key in wanted}


def sweep_trial_page(
    storage: BaseStorage | str,
    sweep: str,
    studies: Sequence[StudyRef],
    *,
    offset: int,
    limit: int,
    state: str | None = None,
    history: bool = True,
) -> tuple[list[tuple[str, TrialRecord]], int]:
    """Trials `offset` .. `offset + limit` of the sweep (studies in the order given, trials by number), each with
    its study key, and how many trials there are in all (those in `state`, if given). `history=False` leaves the
    per-epoch history attr out (not even read).

    On a database: one count query, then one page query per study the window touches (LIMIT/OFFSET in SQL).
    """
    if offset < 0 or limit < 1:
        raise ValueError(f"offset must be >= 0 and limit >= 1, got offset={offset}, limit={limit}")
    _check_state(state)
    storage = as_storage(storage)
    wanted = _wanted(storage, sweep, studies)
    ids = _study_ids(storage, wanted)
    counts = _counts(storage, ids, state)
    items: list[tuple[str, TrialRecord]] = []
    skip, left = offset, limit
    for key in wanted:
        n = counts.get(key, 0)
        if key not in ids or n == 0:
            continue
        if skip >= n:
            skip -= n
            continue
        if left > 0:
            page = _page(storage, ids[key], limit=left, offset=skip, state=state, history=history)
            items += [(key, record) for record in page]
            left -= len(page)
        skip = 0
    return items, sum(counts.values())


def iter_sweep_trials(
    storage: BaseStorage | str,
    sweep: str,
    studies: Sequence[StudyRef],
    *,
    page_size: int = 100,
    state: str | None = None,
) -> Iterator[list[tuple[str, TrialRecord]]]:
    """Every trial of the sweep, `page_size` at a time (studies in the order given, trials by number).

    Pages follow trial numbers (keyset), so a trial added or finishing while the pages are read is never listed
    twice nor skipped; a page holds trials of one study. Each page is read when asked for: the whole record is
    never in memory, and no connection is held between pages.
    """
    if page_size < 1:
        raise ValueError(f"page_size must be >= 1, got {page_size}")
    _check_state(state)
    storage = as_storage(storage)
    wanted = _wanted(storage, sweep, studies)
    ids = _study_ids(storage, wanted)
    for key in wanted:
        if key not in ids:
            continue
        after: int | None = None
        while True:
            page = _page(storage, ids[key], limit=page_size, after=after, state=state)
            if page:
                yield [(key, record) for record in page]
            if len(page) < page_size:
                break
            after = page[-1].number

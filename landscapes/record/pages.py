"""A sweep's trials page by page, as stored: what the API lists and exports.

On a database a page is a few indexed queries (`_optuna.trial_page`), never every trial; other storages (in-memory,
journal) go through Optuna's public API, with the same answers (tested). Finished trials read without their
history are kept in this process (`_RECORDS`): Optuna never changes a finished trial, so a poll of a
mostly finished sweep reads only the trials table, and the details of the few that still run.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from optuna.distributions import BaseDistribution, json_to_distribution
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from ..lru import LRU
from . import _optuna
from .attrs import Attr
from .storage import as_storage
from .studies import existing_study_ids, sweep_study_names
from .summary import StudyRef

__all__ = ["TrialRecord", "clear_record_cache", "count_sweep_trials", "iter_sweep_trials", "sweep_trial_page"]


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


# (database, trial id) -> the record of a finished trial read without its history (about 0.6 kB each).
_RECORDS: LRU[tuple[str, int], TrialRecord] = LRU(50_000)


def clear_record_cache() -> None:
    """Forget the finished trials' records kept (the next page reads every detail again)."""
    _RECORDS.clear()


def _page(storage: BaseStorage, study_id: int, *, limit: int, offset: int = 0, after: int | None = None,
          state: str | None = None, history: bool = True) -> list[TrialRecord]:
    backend = _optuna.rdb_backend(storage)
    if backend is not None:
        if history:
            return [_record(row) for row in _optuna.trial_page(backend, study_id, limit=limit, offset=offset,
                                                               after=after, state=state)]
        database = str(backend.engine.url)
        kept: dict[int, TrialRecord] = {}

        def known(trial: dict[str, Any]) -> bool:
            record = _RECORDS.get((database, trial["trial_id"]))
            # The trials table is read every time: a database replaced under the same URL cannot pass for the old.
            if record is None or (record.number, record.state, record.datetime_complete) != (
                    trial["number"], trial["state"], trial["datetime_complete"]):
                return False
            kept[trial["trial_id"]] = record
            return True

        rows = _optuna.trial_page(backend, study_id, limit=limit, offset=offset, after=after, state=state,
                                  skip_attrs=(Attr.HISTORY,), known=known)
        records = []
        for row in rows:
            record = kept.get(row["trial_id"]) if row["user_attrs"] is None else None  # None: not read, kept
            if record is None:
                record = _record(row)
                if record.state in _optuna.FINISHED_STATES:
                    _RECORDS.put((database, row["trial_id"]), record)
            records.append(record)
        return records
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
    wanted = sweep_study_names(storage, sweep, studies)
    ids = existing_study_ids(storage, wanted)
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
    wanted = sweep_study_names(storage, sweep, studies)
    ids = existing_study_ids(storage, wanted)
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
    wanted = sweep_study_names(storage, sweep, studies)
    ids = existing_study_ids(storage, wanted)
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

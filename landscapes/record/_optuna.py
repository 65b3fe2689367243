"""The one place that uses Optuna's private internals, and why.

Everything else in hpscape goes through Optuna's public API (studies, `BaseStorage` methods, FrozenTrial). Three
things cannot, and live here so that an Optuna upgrade breaks one module and `tests/test_optuna_internals.py`
says which assumption failed:

1. A study's storage and id (`Study._storage`, `Study._study_id`): Optuna has no public accessor, and the record
   layer writes to trials by number from processes that did not create them (driver, Ray workers, service).
2. An atomic claim on SQLite: SQLite ignores ``SELECT ... FOR UPDATE``, so Optuna's state change reads and writes
   in two steps and two processes can both claim one trial; one conditional UPDATE on the `trials` table is atomic.
3. Reads of many trials at once: loading FrozenTrials reads every epoch of every trial (a 10 000-trial study takes
   seconds); landscapes and summaries need a few columns, which SQL over Optuna's tables gives in milliseconds,
   and the API's trial lists and exports need one page of trials at a time (LIMIT/OFFSET or keyset over trial
   numbers, without the per-epoch intermediate values), which Optuna's storage API cannot give.
   Every name spliced into that SQL is an integer or one of hpscape's own constant names (see `literal`); study
   names, which come from users, are bound parameters (`study_ids`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._rdb import models as _rdb_models
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

__all__ = [
    "FINISHED_STATES",
    "STATE_NAMES",
    "STORED_SPECIAL",
    "claim_sqlite",
    "count_sql",
    "fetch",
    "finished_rows",
    "frozen_trial_id",
    "literal",
    "matching_counts",
    "packed_columns_sql",
    "rdb_backend",
    "state_counts",
    "storage_of",
    "stored_datetime",
    "study_id_of",
    "study_ids",
    "trial_columns_sql",
    "trial_page",
]

# Optuna stores +-inf (and NaN for intermediate values) as NULL with a type tag.
STORED_SPECIAL = {"INF_POS": math.inf, "INF_NEG": -math.inf, "NAN": math.nan}
# The trial states as stored (Optuna's enum names) and the ones a trial never leaves.
STATE_NAMES = frozenset(state.name for state in TrialState)
FINISHED_STATES = ("COMPLETE", "PRUNED", "FAIL")
# Optuna >= 5 stores trial datetimes as naive UTC, older versions as naive local time.
_NAIVE_UTC = hasattr(_rdb_models.TrialModel, "_datetime_start_utc")


def storage_of(study: Study) -> BaseStorage:
    return study._storage


def study_id_of(study: Study) -> int:
    return study._study_id


def frozen_trial_id(trial: FrozenTrial) -> int:
    """The storage id of a trial read from the storage (FrozenTrial keeps it, privately)."""
    return trial._trial_id


def rdb_backend(storage: BaseStorage) -> RDBStorage | None:
    """The RDBStorage behind `storage` (a cached wrapper holds it as `_backend`), or None."""
    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, RDBStorage) else None


def claim_sqlite(backend: RDBStorage, trial_id: int) -> bool:
    """Move trial `trial_id` from WAITING to RUNNING in one statement; False if another process won."""
    if _NAIVE_UTC:
        started = datetime.now(timezone.utc).replace(tzinfo=None)
    else:
        started = datetime.now()
    with backend.engine.begin() as connection:
        result = connection.exec_driver_sql(
            "UPDATE trials SET state = 'RUNNING', datetime_start = ? WHERE trial_id = ? AND state = 'WAITING'",
            (started.strftime("%Y-%m-%d %H:%M:%S.%f"), trial_id),
        )
        return result.rowcount == 1


def literal(value: str | int, allowed: Iterable[str]) -> str:
    """An SQL literal for a name in `allowed` or an integer; nothing else is ever spliced into a query."""
    if isinstance(value, bool):
        raise ValueError(f"not an SQL literal: {value!r}")
    if isinstance(value, int):
        return str(int(value))
    if value not in set(allowed):
        raise ValueError(f"{value!r} is not a name hpscape queries")
    return f"'{value}'"


def fetch(backend: RDBStorage, sql: str) -> list[tuple[Any, ...]]:
    """Rows of `sql` on the raw DB-API cursor: building SQLAlchemy rows costs more than the query itself."""
    with backend.engine.connect() as connection:
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(sql)
            return list(cursor.fetchall())
        finally:
            cursor.close()


def trial_columns_sql(
    *,
    study_id: str,
    y: str,
    x: str,
    value_from: str,
    value_key: str,
    epochs_done: str,
    diverged: str,
    seed: str,
) -> str:
    """One row per trial: id, number, state, the two params, a value and its type tag, an attr, two flags, the seed.

    `value_from` picks the value: "final" (the objective, and the user attr `value_key`), "intermediate" (the
    intermediate value at step `value_key`) or "attr" (the raw JSON of user attr `value_key`, e.g. the history).
    The LEFT JOINs are index lookups on Optuna's (trial_id, key) constraints. All arguments are `literal`s.
    """
    if value_from == "final":
        measured = ("v.value AS value, v.value_type AS value_type, m.value_json AS attr",
                    "LEFT JOIN trial_values v ON v.trial_id = t.trial_id AND v.objective = 0\n"
                    f"LEFT JOIN trial_user_attributes m ON m.trial_id = t.trial_id AND m.key = {value_key}")
    elif value_from == "intermediate":
        measured = ("iv.intermediate_value AS value, iv.intermediate_value_type AS value_type, NULL AS attr",
                    "LEFT JOIN trial_intermediate_values iv ON iv.trial_id = t.trial_id "
                    f"AND iv.step = {value_key}")
    elif value_from == "attr":
        measured = ("NULL AS value, NULL AS value_type, m.value_json AS attr",
                    f"LEFT JOIN trial_user_attributes m ON m.trial_id = t.trial_id AND m.key = {value_key}")
    else:
        raise ValueError(f"unknown value source {value_from!r}")
    return f"""
SELECT t.trial_id AS trial_id, t.number AS number, t.state AS state, py.param_value AS y, px.param_value AS x,
       {measured[0]}, dv.value_json AS diverged, ed.value_json AS epochs_done, sd.value_json AS seed
FROM trials t
LEFT JOIN trial_params py ON py.trial_id = t.trial_id AND py.param_name = {y}
LEFT JOIN trial_params px ON px.trial_id = t.trial_id AND px.param_name = {x}
{measured[1]}
LEFT JOIN trial_user_attributes dv ON dv.trial_id = t.trial_id AND dv.key = {diverged}
LEFT JOIN trial_user_attributes ed ON ed.trial_id = t.trial_id AND ed.key = {epochs_done}
LEFT JOIN trial_user_attributes sd ON sd.trial_id = t.trial_id AND sd.key = {seed}
WHERE t.study_id = {study_id}"""


# The text of a column's values joined with commas, per dialect: one row of a few long strings instead of a
# Python tuple per trial (building 10 000 tuples of 11 objects costs twice the query). NULL never drops out
# (it is written 'nan'), and every aggregate of one SELECT sees the rows in the same order.
_PACKED = {
    # '%!.17g': SQLite's printf keeps 16 digits unless the '!' flag asks for all, which round-trips a double.
    "sqlite": ("group_concat({}, ',')", "printf('%!.17g', {})", "{}"),
    "postgresql": ("string_agg({}, ',')", "CAST({} AS TEXT)", "CAST({} AS TEXT)"),
}


def packed_columns_sql(row_sql: str, dialect: str, state_codes: dict[str, int], other_state: int) -> str | None:
    """`trial_columns_sql` (with or without `CHANGED_SQL`) as one row: the trial count, then comma-joined
    trial ids, numbers, state codes, y, x, values (+-inf and NaN from their type tags), the attr, the diverged
    flag (1/0), epochs done and seed (JSON numbers, 'nan' where missing). None for a dialect without it.

    A JSON attr that is not a number (or holds a comma) makes the column unparseable: the caller reads rows.
    """
    if dialect not in _PACKED:
        return None
    agg, real, as_text = _PACKED[dialect]
    cases = " ".join(f"WHEN {literal(name, STATE_NAMES)} THEN {int(code)}" for name, code in state_codes.items())

    def number(column: str) -> str:
        return agg.format(f"CASE WHEN {column} IS NULL THEN 'nan' ELSE {real.format(column)} END")

    def json_number(column: str) -> str:
        missing = f"{column} IS NULL OR {column} = 'null'"
        return agg.format(f"CASE WHEN {missing} THEN 'nan' ELSE {as_text.format(column)} END")

    value = agg.format(
        "CASE WHEN value IS NOT NULL THEN " + real.format("value")
        + " WHEN value_type = 'INF_POS' THEN 'inf' WHEN value_type = 'INF_NEG' THEN '-inf' ELSE 'nan' END")
    return f"""
SELECT COUNT(*), {agg.format(as_text.format("trial_id"))}, {agg.format(as_text.format("number"))},
       {agg.format(f"CAST(CASE state {cases} ELSE {int(other_state)} END AS TEXT)")},
       {number("y")}, {number("x")}, {value}, {json_number("attr")},
       {agg.format("CASE WHEN diverged = 'true' THEN '1' ELSE '0' END")}, {json_number("epochs_done")},
       {json_number("seed")}
FROM ({row_sql}) r"""


# The trials that may have changed since the last read: unfinished now, new, or unfinished before.
CHANGED_SQL = " AND (t.state NOT IN ('COMPLETE', 'PRUNED', 'FAIL') OR t.trial_id > {max_id} OR t.trial_id IN ({prev}))"


def count_sql(study_id: int) -> str:
    return f"SELECT COUNT(*) FROM trials WHERE study_id = {int(study_id)}"


def _ids(values: Iterable[int]) -> str:
    return ",".join(str(int(v)) for v in values) or "-1"


def study_ids(backend: RDBStorage, names: Sequence[str]) -> dict[str, int]:
    """Study name -> id for the names that exist, in one query (names are bound parameters, never spliced)."""
    if not names:
        return {}
    # On the DB-API cursor with the driver's own placeholders: compiling SQLAlchemy's expanding IN took longer than
    # the query (a fifth of a trial page's time).
    marker = "?" if backend.engine.dialect.paramstyle == "qmark" else "%s"  # sqlite3; psycopg (pyformat)
    with backend.engine.connect() as connection:
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(f"SELECT study_name, study_id FROM studies WHERE study_name IN "
                           f"({', '.join([marker] * len(names))})", tuple(str(name) for name in names))
            return {str(name): int(sid) for name, sid in cursor.fetchall()}
        finally:
            cursor.close()


def state_counts(backend: RDBStorage, study_ids: Sequence[int]) -> list[tuple[int, str, int, int]]:
    """(study_id, state, trials, largest trial id) per study and state: one aggregate query."""
    if not study_ids:
        return []
    return [(int(s), str(getattr(state, "name", state)), int(n), int(top)) for s, state, n, top in fetch(
        backend, f"SELECT study_id, state, COUNT(*), MAX(trial_id) FROM trials WHERE study_id IN ({_ids(study_ids)}) "
                 "GROUP BY study_id, state")]


def finished_rows(
    backend: RDBStorage, study_ids: Sequence[int], *, diverged_key: str, seed_key: str
) -> tuple[list[tuple[int, int]], list[tuple[int, int, float, str | None]], list[tuple[int, str, float]]]:
    """What a summary needs of the finished trials, in three aggregate queries over `study_ids`.

    Returns (study_id, diverged count) rows; the best healthy COMPLETE trial per study as (study_id, number, value,
    seed JSON); and that trial's params as (study_id, name, value) rows. Ties on the value go to the lower trial
    number, as in `summarize_trials`. Only COMPLETE trials count, and Optuna never changes a finished trial, so the
    answer changes only when trials finish (the summary caches it on the counts of `state_counts`).
    """
    if not study_ids:
        return [], [], []
    ids = _ids(study_ids)
    flagged = (f"EXISTS (SELECT 1 FROM trial_user_attributes a WHERE a.trial_id = t.trial_id "
               f"AND a.key = {diverged_key} AND a.value_json = 'true')")
    diverged = [(int(s), int(n)) for s, n in fetch(
        backend, f"SELECT t.study_id, COUNT(*) FROM trials t WHERE t.study_id IN ({ids}) "
                 f"AND t.state = 'COMPLETE' AND {flagged} GROUP BY t.study_id")]
    ranked = f"""
SELECT study_id, trial_id, number, value FROM (
  SELECT t.study_id, t.trial_id, t.number, v.value,
         ROW_NUMBER() OVER (PARTITION BY t.study_id ORDER BY v.value, t.number) AS rank
  FROM trials t JOIN trial_values v ON v.trial_id = t.trial_id AND v.objective = 0
  WHERE t.study_id IN ({ids}) AND t.state = 'COMPLETE' AND v.value IS NOT NULL AND NOT {flagged}
) ranked WHERE rank = 1"""
    best_rows = fetch(backend, ranked)
    best: list[tuple[int, int, float, str | None]] = []
    params: list[tuple[int, str, float]] = []
    if best_rows:
        trial_ids = _ids(row[1] for row in best_rows)
        study_of = {int(row[1]): int(row[0]) for row in best_rows}
        seeds = dict(fetch(backend, f"SELECT trial_id, value_json FROM trial_user_attributes "
                                    f"WHERE trial_id IN ({trial_ids}) AND key = {seed_key}"))
        best = [(int(s), int(n), float(v), seeds.get(t)) for s, t, n, v in best_rows]
        # A float/int distribution stores the value itself in param_value.
        params = [(study_of[int(t)], str(name), float(value)) for t, name, value in fetch(
            backend, f"SELECT trial_id, param_name, param_value FROM trial_params WHERE trial_id IN ({trial_ids})")]
    return diverged, best, params


def _state_filter(state: str | None) -> str:
    return "" if state is None else f" AND state = {literal(state, STATE_NAMES)}"


def matching_counts(backend: RDBStorage, study_ids: Sequence[int], state: str | None = None) -> dict[int, int]:
    """Trials per study (only those in `state`, if given): one aggregate query."""
    if not study_ids:
        return {}
    return {int(s): int(n) for s, n in fetch(
        backend, f"SELECT study_id, COUNT(*) FROM trials WHERE study_id IN ({_ids(study_ids)})"
                 f"{_state_filter(state)} GROUP BY study_id")}


def stored_datetime(value: Any) -> datetime | None:
    """A trial's stored datetime (a datetime, or SQLite's text) as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is not None:
        return value.astimezone(timezone.utc)
    return value.replace(tzinfo=timezone.utc) if _NAIVE_UTC else value.astimezone(timezone.utc)


def trial_page(
    backend: RDBStorage,
    study_id: int,
    *,
    limit: int,
    offset: int = 0,
    after: int | None = None,
    state: str | None = None,
    skip_attrs: Sequence[str] = (),
    known: Callable[[dict[str, Any]], bool] | None = None,
) -> list[dict[str, Any]]:
    """One page of a study's trials by number: what a FrozenTrial holds except the intermediate values (and the
    user attrs named in `skip_attrs`, e.g. the history: most of a page's bytes).

    `offset` skips trials (LIMIT/OFFSET), `after` starts past a trial number (keyset: a stream of pages then
    never repeats nor skips a trial while others are added). Each trial is a dict: trial_id, number, state,
    datetime_start, datetime_complete (aware UTC), values ({objective: stored value, type tag}), params ({name:
    (internal value, distribution JSON)}) and user_attrs ({key: JSON text as stored}). Five queries on one
    connection: the trials, then their values, params and user attrs by trial id (Optuna's unique indexes).
    A finished trial that `known` accepts (given its dict so far: one the caller keeps) gets None for values, params
    and user_attrs,
    which are not read: the page of a mostly finished sweep is then one query on the trials table.
    """
    where = f"study_id = {int(study_id)}{_state_filter(state)}"
    if after is not None:
        where += f" AND number > {int(after)}"
    with backend.engine.connect() as connection:
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            # By trial id, which is by number: Optuna numbers a trial by the study's trials of lower id
            # (`count_past_trials`). The (study_id) index holds the id, so no sort of the study's trials.
            cursor.execute(f"SELECT trial_id, number, state, datetime_start, datetime_complete FROM trials "
                           f"WHERE {where} ORDER BY trial_id LIMIT {int(limit)} OFFSET {int(offset)}")
            trials = {int(tid): {"trial_id": int(tid), "number": int(number), "state": str(getattr(st, "name", st)),
                                 "datetime_start": stored_datetime(start), "datetime_complete": stored_datetime(end),
                                 "values": {}, "params": {}, "user_attrs": {}}
                      for tid, number, st, start, end in cursor.fetchall()}
            if not trials:
                return []
            wanted = [tid for tid, trial in trials.items()
                      if known is None or trial["state"] not in FINISHED_STATES or not known(trial)]
            for tid in trials.keys() - set(wanted):
                trials[tid].update(values=None, params=None, user_attrs=None)
            if not wanted:
                return list(trials.values())
            ids = _ids(wanted)
            cursor.execute(f"SELECT trial_id, objective, value, value_type FROM trial_values WHERE trial_id IN ({ids})")
            for tid, objective, value, kind in cursor.fetchall():
                trials[int(tid)]["values"][int(objective)] = (value, str(getattr(kind, "name", kind)))
            cursor.execute(f"SELECT trial_id, param_name, param_value, distribution_json FROM trial_params "
                           f"WHERE trial_id IN ({ids})")
            for tid, name, value, distribution in cursor.fetchall():
                trials[int(tid)]["params"][str(name)] = (float(value), str(distribution))
            skipped = "".join(f" AND key <> {literal(key, skip_attrs)}" for key in skip_attrs)
            cursor.execute(f"SELECT trial_id, key, value_json FROM trial_user_attributes WHERE trial_id IN ({ids})"
                           f"{skipped}")
            for tid, key, value_json in cursor.fetchall():
                trials[int(tid)]["user_attrs"][str(key)] = value_json
        finally:
            cursor.close()
    return list(trials.values())

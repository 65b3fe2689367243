"""What a sweep's record says: a few numbers per study (trials by state, diverged count, the best cell); its trials
page by page are in `pages`.

It reads a database through aggregate queries (`_optuna`), never by loading every trial: a 5 000-trial,
100-epoch record takes seconds through FrozenTrials. Other storages (in-memory, journal) load the trials through
Optuna's public API; the answers are the same (tested).

The summary of the finished trials (diverged count, best cell) is kept per study in this process and read again
only when a trial has finished since (Optuna never changes a finished trial): a status poll of a quiet sweep is one
``GROUP BY`` over the trials' states.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from ..axes import AXES
from ..keys import Facet
from ..lru import LRU
from . import _optuna
from .attrs import Attr
from .storage import as_storage
from .studies import existing_study_ids, sweep_study_names

__all__ = ["StudyRef", "clear_summary_cache", "summarize_trials", "sweep_summary"]

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


# ---------------------------------------------------------------------------------------------
# Summaries


@dataclass(frozen=True)
class _Finished:
    """What a study's COMPLETE trials say, and the (count, largest trial id) of them it was read at."""

    signature: tuple[int, int]
    diverged: int
    best: dict[str, Any] | None


# Per (database, study id): `_Finished`, read again only when the study's COMPLETE trials changed.
_FINISHED: LRU[tuple[str, int], _Finished] = LRU(4096)


def _kept(database: str, study_id: int, signature: tuple[int, int]) -> _Finished | None:
    entry = _FINISHED.get((database, study_id))
    return entry if entry is not None and entry.signature == signature else None


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
    wanted = sweep_study_names(storage, sweep, studies)
    ids = existing_study_ids(storage, wanted)
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
    finished = {sid: _kept(database, sid, signature[sid]) for sid in key_of}
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

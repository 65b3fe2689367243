"""What a sweep's record says in a few numbers per study: trials by state, diverged count, the best cell."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from ..axes import AXES
from ..keys import study_name
from . import _optuna
from .attrs import Attr
from .storage import as_storage
from .studies import list_sweep_studies, study_key

__all__ = ["summarize_trials", "sweep_summary"]


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


def sweep_summary(
    storage: BaseStorage | str, sweep: str, studies: Sequence[tuple[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """`summarize_trials` for each study of `sweep`, keyed by `study_key` ('sgdw', 'sgdw/schedule=step').

    `studies` lists the expected (variant, facet) pairs (e.g. `SweepSpec.studies()`), so studies not created yet
    appear with zero counts; without it, the studies that exist. On an RDBStorage this is four aggregate queries
    (a 484-trial, 100-epoch record loads in seconds through FrozenTrials); the result is the same (tested).
    """
    storage = as_storage(storage)
    if studies is None:
        found = list_sweep_studies(storage, sweep)
        wanted = {key: study.study_name for key, study in found.items()}
    else:
        wanted = {study_key(variant, facet): study_name(sweep, variant, facet) for variant, facet in studies}
    ids: dict[str, int] = {}
    for key, name in wanted.items():
        try:
            ids[key] = storage.get_study_id_from_name(name)
        except KeyError:
            continue
    backend = _optuna.rdb_backend(storage)
    if backend is None:
        return {key: summarize_trials(name, storage.get_all_trials(ids[key], deepcopy=False)) if key in ids
                else _empty(name) for key, name in wanted.items()}
    out = {key: _empty(name) for key, name in wanted.items()}
    key_of = {study_id: key for key, study_id in ids.items()}
    counts, diverged, best, params = _optuna.summary_rows(
        backend, list(ids.values()), diverged_key=_optuna.literal(Attr.DIVERGED, [Attr.DIVERGED]),
        seed_key=_optuna.literal(Attr.SEED, [Attr.SEED]))
    for study_id, state, n in counts:
        info = out[key_of[study_id]]
        info["counts"][state] = n
        info["n_trials"] += n
    for study_id, n in diverged:
        out[key_of[study_id]]["diverged"] = n
    by_study: dict[int, dict[str, float]] = {}
    for study_id, name, value in params:
        by_study.setdefault(study_id, {})[name] = value
    for study_id, number, value, seed_json in best:
        out[key_of[study_id]]["best"] = {
            "number": number, "value": value, "params": _typed_params(by_study.get(study_id, {})),
            "seed": json.loads(seed_json) if seed_json is not None else None,
        }
    return out


def _typed_params(raw: dict[str, float]) -> dict[str, Any]:
    # trial_params holds floats; an IntDistribution's value comes back as the integer it was.
    return {name: int(value) if name in AXES and AXES[name].kind == "int" else value for name, value in raw.items()}

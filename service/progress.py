"""What the Optuna record says about a sweep: counts by state, best cells, trial rows, CSV export."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._rdb import models as _rdb
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import Session

from hpscape.landscapes import study_name
from hpscape.landscapes.record import PARAM_LR, PARAM_WEIGHT_DECAY, Attr, summarize_trials

__all__ = ["TRIAL_COLUMNS", "load_trials", "summarize", "trial_row", "trials_csv", "variant_summaries"]

TRIAL_COLUMNS = (
    "variant", "number", "state", "lr", "weight_decay", "seed", "value", "epochs_done", "epochs_budget",
    "diverged", "stopped_early", "test_error", "test_loss", "train_error", "train_loss", "images_per_s", "wall_s",
    "started_at", "completed_at", "error",
)


def load_trials(storage: BaseStorage, record_name: str, variants: Iterable[str]) -> dict[str, list[FrozenTrial]]:
    """Every trial of each variant's study (an empty list for a study not created yet), variants in spec order."""
    out: dict[str, list[FrozenTrial]] = {}
    for variant in variants:
        try:
            study_id = storage.get_study_id_from_name(study_name(record_name, variant))
        except KeyError:
            out[variant] = []
            continue
        out[variant] = storage.get_all_trials(study_id, deepcopy=False)
    return out


def variant_summaries(trials_by_variant: dict[str, list[FrozenTrial]], record_name: str) -> dict[str, dict[str, Any]]:
    """The same shape as `hpscape.landscapes.record.sweep_summary`, from trials already loaded (known variants only)."""
    return {
        variant: summarize_trials(study_name(record_name, variant), trials)
        for variant, trials in trials_by_variant.items()
    }


def summarize(storage: BaseStorage, record_name: str, variants: list[str]) -> dict[str, dict[str, Any]]:
    """`variant_summaries` of a sweep's record, computed in the database where it is an RDBStorage.

    Loading every trial through Optuna reads every epoch of every trial (a 484-trial, 100-epoch sweep takes
    seconds); counts and the best cell are a few indexed queries. The result is identical (a test checks it
    against `hpscape.landscapes.record.sweep_summary`).
    """
    if not isinstance(storage, RDBStorage):
        return variant_summaries(load_trials(storage, record_name, variants), record_name)
    names = {study_name(record_name, v): v for v in variants}
    empty = {state.name: 0 for state in TrialState}
    summary: dict[str, dict[str, Any]] = {
        v: {"study": n, "n_trials": 0, "counts": dict(empty), "diverged": 0, "best": None} for n, v in names.items()
    }
    trial, value, attr = _rdb.TrialModel, _rdb.TrialValueModel, _rdb.TrialUserAttributeModel
    with Session(storage.engine) as session:
        studies = dict(session.execute(select(_rdb.StudyModel.study_id, _rdb.StudyModel.study_name)
                                       .where(_rdb.StudyModel.study_name.in_(names))).tuples().all())
        if not studies:
            return summary
        variant_of = {study_id: names[name] for study_id, name in studies.items()}
        for study_id, state, n in session.execute(
            select(trial.study_id, trial.state, func.count()).where(trial.study_id.in_(studies))
            .group_by(trial.study_id, trial.state)
        ).tuples():
            info = summary[variant_of[study_id]]
            info["counts"][state.name] = n
            info["n_trials"] += n
        diverged = exists().where(attr.trial_id == trial.trial_id, attr.key == Attr.DIVERGED,
                                  attr.value_json == "true")
        for study_id, n in session.execute(
            select(trial.study_id, func.count()).where(trial.study_id.in_(studies),
                                                       trial.state == TrialState.COMPLETE, diverged)
            .group_by(trial.study_id)
        ).tuples():
            summary[variant_of[study_id]]["diverged"] = n
        ranked = (
            select(trial.study_id, trial.trial_id, trial.number, value.value,
                   func.row_number().over(partition_by=trial.study_id,
                                          order_by=(value.value, trial.number)).label("rank"))
            .join(value, and_(value.trial_id == trial.trial_id, value.objective == 0))
            .where(trial.study_id.in_(studies), trial.state == TrialState.COMPLETE, value.value.is_not(None),
                   ~diverged)
            .subquery()
        )
        best = session.execute(select(ranked.c.study_id, ranked.c.trial_id, ranked.c.number, ranked.c.value)
                               .where(ranked.c.rank == 1)).tuples().all()
        ids = [trial_id for _, trial_id, _, _ in best]
        params: dict[int, dict[str, float]] = {}
        param = _rdb.TrialParamModel
        for trial_id, name, raw in session.execute(
            select(param.trial_id, param.param_name, param.param_value)
            .where(param.trial_id.in_(ids), param.param_name.in_((PARAM_LR, PARAM_WEIGHT_DECAY)))
        ).tuples():
            params.setdefault(trial_id, {})[name] = raw  # a float distribution stores the value itself
        seeds = dict(session.execute(select(attr.trial_id, attr.value_json)
                                     .where(attr.trial_id.in_(ids), attr.key == Attr.SEED)).tuples().all())
    for study_id, trial_id, number, best_value in best:
        summary[variant_of[study_id]]["best"] = {
            "number": number,
            "value": best_value,
            "lr": params.get(trial_id, {}).get(PARAM_LR),
            "weight_decay": params.get(trial_id, {}).get(PARAM_WEIGHT_DECAY),
            "seed": json.loads(seeds[trial_id]) if trial_id in seeds else None,
        }
    return summary


def _finite(value: Any) -> float | None:
    # JSON has no NaN or infinity; an undefined measurement is null.
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    # Optuna stores naive UTC (>= 5) or naive local time (older); both come back naive.
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def trial_row(variant: str, trial: FrozenTrial) -> dict[str, Any]:
    """One trial as a flat, JSON-ready record (the columns of the CSV export)."""
    attrs = trial.user_attrs
    epochs_done = attrs.get(Attr.EPOCHS_DONE)
    epochs_budget = attrs.get(Attr.EPOCHS_BUDGET)
    seed = attrs.get(Attr.SEED)
    return {
        "variant": variant,
        "number": trial.number,
        "state": trial.state.name,
        "lr": _finite(trial.params.get(PARAM_LR)),
        "weight_decay": _finite(trial.params.get(PARAM_WEIGHT_DECAY)),
        "seed": seed if isinstance(seed, int) else None,
        "value": _finite(trial.value) if trial.values is not None and len(trial.values) == 1 else None,
        "epochs_done": epochs_done if isinstance(epochs_done, int) else None,
        "epochs_budget": epochs_budget if isinstance(epochs_budget, int) else None,
        "diverged": bool(attrs.get(Attr.DIVERGED, False)),
        "stopped_early": bool(attrs.get(Attr.STOPPED_EARLY, False)),
        "test_error": _finite(attrs.get(Attr.TEST_ERROR)),
        "test_loss": _finite(attrs.get(Attr.TEST_LOSS)),
        "train_error": _finite(attrs.get(Attr.TRAIN_ERROR)),
        "train_loss": _finite(attrs.get(Attr.TRAIN_LOSS)),
        "images_per_s": _finite(attrs.get(Attr.IMAGES_PER_S)),
        "wall_s": _finite(attrs.get(Attr.WALL_S)),
        "started_at": _utc(trial.datetime_start),
        "completed_at": _utc(trial.datetime_complete),
        "error": attrs.get(Attr.ERROR) if isinstance(attrs.get(Attr.ERROR), str) else None,
    }


def trials_csv(rows: Iterable[dict[str, Any]], *, extra: dict[str, str] | None = None) -> str:
    """CSV text with a header line; `extra` columns (e.g. the sweep id) are prepended to every row."""
    extra = extra or {}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*extra, *TRIAL_COLUMNS])
    for row in rows:
        cells = []
        for column in TRIAL_COLUMNS:
            value = row[column]
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, float):
                value = repr(value)  # round-trips exactly
            cells.append("" if value is None else value)
        writer.writerow([*extra.values(), *cells])
    return buffer.getvalue()


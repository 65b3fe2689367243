"""What the Optuna record says about a sweep, as the API shows it: summaries, trial rows, CSV export.

Counts and best cells come from the record layer's one reader (`hpscape.landscapes.sweep_summary`, aggregate
queries on a database); trial rows from Optuna's public API.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from hpscape.landscapes import SweepSpec, study_key, study_name, sweep_summary
from hpscape.landscapes.record import Attr

__all__ = ["TRIAL_COLUMNS", "load_trials", "summarize", "trial_columns", "trial_row", "trials_csv"]

# The columns of every trial row; the swept axes' columns (named after them) come after "state".
TRIAL_COLUMNS = (
    "variant", "facet", "number", "state", "seed", "value", "epochs_done", "epochs_budget", "diverged",
    "stopped_early", "test_error", "test_loss", "train_error", "train_loss", "images_per_s", "wall_s", "started_at",
    "completed_at", "error", "hyperparameters", "history",
)


def load_trials(storage: BaseStorage, record_name: str, spec: SweepSpec) -> dict[str, list[FrozenTrial]]:
    """Every trial of each study (an empty list for a study not created yet), keyed by study key, spec order."""
    out: dict[str, list[FrozenTrial]] = {}
    for variant, facet in spec.studies():
        key = study_key(variant, facet)
        try:
            study_id = storage.get_study_id_from_name(study_name(record_name, variant, facet))
        except KeyError:
            out[key] = []
            continue
        out[key] = storage.get_all_trials(study_id, deepcopy=False)
    return out


def summarize(storage: BaseStorage, record_name: str, spec: SweepSpec) -> dict[str, dict[str, Any]]:
    """Per study key: counts by state, diverged count, the best cell, and how many trials the spec plans."""
    summary = sweep_summary(storage, record_name, spec.studies())
    for variant, facet in spec.studies():
        summary[study_key(variant, facet)]["total"] = spec.study_trials(variant)
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


def trial_row(key: str, trial: FrozenTrial) -> dict[str, Any]:
    """One trial as a flat, JSON-ready record: TRIAL_COLUMNS plus "params" (the swept axes' values)."""
    attrs = trial.user_attrs
    epochs_done = attrs.get(Attr.EPOCHS_DONE)
    epochs_budget = attrs.get(Attr.EPOCHS_BUDGET)
    seed = attrs.get(Attr.SEED)
    variant, _, facet = key.partition("/")
    history = attrs.get(Attr.HISTORY)
    values = attrs.get(Attr.HYPERPARAMETERS)
    return {
        "variant": variant,
        "facet": facet or None,
        "number": trial.number,
        "state": trial.state.name,
        "params": {name: value for name, value in trial.params.items()},
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
        "hyperparameters": values if isinstance(values, dict) else None,
        "history": history if isinstance(history, list) else None,
    }


def trial_columns(axes: Iterable[str]) -> list[str]:
    """The CSV header: TRIAL_COLUMNS with the swept axes' columns after "state"."""
    base = list(TRIAL_COLUMNS)
    at = base.index("state") + 1
    return [*base[:at], *axes, *base[at:]]


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)  # round-trips exactly
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value  # a spreadsheet would run it as a formula (CSV injection)
    return value


def trials_csv(rows: Iterable[dict[str, Any]], axes: Iterable[str], *, extra: dict[str, str] | None = None) -> str:
    """CSV text with a header line; the history and hyperparameters are compact JSON in their columns.

    `extra` columns (e.g. the sweep id) are prepended to every row.
    """
    extra = extra or {}
    axes = list(axes)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*extra, *trial_columns(axes)])
    for row in rows:
        values = {**row, **{axis: row["params"].get(axis) for axis in axes}}
        writer.writerow([*extra.values(), *(_cell(values[column]) for column in trial_columns(axes))])
    return buffer.getvalue()

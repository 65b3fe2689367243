"""Trial details for a cell: the trial table and every recorded curve of the chosen trials."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from optuna.study import Study
from optuna.trial import FrozenTrial

from ..record import _optuna
from ..record.attrs import Attr
from ..record.studies import stored_spec
from ..vocabulary import LANDSCAPE_METRICS
from .reader import CATEGORY_NAMES, DIVERGED, DONE, FAILED, STATE_CODES, STOPPED, View, read_columns
from .types import LandscapeError

__all__ = ["trial_details"]


def trial_details(
    study: Study,
    numbers: Sequence[int] | None = None,
    *,
    metric: str = "test_error",
    limit: int = 20,
) -> list[dict[str, Any]]:
    """Rows for a trial table, each with its params, curve (epoch, objective) and whole per-epoch history.

    `numbers` picks the trials (unknown numbers are skipped); without it, the `limit` finished trials with the
    lowest final `metric`. JSON-ready (NaN as None).
    """
    if metric not in LANDSCAPE_METRICS:
        raise LandscapeError(f"unknown metric {metric!r}; choose one of {', '.join(LANDSCAPE_METRICS)}")
    spec = stored_spec(study)
    spec_metric = spec.metric if spec is not None else "test_error"
    storage, study_id = _optuna.storage_of(study), _optuna.study_id_of(study)
    if numbers is None:
        y, x = spec.swept_axes if spec is not None else ("lr", "weight_decay")
        cols = read_columns(storage, study_id, View(metric, None, spec_metric, "final", y, x))
        ok = np.flatnonzero(np.isfinite(cols.value))
        order = ok[np.lexsort((cols.number[ok], cols.value[ok]))][: max(0, int(limit))]
        numbers = cols.number[order].tolist()
    rows = []
    for number in numbers:
        try:
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, int(number))
        except KeyError:
            continue
        rows.append(_trial_row(storage.get_trial(trial_id), metric, spec_metric))
    return rows


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _trial_row(trial: FrozenTrial, metric: str, spec_metric: str) -> dict[str, Any]:
    attrs = trial.user_attrs
    category = STATE_CODES.get(trial.state.name, FAILED)
    if category == DONE and (attrs.get(Attr.DIVERGED) is True or trial.value is None
                             or not math.isfinite(trial.value)):
        category = DIVERGED
    value = _number(attrs.get(metric))
    if value is None and metric == spec_metric and trial.value is not None:
        value = _number(trial.value)
    if category not in (DONE, STOPPED):
        value = None
    history = attrs.get(Attr.HISTORY)
    return {
        "number": trial.number,
        "state": CATEGORY_NAMES[category],
        "params": dict(trial.params),
        "hyperparameters": attrs.get(Attr.HYPERPARAMETERS),
        "seed": attrs.get(Attr.SEED),
        "epochs_done": attrs.get(Attr.EPOCHS_DONE),
        "epochs_budget": attrs.get(Attr.EPOCHS_BUDGET),
        "value": value,
        **{name: _number(attrs.get(name)) for name in LANDSCAPE_METRICS},
        "error": attrs.get(Attr.ERROR),
        "curve_metric": spec_metric,
        "curve": [[int(step), _number(v)] for step, v in sorted(trial.intermediate_values.items())],
        "history": history if isinstance(history, list) else None,
    }

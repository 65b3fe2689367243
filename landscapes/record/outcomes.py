"""Recording a trial's epochs and its end: COMPLETE, diverged, PRUNED (stopped early) or FAIL.

Every write addresses the trial by number and is idempotent, so a resumed worker may repeat itself. Writes that
arrive after the trial finished are ignored and reported by a False return, never by an exception.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from optuna.exceptions import UpdateFinishedTrialError
from optuna.study import Study
from optuna.trial import TrialState

from . import _optuna
from .attrs import BOOKKEEPING, Attr, diverged_value
from .studies import get_trial, trial_id

__all__ = [
    "fail_trial",
    "finish_trial",
    "reconcile_orphans",
    "record_epoch",
    "running_trials",
    "set_trial_attrs",
    "stop_trial",
]

# Tracebacks can be long; the end holds the exception itself.
_MAX_ERROR_CHARS = 10_000


def _check_positive_int(value: Any, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be an integer >= 1, got {value!r}")


def _json_number(value: Any) -> Any:
    # JSON has no NaN/inf (HTTP responses would fail to encode them): None marks "undefined".
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    number = float(value)
    return number if math.isfinite(number) else None


def _metric_attrs(metrics: Mapping[str, float]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if key in BOOKKEEPING:
            raise ValueError(f"metric name {key!r} is reserved for trial bookkeeping; rename the metric")
        if key == Attr.DIVERGED:
            out[key] = bool(value)
            continue
        out[key] = _json_number(float(value))
    return out


def _history_attr(history: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    epochs = [int(entry["epoch"]) for entry in history]
    if epochs != list(range(1, len(epochs) + 1)):
        raise ValueError(f"a history holds epochs 1, 2, ... in order, got {epochs}")
    return [{key: _json_number(value) for key, value in entry.items()} for entry in history]


def _objective(metrics: Mapping[str, float], objective: str) -> float:
    if objective not in metrics:
        raise KeyError(f"metrics have no {objective!r} (the objective); got {', '.join(sorted(metrics))}")
    return float(metrics[objective])


def record_epoch(
    study: Study,
    number: int,
    epoch: int,
    metrics: Mapping[str, float],
    *,
    objective: str,
    history: Sequence[Mapping[str, Any]] | None = None,
) -> bool:
    """Store epoch `epoch` (from 1): the objective as intermediate value, every metric as attr, and `history`.

    `history` is the trial's whole per-epoch record up to this epoch (one dict per epoch, epochs 1..epoch), kept
    as the user attr ``history``; a resumed worker passes its checkpoint's, so the record stays exact. Repeating an
    epoch overwrites it. A non-finite objective is stored as `diverged_value(objective)`. Returns False (and writes
    nothing) if the trial already finished.
    """
    _check_positive_int(epoch, "epoch")
    attrs = _metric_attrs(metrics)
    if history is not None:
        attrs[Attr.HISTORY] = _history_attr(history)
        if len(history) != epoch:
            raise ValueError(f"the history of epoch {epoch} must hold {epoch} entries, got {len(history)}")
    value = _objective(metrics, objective)
    if not math.isfinite(value):
        value = diverged_value(objective)
    storage, tid = _optuna.storage_of(study), trial_id(study, number)
    try:
        for key, attr in attrs.items():
            storage.set_trial_user_attr(tid, key, attr)
        storage.set_trial_user_attr(tid, Attr.EPOCHS_DONE, epoch)
        storage.set_trial_intermediate_value(tid, epoch, value)
    except UpdateFinishedTrialError:
        return False
    return True


def set_trial_attrs(study: Study, number: int, attrs: Mapping[str, Any]) -> bool:
    """Set user attrs of trial `number` (bookkeeping such as the worker's host); False if it already finished."""
    storage, tid = _optuna.storage_of(study), trial_id(study, number)
    try:
        for key, value in attrs.items():
            storage.set_trial_user_attr(tid, key, value)
    except UpdateFinishedTrialError:
        return False
    return True


def finish_trial(
    study: Study,
    number: int,
    metrics: Mapping[str, float],
    *,
    objective: str,
    diverged: bool = False,
) -> bool:
    """Mark the trial COMPLETE with value ``metrics[objective]``; True if this call finished it.

    A diverged trial (`diverged`, a true ``metrics["diverged"]``, or a non-finite objective) is COMPLETE with
    ``diverged=True`` and the value `diverged_value(objective)`. A trial that already finished is left as it is.
    """
    attrs = _metric_attrs(metrics)
    value = _objective(metrics, objective)
    diverged = bool(diverged) or bool(attrs.get(Attr.DIVERGED)) or not math.isfinite(value)
    if diverged:
        value = diverged_value(objective)
    attrs[Attr.DIVERGED] = diverged
    return _finish(study, number, TrialState.COMPLETE, [value], attrs)


def stop_trial(study: Study, number: int, *, epochs_done: int) -> bool:
    """Mark a trial stopped early by a scheduler (ASHA) PRUNED, valued at its last epoch."""
    if isinstance(epochs_done, bool) or not isinstance(epochs_done, int) or epochs_done < 0:
        raise ValueError(f"epochs_done must be an integer >= 0, got {epochs_done!r}")
    trial = get_trial(study, number)
    values = None
    if trial.last_step is not None:
        last = trial.intermediate_values[trial.last_step]
        if math.isfinite(last):
            values = [last]
    attrs = {Attr.STOPPED_EARLY: True, Attr.EPOCHS_DONE: epochs_done}
    return _finish(study, number, TrialState.PRUNED, values, attrs)


def fail_trial(study: Study, number: int, error: str) -> bool:
    """Mark a trial FAIL with `error` (the tail of it, if very long) in user attr ``error``."""
    message = str(error)
    if len(message) > _MAX_ERROR_CHARS:
        message = "..." + message[-(_MAX_ERROR_CHARS - 3) :]
    return _finish(study, number, TrialState.FAIL, None, {Attr.ERROR: message})


def _finish(study: Study, number: int, state: TrialState, values: list[float] | None,
            attrs: Mapping[str, Any]) -> bool:
    storage, tid = _optuna.storage_of(study), trial_id(study, number)
    if storage.get_trial(tid).state.is_finished():
        return False
    try:
        for key, value in attrs.items():
            storage.set_trial_user_attr(tid, key, value)
        # The state change runs under a row lock: of two racing finishers one raises here.
        return storage.set_trial_state_values(tid, state, values)
    except UpdateFinishedTrialError:
        return False


def running_trials(study: Study) -> list[int]:
    """Numbers of the trials now RUNNING, ascending."""
    return [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]


def reconcile_orphans(study: Study, numbers: Iterable[int] | None = None) -> list[int]:
    """Trials left RUNNING by a dead driver (all, or those among `numbers`), ascending.

    They are not failed here: the caller resumes each under the same number, so its intermediate values and
    checkpoint stay with it.
    """
    running = running_trials(study)
    if numbers is None:
        return running
    wanted = set(numbers)
    return [n for n in running if n in wanted]

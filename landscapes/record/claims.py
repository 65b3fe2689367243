"""Creating trials and handing them out: grid cells enqueued once, claimed atomically; Bayesian asks."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.study import Study
from optuna.trial import TrialState, create_trial

from ..axes import Axis, get_axis
from ..keys import Cell, parse_study_name
from . import _optuna
from .attrs import Attr

__all__ = ["ask_bayes", "claim_next", "enqueue_cells"]

# A cell with a trial in one of these states is taken; a cell whose trials all FAILED is not.
_TAKEN_STATES = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)

ValuesOf = Callable[[Cell], Mapping[str, Any]]


def _check_positive_int(value: Any, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be an integer >= 1, got {value!r}")


def _distribution(axis: Axis, low: Any, high: Any, log: bool) -> BaseDistribution:
    if axis.kind == "int":
        return IntDistribution(int(low), int(high), log=log)
    return FloatDistribution(float(low), float(high), log=log)


def _grid_distribution(axis: Axis, values: Sequence[Any], in_use: BaseDistribution | None) -> BaseDistribution:
    """Log where the axis is log and holds no 0 (optuna-dashboard then draws a log axis), else linear.

    A study that already has trials keeps their log setting: Optuna refuses to mix the two for one param.
    """
    low, high = min(values), max(values)
    log = axis.log and low > 0
    if isinstance(in_use, (FloatDistribution, IntDistribution)):
        log = in_use.log and low > 0
    return _distribution(axis, low, high, log)


def _facet_label(study: Study) -> str | None:
    facet = parse_study_name(study.study_name)[2]
    return None if facet is None else facet.label


def _variant_of(study: Study) -> str:
    return parse_study_name(study.study_name)[1]


def enqueue_cells(
    study: Study,
    cells: Iterable[Cell],
    *,
    epochs_budget: int | None = None,
    values_of: ValuesOf | None = None,
) -> int:
    """Enqueue (WAITING) every cell that has no WAITING/RUNNING/COMPLETE/PRUNED trial yet.

    Idempotent: calling it again enqueues nothing new, except cells whose trials all FAILED (Optuna's GridSampler
    would count those as visited). `values_of(cell)` gives every axis value the cell trains with (stored as the
    trial's `hyperparameters`; its "epochs" is the budget); without it, every cell gets `epochs_budget`. Returns
    the number newly enqueued. Call it from one process per study (the driver): two concurrent callers could both
    enqueue the same missing cell.
    """
    if values_of is None:
        _check_positive_int(epochs_budget, "epochs_budget")
    cells = list(cells)
    if not cells:
        return 0
    axes = cells[0].axes
    for cell in cells:
        if cell.axes != axes:
            raise ValueError(f"cell {cell.key}: every cell of a study sweeps the same axes, {axes}")
        for name, value in cell.params.items():
            try:
                get_axis(name).check(value)
            except ValueError as exc:
                raise ValueError(f"cell {cell.key}: {name} {exc}") from None
    existing = study.get_trials(deepcopy=False)
    taken = {t.user_attrs.get(Attr.CELL) for t in existing if t.state in _TAKEN_STATES}
    in_use = next((t.distributions for t in existing if t.distributions), {})
    distributions = {
        name: _grid_distribution(get_axis(name), [c.params[name] for c in cells], in_use.get(name)) for name in axes
    }
    variant, facet = _variant_of(study), _facet_label(study)
    added = 0
    for cell in cells:
        if cell.key in taken:
            continue
        taken.add(cell.key)
        attrs: dict[str, Any] = {Attr.VARIANT: variant, Attr.SEED: cell.seed, Attr.CELL: cell.key}
        if facet is not None:
            attrs[Attr.FACET] = facet
        if values_of is not None:
            values = dict(values_of(cell))
            attrs[Attr.HYPERPARAMETERS] = values
            attrs[Attr.EPOCHS_BUDGET] = int(values["epochs"])
        else:
            attrs[Attr.EPOCHS_BUDGET] = epochs_budget
        study.add_trial(
            create_trial(
                state=TrialState.WAITING,
                params=cell.params,
                distributions=distributions,
                user_attrs=attrs,
                # What Study.enqueue_trial writes: a plain study.ask() then runs the same cell.
                system_attrs={"fixed_params": cell.params},
            )
        )
        added += 1
    return added


def claim_next(study: Study) -> int | None:
    """Atomically move the lowest-numbered WAITING trial to RUNNING; its number, or None."""
    storage = _optuna.storage_of(study)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if _claim(storage, _optuna.frozen_trial_id(trial)):
            return trial.number
    return None


def _claim(storage: BaseStorage, trial_id: int) -> bool:
    backend = _optuna.rdb_backend(storage)
    if backend is not None and backend.engine.dialect.name == "sqlite":
        return _optuna.claim_sqlite(backend, trial_id)
    try:
        # Under SELECT ... FOR UPDATE (PostgreSQL, MySQL): False when another process won.
        return storage.set_trial_state_values(trial_id, TrialState.RUNNING)
    except UpdateFinishedTrialError:
        return False


def ask_bayes(
    study: Study,
    *,
    ranges: Mapping[str, Sequence[float]],
    seed: int,
    epochs_budget: int | None = None,
    values_of: ValuesOf | None = None,
) -> int:
    """Sample a new RUNNING trial from the study's sampler inside two axes' [low, high] (log-uniform on log axes)."""
    if values_of is None:
        _check_positive_int(epochs_budget, "epochs_budget")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if len(ranges) != 2:
        raise ValueError(f"ranges must name exactly two axes, got {list(ranges)!r}")
    distributions = {}
    for name, bounds in ranges.items():
        axis = get_axis(name)
        if len(bounds) != 2:
            raise ValueError(f"the {name} range must be [low, high], got {list(bounds)!r}")
        low, high = (axis.check(int(b) if axis.kind == "int" else b) for b in bounds)
        if not low < high or (axis.log and low <= 0):
            raise ValueError(f"the {name} range must have {'0 < ' if axis.log else ''}low < high, got {[low, high]}")
        distributions[name] = _distribution(axis, low, high, axis.log)
    trial = study.ask(distributions)
    y, x = ranges
    cell = Cell(trial.params[y], trial.params[x], seed, (y, x))
    attrs: dict[str, Any] = {Attr.VARIANT: _variant_of(study), Attr.SEED: seed, Attr.CELL: cell.key}
    facet = _facet_label(study)
    if facet is not None:
        attrs[Attr.FACET] = facet
    if values_of is not None:
        values = dict(values_of(cell))
        attrs[Attr.HYPERPARAMETERS] = values
        attrs[Attr.EPOCHS_BUDGET] = int(values["epochs"])
    else:
        attrs[Attr.EPOCHS_BUDGET] = epochs_budget
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    return trial.number

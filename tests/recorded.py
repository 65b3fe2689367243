"""Write a whole sweep into a record the way workers would, from a formula instead of training (for view tests)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hpscape.landscapes import SPEC_ATTR, Facet, SweepSpec
from hpscape.landscapes.record import claim_next, enqueue_cells, finish_trial, make_storage, open_study, record_epoch

# (variant, facet, cell params, seed, epoch) -> the epoch's metrics
Metrics = Callable[[str, "Facet | None", dict[str, Any], int, int], dict[str, float]]


def record_sweep(url: str, spec: SweepSpec, metrics: Metrics) -> None:
    """Every trial of `spec` (every facet value), each with one history entry per epoch of its budget (only the last
    epoch's objective is an intermediate value)."""
    storage = make_storage(url)
    for variant, facet in spec.studies():
        study = open_study(storage, spec.name, variant, facet)
        study.set_user_attr(SPEC_ATTR, spec.model_dump(mode="json"))
        enqueue_cells(study, spec.cells(variant), values_of=lambda c, v=variant, f=facet: spec.trial_values(
            v, c.params, f))
        while (number := claim_next(study)) is not None:
            trial = study.trials[number]
            params, seed = dict(trial.params), int(trial.user_attrs["seed"])
            epochs = int(trial.user_attrs["epochs_budget"])
            history: list[dict[str, Any]] = []
            for epoch in range(1, epochs + 1):
                values = metrics(variant, facet, params, seed, epoch)
                history.append({"epoch": epoch, **values, "epoch_seconds": 0.5})
            # One write with the whole history (a worker writes one per epoch; the record ends up the same).
            record_epoch(study, number, epochs, history[-1], objective=spec.metric, history=history)
            finish_trial(study, number, history[-1], objective=spec.metric)
    storage.engine.dispose()

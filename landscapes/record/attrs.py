"""Names of what the record keeps per trial and per study, and the values a diverged trial gets."""

from __future__ import annotations

__all__ = ["DIVERGED_LOSS", "DIVERGED_VALUE", "SPEC_ATTR", "Attr", "diverged_value"]

# The study user attr holding the sweep's spec (JSON), written by the driver before any trial.
SPEC_ATTR = "sweep_spec"
# A diverged run (NaN/inf) still gets a defined, finite objective so that it is COMPLETE, sorts last, and plots
# as the worst colour: 100 % error, or a loss far above any trained model's.
DIVERGED_VALUE = 1.0
DIVERGED_LOSS = 1e3


class Attr:
    """Names of the trial user attrs."""

    VARIANT = "variant"
    SEED = "seed"
    CELL = "cell"  # Cell.key: "lr=...|wd=...|seed=..."
    FACET = "facet"  # "schedule=step" in a faceted sweep
    HYPERPARAMETERS = "hyperparameters"  # every axis value the trial trains with (lr, weight_decay, momentum, ...)
    EPOCHS_BUDGET = "epochs_budget"
    EPOCHS_DONE = "epochs_done"
    DIVERGED = "diverged"
    STOPPED_EARLY = "stopped_early"
    TEST_ERROR = "test_error"
    TEST_LOSS = "test_loss"
    TRAIN_LOSS = "train_loss"
    TRAIN_ERROR = "train_error"
    IMAGES_PER_S = "images_per_s"
    WALL_S = "wall_s"
    HISTORY = "history"  # one dict per finished epoch (vocabulary.HISTORY_FIELDS and more)
    ERROR = "error"
    WORKER = "worker"  # "host:pid" of the process that trains it (set by the worker)
    RESUMED_FROM_EPOCH = "resumed_from_epoch"  # last epoch restored from a checkpoint (0: fresh)


# Metrics may not overwrite these: they describe the trial, not a measurement. ("diverged" may be passed as a
# metric: it is stored as the boolean flag.)
BOOKKEEPING = frozenset(
    {
        Attr.VARIANT, Attr.SEED, Attr.CELL, Attr.FACET, Attr.HYPERPARAMETERS, Attr.EPOCHS_BUDGET, Attr.EPOCHS_DONE,
        Attr.STOPPED_EARLY, Attr.ERROR, Attr.WORKER, Attr.RESUMED_FROM_EPOCH, Attr.HISTORY,
    }
)


def diverged_value(objective: str) -> float:
    """The objective value recorded for a diverged trial: 1.0 for errors, 1e3 for losses."""
    return DIVERGED_VALUE if objective.endswith("error") else DIVERGED_LOSS

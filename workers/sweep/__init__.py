"""Sweeps on Ray Tune, recorded in Optuna: every grid cell exactly once, Bayesian search, crash-safe.

The engine (and with it Ray Tune) is imported on first use of one of its names: `hpscape.workers.sweep.retry` and
`hpscape.workers.sweep.placement` stay light for the controller and the driver, which import them without Ray.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hpscape.workers.sweep.engine import (
        PENDING_TIMEOUT_S,
        RECORD_ID_ATTR,
        SpecMismatch,
        SweepInterrupted,
        SweepOutcome,
        TrialsStalled,
        UnplaceableTrials,
        check_placement,
        prepare_sweep,
        record_id,
        recorded_spec,
        run_sweep,
        trial_config,
    )

__all__ = [
    "PENDING_TIMEOUT_S",
    "RECORD_ID_ATTR",
    "SpecMismatch",
    "SweepInterrupted",
    "SweepOutcome",
    "TrialsStalled",
    "UnplaceableTrials",
    "check_placement",
    "prepare_sweep",
    "record_id",
    "recorded_spec",
    "run_sweep",
    "trial_config",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        value = getattr(importlib.import_module("hpscape.workers.sweep.engine"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

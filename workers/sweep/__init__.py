"""Sweeps on Ray Tune, recorded in Optuna: every grid cell exactly once, Bayesian search, crash-safe."""

from hpscape.workers.sweep.engine import (
    SpecMismatch,
    SweepInterrupted,
    SweepOutcome,
    prepare_sweep,
    recorded_spec,
    run_sweep,
    trial_config,
)

__all__ = [
    "SpecMismatch",
    "SweepInterrupted",
    "SweepOutcome",
    "prepare_sweep",
    "recorded_spec",
    "run_sweep",
    "trial_config",
]

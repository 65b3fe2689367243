"""Sweeps on Ray Tune, recorded in Optuna: every grid cell exactly once, Bayesian search, crash-safe."""

from workers.sweep.engine import SweepInterrupted, SweepOutcome, prepare_sweep, recorded_spec, run_sweep, trial_config

__all__ = ["SweepInterrupted", "SweepOutcome", "prepare_sweep", "recorded_spec", "run_sweep", "trial_config"]

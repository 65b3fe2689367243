"""Argument checks shared by the optimizers, the decay helpers and the schedules.

Each raises ValueError naming the argument and what is accepted, so a bad sweep spec fails before training starts.
"""

from __future__ import annotations

__all__ = ["check_nonnegative", "check_positive_int", "check_unit_interval"]


def check_nonnegative(name: str, value: float) -> None:
    """`value` >= 0; the comparison is written so that NaN fails too."""
    if not (value >= 0.0):
        raise ValueError(f"{name} must be >= 0, got {value!r}; pass a non-negative number.")


def check_unit_interval(name: str, value: float) -> None:
    """`value` in [0, 1): momentum, betas and rho (1 would freeze the average)."""
    if not (0.0 <= value < 1.0):
        raise ValueError(f"{name} must be in [0, 1), got {value!r}.")


def check_positive_int(name: str, value: int) -> None:
    """`value` is an int >= 1 (a bool is refused: True would silently mean 1)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")

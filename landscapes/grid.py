"""Helpers for building grids: powers of two and the Figure 2 decay ticks."""

from __future__ import annotations

__all__ = ["FIG2_DECAY_SCALE", "FIG2_DECAY_TICKS", "fig2_weight_decays", "powers_of_two"]

# docs/science.md, "Figure 2": the decay axis of all four panels is {0, 1/32, ..., 16} x 0.001. The 0 is its own column
# because a log axis cannot show it.
FIG2_DECAY_TICKS: tuple[float, ...] = (0.0, *(2.0**k for k in range(-5, 5)))
FIG2_DECAY_SCALE = 0.001


def powers_of_two(lo_exp: int, hi_exp: int, scale: float = 1.0, *, step: int = 1) -> list[float]:
    """``[scale * 2**k for k in lo_exp..hi_exp by step]`` (both ends included when step divides the span).

    Scaling by a power of two is exact in binary floating point, so these values print and compare identically
    wherever they are rebuilt.
    """
    if isinstance(lo_exp, bool) or isinstance(hi_exp, bool):
        raise TypeError("powers_of_two: exponents must be integers, got a boolean")
    if not isinstance(lo_exp, int) or not isinstance(hi_exp, int):
        raise TypeError(f"powers_of_two: exponents must be integers, got {lo_exp!r}, {hi_exp!r}")
    if lo_exp > hi_exp:
        raise ValueError(f"powers_of_two: lo_exp {lo_exp} must not exceed hi_exp {hi_exp}")
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise ValueError(f"powers_of_two: step must be a positive integer, got {step!r}")
    return [scale * 2.0**k for k in range(lo_exp, hi_exp + 1, step)]


def fig2_weight_decays() -> list[float]:
    """The Figure 2 decay values: FIG2_DECAY_TICKS x 0.001 (11 values, starting at 0)."""
    return [tick * FIG2_DECAY_SCALE for tick in FIG2_DECAY_TICKS]

"""Per-iteration learning-rate schedules: the multiplier eta_t, as picklable callables, and its LambdaLR.

A scheduler drives each group's lr to lr_t = alpha * eta_t (alpha = ``initial_lr``); the decoupled decay reads
eta_t back as lr_t / initial_lr (see `decay`). The multipliers are dataclasses rather than lambdas because
LambdaLR's state_dict saves a callable's ``__dict__``, and sweeps pickle them across processes.
The schedule names are `hpscape.landscapes.vocabulary.SCHEDULES`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from hpscape.landscapes.vocabulary import SCHEDULES

from .checks import check_nonnegative, check_positive_int

__all__ = [
    "ConstantMultiplier",
    "CosineMultiplier",
    "StepMultiplier",
    "WarmRestartsMultiplier",
    "build_scheduler",
    "restart_period_epochs",
    "schedule_multiplier",
]


@dataclass
class ConstantMultiplier:
    """eta_t = 1."""

    def __call__(self, step: int) -> float:
        return 1.0


@dataclass
class CosineMultiplier:
    """eta_t = 0.5*(1 + cos(pi*t/total_steps)), clamped to 0 after total_steps."""

    total_steps: int

    def __post_init__(self) -> None:
        check_positive_int("total_steps", self.total_steps)

    def __call__(self, step: int) -> float:
        t = min(max(step, 0), self.total_steps)
        return 0.5 * (1.0 + math.cos(math.pi * t / self.total_steps))


@dataclass
class StepMultiplier:
    """eta_t = gamma ** (number of milestones reached); milestones are fractions of total_steps."""

    total_steps: int
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1

    def __post_init__(self) -> None:
        check_positive_int("total_steps", self.total_steps)
        self.milestones = tuple(float(m) for m in self.milestones)
        if any(not (0.0 <= m <= 1.0) for m in self.milestones):
            raise ValueError(f"milestones are fractions of total_steps and must lie in [0, 1], got {self.milestones}.")
        check_nonnegative("gamma", self.gamma)

    def __call__(self, step: int) -> float:
        # round() so that e.g. 0.75*total_steps = 29.999... still means iteration 30.
        reached = sum(1 for m in self.milestones if step >= round(m * self.total_steps))
        return float(self.gamma**reached)


@dataclass
class WarmRestartsMultiplier:
    """SGDR: cosine periods of ``period`` iterations, each next one ``t_mult`` times longer."""

    period: int
    t_mult: int = 2

    def __post_init__(self) -> None:
        check_positive_int("period (t0_epochs * steps_per_epoch)", self.period)
        check_positive_int("t_mult", self.t_mult)

    def period_of(self, step: int) -> tuple[int, int, int]:
        """(index i, iterations into it, length T_i in iterations) of the period iteration ``step`` lies in.

        ``step`` is 0-based; a negative one counts as 0. Period i is ``period * t_mult**i`` iterations long.
        """
        t_cur, t_i, index = max(step, 0), self.period, 0
        if self.t_mult == 1:
            return t_cur // t_i, t_cur % t_i, t_i
        while t_cur >= t_i:  # logarithmically many periods: cheap per call
            t_cur -= t_i
            t_i *= self.t_mult
            index += 1
        return index, t_cur, t_i

    def __call__(self, step: int) -> float:
        _, t_cur, t_i = self.period_of(step)
        return 0.5 * (1.0 + math.cos(math.pi * t_cur / t_i))


def restart_period_epochs(step: int, *, steps_per_epoch: int, t0_epochs: float = 10, t_mult: int = 2) -> float:
    """T_i: the length in epochs of the warm-restart period that iteration ``step`` (0-based) lies in.

    The periods are those `build_scheduler("warm_restarts", ...)` runs (the first ``round(t0_epochs *
    steps_per_epoch)`` iterations long, each next one ``t_mult`` times longer), so for whole ``t0_epochs`` this is
    exactly ``t0_epochs * t_mult**i``. The normalized weight decay of SGDWR/AdamWR uses it as T (paper B.2).
    """
    check_positive_int("steps_per_epoch", steps_per_epoch)
    if not t0_epochs > 0:
        raise ValueError(f"t0_epochs must be > 0, got {t0_epochs!r}.")
    restarts = WarmRestartsMultiplier(round(t0_epochs * steps_per_epoch), t_mult)
    return restarts.period_of(step)[2] / steps_per_epoch


def _make_multiplier(
    name: str,
    *,
    total_steps: int,
    steps_per_epoch: int,
    milestones: Sequence[float],
    gamma: float,
    t0_epochs: float,
    t_mult: int,
) -> Callable[[int], float]:
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}.")
    check_positive_int("total_steps", total_steps)
    check_positive_int("steps_per_epoch", steps_per_epoch)
    if name == "constant":
        return ConstantMultiplier()
    if name == "cosine":
        return CosineMultiplier(total_steps)
    if name == "step":
        return StepMultiplier(total_steps, tuple(milestones), gamma)
    if not t0_epochs > 0:
        raise ValueError(f"t0_epochs must be > 0, got {t0_epochs!r}.")
    return WarmRestartsMultiplier(round(t0_epochs * steps_per_epoch), t_mult)


def schedule_multiplier(
    name: str,
    step: int,
    *,
    total_steps: int,
    steps_per_epoch: int,
    milestones: Sequence[float] = (0.5, 0.75),
    gamma: float = 0.1,
    t0_epochs: float = 10,
    t_mult: int = 2,
) -> float:
    """The multiplier eta_t at iteration ``step`` (0-based) of schedule ``name``; pure function."""
    fn = _make_multiplier(
        name,
        total_steps=total_steps,
        steps_per_epoch=steps_per_epoch,
        milestones=milestones,
        gamma=gamma,
        t0_epochs=t0_epochs,
        t_mult=t_mult,
    )
    return fn(step)


def build_scheduler(
    name: str,
    optimizer: Optimizer,
    *,
    total_steps: int,
    steps_per_epoch: int,
    milestones: Sequence[float] = (0.5, 0.75),
    gamma: float = 0.1,
    t0_epochs: float = 10,
    t_mult: int = 2,
) -> LRScheduler:
    """Per-iteration LambdaLR for schedule ``name``; call ``.step()`` after every optimizer step.

    Iteration t (0-based) runs with lr = initial_lr * eta_t. Schedules (all of
    `hpscape.landscapes.vocabulary.SCHEDULES`): constant; cosine from 1 towards 0 over ``total_steps``;
    step (times ``gamma`` at each ``milestones`` fraction of ``total_steps``); warm_restarts (SGDR, first
    period ``t0_epochs*steps_per_epoch`` iterations, each next one ``t_mult`` times longer).
    """
    fn = _make_multiplier(
        name,
        total_steps=total_steps,
        steps_per_epoch=steps_per_epoch,
        milestones=milestones,
        gamma=gamma,
        t0_epochs=t0_epochs,
        t_mult=t_mult,
    )
    return LambdaLR(optimizer, lr_lambda=fn)

"""Why the landscapes differ, in a few lines of simulation (docs/science.md, "the effective step").

A weight vector that feeds a BatchNorm is scale-invariant: its gradient is orthogonal to it and shrinks like 1/|w|.
Gradient noise makes |w| grow, decay makes it shrink, and at equilibrium the weight turns by a fixed angle per step:

    SGD + L2 (lambda')              sqrt(2 * alpha * lambda' / (1 + mu))          depends on alpha*lambda' -> diagonal
    SGDW, paper AdamW (lambda)      sqrt(2 * lambda * (1 - mu) / (1 + mu))        independent of alpha -> upright

(mu is the momentum, or Adam's beta1.) `simulate_angular_update` drives the real optimizers of `hpscape.workers.optim`
with such gradients and measures the angle; `predicted_angular_update` is the formula.

Where it comes from: van Laarhoven 2017 ("L2 Regularization versus Batch and Weight Normalization": with
normalization, L2 acts through the effective learning rate); Zhang, Wang, Xu and Grosse 2019 ("Three Mechanisms of
Weight Decay Regularization"); Wan, Zhu, Zhang and Sun 2021 ("Spherical Motion Dynamics": the equilibrium angle
sqrt(2 * eta * lambda / (1 + mu)) for SGD with momentum); Kosson, Messmer and Jaggi 2023 ("Rotational Equilibrium":
the same for AdamW and other optimizers).
"""

from __future__ import annotations

import math

import torch

from hpscape.landscapes.variants import VARIANTS, get_variant
from hpscape.workers.optim import build_optimizer


def _has_closed_form(name: str) -> bool:
    variant = VARIANTS[name]
    if variant.decay == "l2":  # L2 inside an adaptive step is rescaled per coordinate: only plain SGD has one
        return "momentum" in variant.hyperparameters
    # Decoupled decay with heavy-ball momentum or Adam's first moment (AMSGrad's maximum changes only the scale
    # of the normalized step, which decoupled decay does not see).
    return variant.decay == "decoupled" and bool({"momentum", "beta1"} & set(variant.hyperparameters))


def predicted_angular_update(variant: str, *, lr: float, weight_decay: float, momentum: float = 0.9) -> float:
    """Equilibrium angle (radians) per step for a scale-invariant weight under a constant schedule.

    `momentum` is mu for the SGD family and beta1 for Adam's.
    """
    if not _has_closed_form(get_variant(variant).name):
        known = ", ".join(name for name in VARIANTS if _has_closed_form(name))
        raise ValueError(f"no closed form for {variant!r}; known: {known}")
    if VARIANTS[variant].decay == "l2":
        return math.sqrt(2 * lr * weight_decay / (1 + momentum))
    return math.sqrt(2 * weight_decay * (1 - momentum) / (1 + momentum))


def simulate_angular_update(
    variant: str,
    *,
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    dim: int = 512,
    steps: int = 3000,
    seed: int = 0,
) -> float:
    """Mean angle (radians) between consecutive weights over the second half of a noise-driven random walk.

    The gradient is pure noise projected orthogonal to w and scaled by 1/|w|: exactly what a scale-invariant loss gives
    when the signal is negligible next to minibatch noise, the regime the equilibrium argument describes.
    """
    generator = torch.Generator().manual_seed(seed)
    # Start on the unit sphere: the equilibrium norm is reached from there within a few 1/lambda steps for any alpha.
    start = torch.randn(dim, generator=generator, dtype=torch.float64)
    weight = torch.nn.Parameter(start / start.norm())
    optimizer = build_optimizer(
        variant, [weight], lr=lr, weight_decay=weight_decay, momentum=momentum, betas=(momentum, 0.999)
    )
    angles = []
    for step in range(steps):
        with torch.no_grad():
            noise = torch.randn(dim, generator=generator, dtype=torch.float64)
            unit = weight / weight.norm()
            weight.grad = (noise - (noise @ unit) * unit) / weight.norm()
            before = weight.detach().clone()
        optimizer.step()
        if step >= steps // 2:
            with torch.no_grad():
                cosine = (before @ weight) / (before.norm() * weight.norm())
                angles.append(math.acos(min(1.0, cosine.item())))
    return sum(angles) / len(angles)


__all__ = ["predicted_angular_update", "simulate_angular_update"]

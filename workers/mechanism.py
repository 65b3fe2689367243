"""Why the landscapes differ, in a few lines of simulation (docs/science.md, "the effective step").

A weight vector that feeds a BatchNorm is scale-invariant: its gradient is orthogonal to it and shrinks like 1/|w|.
Gradient noise makes |w| grow, decay makes it shrink, and at equilibrium the weight turns by a fixed angle per step
(eta_t is the schedule multiplier, lr_t = alpha * eta_t):

    SGD + L2 (lambda')              sqrt(2 * lr_t * lambda' / (1 + mu))             depends on alpha*lambda' -> diagonal
    SGDW, paper AdamW (lambda)      sqrt(2 * eta_t * lambda * (1 - mu) / (1 + mu))  independent of alpha -> upright
    torch's AdamW (lambda)          sqrt(2 * lr_t * lambda * (1 - mu) / (1 + mu))   couples to alpha again

(mu is the momentum, or Adam's beta1; 0 for RMSProp and AdaGrad.) `predicted_angular_update` is the formula, the one
the trainer's telemetry (`hpscape.workers.telemetry`) records next to the angle it measures; `simulate_angular_update`
drives the real optimizers of `hpscape.workers.optim` with such gradients and measures the angle.

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


def has_closed_form(variant: str) -> bool:
    """Whether `predicted_angular_update` knows the equilibrium of registry variant `variant`.

    Every decoupled or torch-form variant has one (the AdamW form below); of the L2 forms only the SGD family: L2
    inside an adaptive step (Adam, AMSGrad, RMSProp, AdaGrad with L2) is rescaled per coordinate by the gradient's own
    statistics, so the decay's effective size depends on the gradients and no closed form is known.
    """
    spec = get_variant(variant)
    if spec.decay == "l2":
        return "momentum" in spec.hyperparameters  # the SGD family: its step is linear in g + lambda' * theta
    return True


def first_moment(variant: str, *, momentum: float, beta1: float) -> float:
    """The variant's first-moment coefficient: mu for the SGD family, beta1 for Adam's and AMSGrad's, 0 otherwise."""
    hyperparameters = get_variant(variant).hyperparameters
    if "momentum" in hyperparameters:
        return momentum
    if "beta1" in hyperparameters:
        return beta1
    return 0.0  # RMSProp and AdaGrad keep no first moment


def effective_decay(variant: str, *, lr: float, weight_decay: float, eta: float = 1.0) -> float:
    """lambda_eff: the factor by which one step shrinks the weights directly, at schedule multiplier `eta`.

    ``eta * lambda`` for decoupled decay (never alpha), ``alpha * eta * lambda`` for torch's AdamW, and
    ``alpha * eta * lambda'`` (= lr_t * lambda') for L2, whose term enters the gradient and from there the step.
    """
    form = get_variant(variant).decay
    return eta * weight_decay if form == "decoupled" else lr * eta * weight_decay


def predicted_angular_update(
    variant: str, *, lr: float, weight_decay: float, momentum: float = 0.9, eta: float = 1.0
) -> float:
    """Equilibrium angle (radians) per step of a scale-invariant weight, at schedule multiplier eta_t = `eta`.

    `lr` is alpha and `weight_decay` lambda (decoupled, torch) or lambda' (L2); `momentum` is mu for the SGD family
    and beta1 for Adam's and AMSGrad's (see `first_moment`; RMSProp and AdaGrad have none and ignore it). The value
    is the instantaneous equilibrium at a constant eta_t: the weights reach it after a few 1 / lambda_eff steps and
    lag behind it while the schedule moves faster than that.

    - SGD + L2:  sqrt(2 * lr_t * lambda' / (1 + mu)), lr_t = alpha * eta_t (Wan et al. 2021, "Spherical Motion
      Dynamics"): L2 passes through the momentum, which multiplies its shrinkage by 1 / (1 - mu);
    - decoupled and torch's form: sqrt(2 * lambda_eff * (1 - mu) / (1 + mu)) with lambda_eff = `effective_decay`,
      i.e. eta_t * lambda for SGDW and the paper's AdamW (also AMSGradW, and RMSPropW, AdaGradW with mu = 0) and
      alpha * eta_t * lambda for torch's AdamW (Kosson, Messmer and Jaggi 2023, "Rotational Equilibrium"). The
      update's own size does not enter: the equilibrium norm adjusts to it. AdaGrad's steps shrink like
      1 / sqrt(t), so its weights trail this equilibrium slightly (3 % low in the simulation).

    ValueError for the L2 forms of the adaptive families (see `has_closed_form`).
    """
    if not has_closed_form(variant):
        known = ", ".join(name for name in VARIANTS if has_closed_form(name))
        raise ValueError(f"no closed form for {variant!r} (L2 inside an adaptive step); known: {known}")
    mu = first_moment(variant, momentum=momentum, beta1=momentum)
    decay = effective_decay(variant, lr=lr, weight_decay=weight_decay, eta=eta)
    if VARIANTS[variant].decay == "l2":
        return math.sqrt(2 * decay / (1 + mu))  # = sqrt(2 * (decay / (1 - mu)) * (1 - mu) / (1 + mu))
    return math.sqrt(2 * decay * (1 - mu) / (1 + mu))


def simulate_angular_update(
    variant: str,
    *,
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    eta: float = 1.0,
    dim: int = 512,
    steps: int = 3000,
    seed: int = 0,
) -> float:
    """Mean angle (radians) between consecutive weights over the second half of a noise-driven random walk.

    The gradient is pure noise projected orthogonal to w and scaled by 1/|w|: exactly what a scale-invariant loss gives
    when the signal is negligible next to minibatch noise, the regime the equilibrium argument describes. `eta` holds
    the schedule multiplier constant at eta_t (lr_t = alpha * eta_t, with alpha the optimizer's initial_lr), so the
    walk tests `predicted_angular_update` at any point of a schedule.
    """
    generator = torch.Generator().manual_seed(seed)
    # Start on the unit sphere: the equilibrium norm is reached from there within a few 1/lambda steps for any alpha.
    start = torch.randn(dim, generator=generator, dtype=torch.float64)
    weight = torch.nn.Parameter(start / start.norm())
    optimizer = build_optimizer(
        variant, [weight], lr=lr, weight_decay=weight_decay, momentum=momentum, betas=(momentum, 0.999)
    )
    for group in optimizer.param_groups:  # what a scheduler does: initial_lr stays alpha, lr becomes lr_t
        group.setdefault("initial_lr", lr)
        group["lr"] = lr * eta
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


__all__ = [
    "effective_decay",
    "first_moment",
    "has_closed_form",
    "predicted_angular_update",
    "simulate_angular_update",
]

"""The weight-decay rule, for every optimizer family: change how decay is applied here and nowhere else.

A param group decays in one of two forms (``group["decoupled"]``, from the registry's decay form):

- L2 (``decoupled=False``): g <- g + lambda' * theta, before the family's step reads g;
- decoupled (``decoupled=True``): the step is taken on the plain g, and theta <- theta - eta_t * lambda * theta_old,
  with eta_t = lr_t / initial_lr the schedule multiplier. The decay follows the schedule and never the initial
  learning rate alpha (Loshchilov & Hutter, Algorithms 1 and 2).

torch's own AdamW form (theta <- theta * (1 - alpha * eta_t * lambda), decay form "torch") is not implemented here:
`build_optimizer` returns `torch.optim.AdamW` itself for it.

Also here: `normalized_weight_decay`, the paper's lambda = lambda_norm * sqrt(b / (B * T)), and
`scheduled_weight_decay`, the raw factor a run's param groups carry at each iteration (which decay forms normalize,
and which T).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .checks import check_nonnegative, check_positive_int

__all__ = [
    "NORMALIZED_DECAY_FORMS",
    "WeightDecay",
    "normalized_weight_decay",
    "record_initial_lr",
    "schedule_eta",
    "scheduled_weight_decay",
]


def record_initial_lr(group: dict[str, Any]) -> None:
    """Remember the group's alpha as ``initial_lr``, the reference eta_t is measured against.

    ``setdefault``, exactly like torch's LRScheduler, so the optimizer and any scheduler agree on alpha whichever
    is created first.
    """
    group.setdefault("initial_lr", group["lr"])
    if group["decoupled"] and group["weight_decay"] != 0 and float(group["initial_lr"]) == 0.0:
        raise ValueError(
            "decoupled weight decay needs lr > 0: its schedule multiplier is "
            "eta_t = lr_t / initial_lr, which is undefined for initial_lr = 0."
        )


def schedule_eta(group: Mapping[str, Any]) -> float:
    """eta_t = lr_t / initial_lr: whatever scheduler drives ``group["lr"]``, this is its multiplier."""
    initial_lr = float(group["initial_lr"])
    if initial_lr == 0.0:
        raise RuntimeError("param group has initial_lr = 0; eta_t = lr_t / initial_lr is undefined.")
    return float(group["lr"]) / initial_lr


@dataclass(frozen=True)
class WeightDecay:
    """One param group's decay for the current step; a family calls both methods, and only one acts.

    A family's step is always: ``grads = decay.add_l2(grads, params)``, compute the update from ``grads`` (it
    must not read ``params``), ``decay.decay_decoupled_(params)``, then add the update to ``params``.
    """

    weight_decay: float  # lambda' (L2) or lambda (decoupled), raw per step
    decoupled: bool
    eta: float  # the schedule multiplier eta_t; 1.0 where nothing reads it

    @classmethod
    def of_group(cls, group: Mapping[str, Any]) -> WeightDecay:
        weight_decay = float(group["weight_decay"])
        decoupled = bool(group["decoupled"])
        # eta_t is only computed where it is used, so an L2 group with initial_lr = 0 still steps.
        eta = schedule_eta(group) if decoupled and weight_decay != 0 else 1.0
        return cls(weight_decay, decoupled, eta)

    def add_l2(self, grads: list[Tensor], params: list[Tensor]) -> list[Tensor]:
        """L2 form: g + lambda' * theta, as new tensors (``p.grad`` stays what autograd wrote); else ``grads``.

        The same kernel as torch's foreach optimizers (``_foreach_add(grads, params, alpha=wd)``), so the L2
        forms agree with torch bit for bit.
        """
        if self.decoupled or self.weight_decay == 0:
            return grads
        return torch._foreach_add(grads, params, alpha=self.weight_decay)

    def decay_decoupled_(self, params: list[Tensor]) -> None:
        """Decoupled form, in place: theta <- theta * (1 - eta_t * lambda); nothing for the L2 form.

        Called after the family has computed its update and before it adds it: the update does not depend on
        theta, so scaling first is exactly theta_new = theta_old - lr_t * update - eta_t * lambda * theta_old.
        """
        if not self.decoupled or self.weight_decay == 0:
            return
        torch._foreach_mul_(params, 1.0 - self.eta * self.weight_decay)


def normalized_weight_decay(lambda_norm: float, *, batch_size: int, train_size: int, epochs: float) -> float:
    """Raw per-step decay lambda = lambda_norm * sqrt(b / (B*T)) (paper Appendix B.1).

    ``batch_size`` is b, ``train_size`` is B and ``epochs`` is T: the total number of epochs for a
    single-cycle schedule, or the length in epochs of the current restart period for warm restarts
    (SGDR/AdamWR), so each period gets its own lambda.
    """
    check_nonnegative("lambda_norm", lambda_norm)
    check_positive_int("batch_size", batch_size)
    check_positive_int("train_size", train_size)
    if not epochs > 0:
        raise ValueError(f"epochs must be > 0, got {epochs!r}.")
    return lambda_norm * math.sqrt(batch_size / (train_size * epochs))


# The registry's decay forms (`hpscape.landscapes.variants.Variant.decay`) whose factor `normalized_decay` converts.
# - "decoupled" (SGDW, AdamW, ...): lambda = lambda_norm * sqrt(b / (B*T)), as the authors' code does.
# - "l2": the authors' code leaves an L2 factor lambda' raw, so it stays raw here even when normalized_decay is set.
# - "torch" (adamw-torch): also raw, by choice. torch.optim.AdamW multiplies its decay by lr_t = alpha * eta_t, so its
#   factor is not the paper's lambda (lambda_torch = lambda / alpha), and the paper's normalization, derived for a
#   decay that is applied once per step independently of alpha, does not carry over to it.
NORMALIZED_DECAY_FORMS = frozenset({"decoupled"})


def scheduled_weight_decay(
    weight_decay: float,
    *,
    decay_form: str,
    normalized: bool,
    batch_size: int,
    train_size: int,
    period_epochs: float,
) -> float:
    """The raw per-step factor the param groups carry: ``weight_decay`` itself, or lambda_norm converted.

    ``weight_decay`` is lambda_norm when ``normalized`` and ``decay_form`` is one of `NORMALIZED_DECAY_FORMS`; it is
    then converted with T = ``period_epochs``: the run's epochs for a single-cycle schedule, or the current restart
    period T_i for warm restarts (`schedules.restart_period_epochs`), so lambda changes at each restart. Otherwise
    (``normalized`` False, or an L2 / torch factor) it is returned raw.
    """
    if not (normalized and decay_form in NORMALIZED_DECAY_FORMS):
        return weight_decay
    return normalized_weight_decay(weight_decay, batch_size=batch_size, train_size=train_size, epochs=period_epochs)

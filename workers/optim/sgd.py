"""SGD with heavy-ball momentum: L2 (``sgd``) or decoupled (``sgdw``, Loshchilov & Hutter Algorithm 1)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from .base import ScheduledDecayOptimizer
from .checks import check_nonnegative, check_unit_interval
from .decay import WeightDecay

__all__ = ["SGDFamily"]


class SGDFamily(ScheduledDecayOptimizer):
    """SGD with momentum (dampening 0, no Nesterov), buffer starting at 0::

        g <- g + lambda' * theta                    (L2 form only)
        v <- mu * v + g
        theta <- theta - lr_t * v                   (decoupled form: - eta_t * lambda * theta_old as well)

    ``decoupled=False`` is numerically torch.optim.SGD(momentum, weight_decay). With ``momentum=0`` no momentum
    buffer is kept. State key: ``'momentum_buffer'``.
    """

    family = "sgd"
    options = ("momentum",)

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        *,
        decoupled: bool = False,
    ) -> None:
        check_nonnegative("lr", lr)
        check_nonnegative("weight_decay", weight_decay)
        check_unit_interval("momentum", momentum)
        defaults = {"lr": lr, "weight_decay": weight_decay, "momentum": momentum, "decoupled": decoupled}
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor, group: dict[str, Any]) -> None:
        if group["momentum"] != 0 and "momentum_buffer" not in self.state[p]:
            self.state[p]["momentum_buffer"] = self._zeros(p)

    def _step_bucket(
        self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor], decay: WeightDecay
    ) -> None:
        mu = float(group["momentum"])
        grads = decay.add_l2(grads, params)
        if mu != 0:
            update = [self.state[p]["momentum_buffer"] for p in params]
            # From a zero buffer, v1 = mu*0 + g = g exactly, as torch.optim.SGD's clone of the first gradient.
            torch._foreach_mul_(update, mu)
            torch._foreach_add_(update, grads)
        else:
            update = grads
        decay.decay_decoupled_(params)
        torch._foreach_add_(params, update, alpha=-float(group["lr"]))

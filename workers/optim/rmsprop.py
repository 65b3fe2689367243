"""RMSProp without momentum, not centered: L2 (``rmsprop``) or decoupled decay (``rmspropw``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from .base import ScheduledDecayOptimizer
from .checks import check_nonnegative, check_unit_interval
from .decay import WeightDecay

__all__ = ["RMSpropFamily"]


class RMSpropFamily(ScheduledDecayOptimizer):
    """RMSProp, squared-gradient average starting at 0::

        g <- g + lambda' * theta                    (L2 form only)
        v <- rho * v + (1 - rho) * g^2
        theta <- theta - lr_t * g / (sqrt(v) + eps) (decoupled form: - eta_t * lambda * theta_old as well)

    ``decoupled=False`` is numerically torch.optim.RMSprop(alpha=rho, eps=eps, weight_decay=wd) (torch calls
    rho ``alpha``; here alpha is the initial learning rate). ``eps=None``: the family's registry default.
    State key: ``'square_avg'``.
    """

    family = "rmsprop"
    options = ("rho", "eps")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        weight_decay: float = 0.0,
        rho: float = 0.99,
        eps: float | None = None,
        *,
        decoupled: bool = False,
    ) -> None:
        eps = self.default_eps() if eps is None else eps
        check_nonnegative("lr", lr)
        check_nonnegative("weight_decay", weight_decay)
        check_unit_interval("rho", rho)
        check_nonnegative("eps", eps)
        defaults = {"lr": lr, "weight_decay": weight_decay, "rho": rho, "eps": eps, "decoupled": decoupled}
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor, group: dict[str, Any]) -> None:
        if "square_avg" not in self.state[p]:
            self.state[p]["square_avg"] = self._zeros(p)

    def _step_bucket(
        self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor], decay: WeightDecay
    ) -> None:
        rho = float(group["rho"])
        square_avgs = [self.state[p]["square_avg"] for p in params]
        grads = decay.add_l2(grads, params)
        # torch.optim.RMSprop's foreach kernel sequence (_multi_tensor_rmsprop, centered=False, momentum=0).
        torch._foreach_mul_(square_avgs, rho)
        torch._foreach_addcmul_(square_avgs, grads, grads, value=1.0 - rho)
        avg = torch._foreach_sqrt(square_avgs)
        torch._foreach_add_(avg, float(group["eps"]))
        decay.decay_decoupled_(params)
        torch._foreach_addcdiv_(params, grads, avg, value=-float(group["lr"]))

"""AdaGrad: L2 (``adagrad``) or decoupled decay (``adagradw``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from .base import ScheduledDecayOptimizer
from .checks import check_nonnegative
from .decay import WeightDecay

__all__ = ["AdagradFamily"]


class AdagradFamily(ScheduledDecayOptimizer):
    """AdaGrad, sum of squared gradients starting at 0 (torch's lr_decay = 0)::

        g <- g + lambda' * theta                    (L2 form only)
        s <- s + g^2
        theta <- theta - lr_t * g / (sqrt(s) + eps) (decoupled form: - eta_t * lambda * theta_old as well)

    ``decoupled=False`` is numerically torch.optim.Adagrad(eps=eps, weight_decay=wd, foreach=True), and on CPU
    its single-tensor default too (see `_step_bucket`). ``eps=None``: the family's registry default (1e-10).
    State key: ``'sum'``.
    """

    family = "adagrad"
    options = ("eps",)

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        weight_decay: float = 0.0,
        eps: float | None = None,
        *,
        decoupled: bool = False,
    ) -> None:
        eps = self.default_eps() if eps is None else eps
        check_nonnegative("lr", lr)
        check_nonnegative("weight_decay", weight_decay)
        check_nonnegative("eps", eps)
        defaults = {"lr": lr, "weight_decay": weight_decay, "eps": eps, "decoupled": decoupled}
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor, group: dict[str, Any]) -> None:
        if "sum" not in self.state[p]:
            self.state[p]["sum"] = self._zeros(p)

    def _step_bucket(
        self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor], decay: WeightDecay
    ) -> None:
        sums = [self.state[p]["sum"] for p in params]
        grads = decay.add_l2(grads, params)
        # torch.optim.Adagrad's foreach kernel sequence (_multi_tensor_adagrad): theta + (-lr_t * g) / std. Its
        # single-tensor path writes addcdiv(g, std, value=-lr_t), which CPU's kernel also evaluates as
        # (-lr_t * g) / std; a kernel that divides first could differ in the last bit, the foreach path cannot.
        torch._foreach_addcmul_(sums, grads, grads, value=1)
        std = torch._foreach_sqrt(sums)
        torch._foreach_add_(std, float(group["eps"]))
        # A new list: with the decoupled form (or no decay) `grads` are the p.grad tensors themselves.
        numerator = torch._foreach_mul(grads, -float(group["lr"]))
        decay.decay_decoupled_(params)
        torch._foreach_addcdiv_(params, numerator, std)

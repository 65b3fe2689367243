"""Adam and AMSGrad, each with L2 (``adam``, ``amsgrad``) or decoupled decay (paper ``adamw``, ``amsgradw``).

Both run torch.optim.Adam's foreach kernels in torch's order, so the L2 forms equal torch.optim.Adam (with
``amsgrad=True`` for AMSGrad) bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from .base import ScheduledDecayOptimizer
from .checks import check_nonnegative, check_unit_interval
from .decay import WeightDecay

__all__ = ["AMSGradFamily", "AdamFamily"]


class AdamFamily(ScheduledDecayOptimizer):
    """Adam with bias correction, moments starting at 0; at step t::

        g <- g + lambda' * theta                    (L2 form only)
        m <- beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g^2
        theta <- theta - (lr_t / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
                                                    (decoupled form: - eta_t * lambda * theta_old as well)

    ``decoupled=False`` is numerically torch.optim.Adam(weight_decay=wd); ``decoupled=True`` is
    torch.optim.AdamW(weight_decay=wd/alpha). ``eps=None``: the family's registry default.
    State keys: ``'step'`` (int), ``'exp_avg'``, ``'exp_avg_sq'``.
    """

    family = "adam"
    options = ("betas", "eps")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float | None = None,
        *,
        decoupled: bool = False,
    ) -> None:
        eps = self.default_eps() if eps is None else eps
        check_nonnegative("lr", lr)
        check_nonnegative("weight_decay", weight_decay)
        check_nonnegative("eps", eps)
        if len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}.")
        check_unit_interval("betas[0]", betas[0])
        check_unit_interval("betas[1]", betas[1])
        defaults = {
            "lr": lr,
            "weight_decay": weight_decay,
            "betas": tuple(betas),
            "eps": eps,
            "decoupled": decoupled,
        }
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor, group: dict[str, Any]) -> None:
        state = self.state[p]
        if "step" not in state:
            state["step"] = 0
            state["exp_avg"] = self._zeros(p)
            state["exp_avg_sq"] = self._zeros(p)

    def _bucket_key(self, p: Tensor) -> Any:
        # One step count per bucket keeps the bias corrections one scalar each (normally a single bucket).
        return self.state[p]["step"]

    def _second_moment(self, params: list[Tensor], exp_avg_sqs: list[Tensor]) -> list[Tensor]:
        """The v the denominator uses: Adam's own."""
        return exp_avg_sqs

    def _step_bucket(
        self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor], decay: WeightDecay
    ) -> None:
        lr = float(group["lr"])
        beta1, beta2 = (float(b) for b in group["betas"])
        states = [self.state[p] for p in params]
        step = states[0]["step"] + 1
        for s in states:
            s["step"] = step
        exp_avgs = [s["exp_avg"] for s in states]
        exp_avg_sqs = [s["exp_avg_sq"] for s in states]
        grads = decay.add_l2(grads, params)
        # torch.optim.Adam's foreach kernel sequence (_multi_tensor_adam), for bitwise agreement.
        torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1.0 - beta2)
        bias_correction1 = 1.0 - beta1**step
        bias_correction2_sqrt = (1.0 - beta2**step) ** 0.5
        denom = torch._foreach_sqrt(self._second_moment(params, exp_avg_sqs))
        torch._foreach_div_(denom, bias_correction2_sqrt)
        torch._foreach_add_(denom, float(group["eps"]))
        decay.decay_decoupled_(params)
        torch._foreach_addcdiv_(params, exp_avgs, denom, value=-(lr / bias_correction1))


class AMSGradFamily(AdamFamily):
    """AMSGrad: Adam's m and v, and the denominator uses their running maximum (not bias-corrected first)::

        v_max <- max(v_max, v)
        theta <- theta - (lr_t / (1 - beta1^t)) * m / (sqrt(v_max) / sqrt(1 - beta2^t) + eps)

    ``decoupled=False`` is numerically torch.optim.Adam(amsgrad=True, weight_decay=wd).
    State keys: Adam's and ``'max_exp_avg_sq'``.
    """

    family = "amsgrad"

    def _init_state(self, p: Tensor, group: dict[str, Any]) -> None:
        super()._init_state(p, group)
        if "max_exp_avg_sq" not in self.state[p]:
            self.state[p]["max_exp_avg_sq"] = self._zeros(p)

    def _second_moment(self, params: list[Tensor], exp_avg_sqs: list[Tensor]) -> list[Tensor]:
        """v_max <- max(v_max, v), in place, as torch's amsgrad branch; the denominator reads v_max."""
        max_exp_avg_sqs = [self.state[p]["max_exp_avg_sq"] for p in params]
        torch._foreach_maximum_(max_exp_avg_sqs, exp_avg_sqs)
        return max_exp_avg_sqs

"""What every family shares: alpha recorded per group, the step loop, and grouping tensors for _foreach_ kernels.

A family subclasses `ScheduledDecayOptimizer`, names its registry family in ``family``, the `build_optimizer`
arguments it reads in ``options``, and implements `_step_bucket` (and `_init_state` if it keeps state).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.optim import Optimizer

from hpscape.landscapes.variants import FAMILIES

from .checks import check_nonnegative
from .decay import WeightDecay, record_initial_lr

__all__ = ["ScheduledDecayOptimizer"]


class ScheduledDecayOptimizer(Optimizer):
    """An optimizer whose groups hold ``lr``, ``weight_decay``, ``decoupled`` and ``initial_lr``.

    ``lr`` is lr_t = alpha * eta_t, driven by any ``torch.optim.lr_scheduler``; ``initial_lr`` is alpha, so the
    decoupled decay can read eta_t = lr_t / initial_lr (see `decay`).
    """

    family: ClassVar[str]  # the name of its family in hpscape.landscapes.variants.FAMILIES
    options: ClassVar[tuple[str, ...]] = ()  # the build_optimizer keyword arguments it reads besides lr, decay

    @classmethod
    def default_eps(cls) -> float:
        """The family's epsilon from the registry (docs/science.md, "The update rules"): no default written twice."""
        eps = FAMILIES[cls.family].eps
        if eps is None:
            raise TypeError(f"the {cls.family} family has no epsilon")
        return eps

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        check_nonnegative("lr", float(group["lr"]))
        check_nonnegative("weight_decay", float(group["weight_decay"]))
        record_initial_lr(group)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads = self._params_with_grad(group)
            if not params:
                continue
            for p in params:
                self._init_state(p, group)
            decay = WeightDecay.of_group(group)
            for idx in self._buckets(params):
                self._step_bucket(group, [params[i] for i in idx], [grads[i] for i in idx], decay)
        return loss

    def _init_state(self, p: Tensor, group: dict[str, Any]) -> None:
        """Create ``self.state[p]`` on a parameter's first step (zeros: every family's state starts at 0)."""

    def _bucket_key(self, p: Tensor) -> Any:
        """Beyond device and dtype, what must agree for one set of kernels (Adam: the step count)."""
        return None

    def _step_bucket(
        self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor], decay: WeightDecay
    ) -> None:
        """One step for tensors of one device and dtype: ``decay.add_l2``, update, ``decay.decay_decoupled_``, add."""
        raise NotImplementedError

    @staticmethod
    def _params_with_grad(group: dict[str, Any]) -> tuple[list[Tensor], list[Tensor]]:
        params: list[Tensor] = []
        grads: list[Tensor] = []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("sparse gradients are not supported; use dense parameters.")
            params.append(p)
            grads.append(p.grad)
        return params, grads

    def _buckets(self, params: list[Tensor]) -> list[list[int]]:
        """Indices grouped so each bucket can go through one set of _foreach_ kernels, like torch's grouping."""
        buckets: dict[tuple[Any, ...], list[int]] = {}
        for i, p in enumerate(params):
            buckets.setdefault((p.device, p.dtype, self._bucket_key(p)), []).append(i)
        return list(buckets.values())

    @staticmethod
    def _zeros(p: Tensor) -> Tensor:
        return torch.zeros_like(p, memory_format=torch.preserve_format)

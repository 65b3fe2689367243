"""Paper-exact optimizers and per-iteration LR schedules (PROTOCOL section 2).

Five optimizer variants compare L2 regularization with decoupled weight decay:

- ``sgd``         L2: g <- g + wd*theta; v <- mu*v + g; theta <- theta - lr_t*v
- ``sgdw``        v <- mu*v + g; theta <- theta - lr_t*v - eta_t*wd*theta_old
- ``adam``        L2 in the gradient, then a standard Adam step with lr_t
- ``adamw``       paper AdamW: Adam step on g, plus theta <- theta - eta_t*wd*theta_old
- ``adamw-torch`` literally ``torch.optim.AdamW`` (decay multiplied by lr_t = alpha*eta_t)

``lr_t`` is the param group's current ``'lr'`` (driven by any ``torch.optim.lr_scheduler``) and
``eta_t = group['lr'] / group['initial_lr']`` is the schedule multiplier, so decoupled decay
follows the schedule but never the initial learning rate alpha.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

__all__ = [
    "SCHEDULES",
    "VARIANTS",
    "AdamFamily",
    "ConstantMultiplier",
    "CosineMultiplier",
    "SGDFamily",
    "StepMultiplier",
    "WarmRestartsMultiplier",
    "build_optimizer",
    "build_scheduler",
    "normalized_weight_decay",
    "schedule_multiplier",
]

VARIANTS: tuple[str, ...] = ("sgd", "sgdw", "adam", "adamw", "adamw-torch")
SCHEDULES: tuple[str, ...] = ("constant", "cosine", "step", "warm_restarts")


# --------------------------------------------------------------------------------------------
# Optimizers
# --------------------------------------------------------------------------------------------


def _check_nonnegative(name: str, value: float) -> None:
    if not (value >= 0.0):  # also rejects NaN
        raise ValueError(f"{name} must be >= 0, got {value!r}; pass a non-negative number.")


def _check_unit_interval(name: str, value: float) -> None:
    if not (0.0 <= value < 1.0):
        raise ValueError(f"{name} must be in [0, 1), got {value!r}.")


class _ScheduledDecayOptimizer(Optimizer):
    """Shared plumbing: records ``initial_lr`` per group and derives eta_t from it."""

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        _check_nonnegative("lr", float(group["lr"]))
        _check_nonnegative("weight_decay", float(group["weight_decay"]))
        # setdefault, exactly like torch's LRScheduler, so both agree on the reference lr.
        group.setdefault("initial_lr", group["lr"])
        if group["decoupled"] and group["weight_decay"] != 0 and float(group["initial_lr"]) == 0.0:
            raise ValueError(
                "decoupled weight decay needs lr > 0: its schedule multiplier is "
                "eta_t = lr_t / initial_lr, which is undefined for initial_lr = 0."
            )

    @staticmethod
    def _eta(group: dict[str, Any]) -> float:
        initial_lr = float(group["initial_lr"])
        if initial_lr == 0.0:
            raise RuntimeError("param group has initial_lr = 0; eta_t = lr_t / initial_lr is undefined.")
        return float(group["lr"]) / initial_lr

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

    @staticmethod
    def _buckets(params: list[Tensor], extra_key: Callable[[Tensor], Any] | None = None) -> list[list[int]]:
        """Indices grouped so each bucket can go through one set of _foreach_ kernels."""
        buckets: dict[tuple[Any, ...], list[int]] = {}
        for i, p in enumerate(params):
            key = (p.device, p.dtype, extra_key(p) if extra_key is not None else None)
            buckets.setdefault(key, []).append(i)
        return list(buckets.values())


class SGDFamily(_ScheduledDecayOptimizer):
    """SGD with heavy-ball momentum (dampening 0, no Nesterov); L2 (``decoupled=False``) or SGDW.

    ``decoupled=False`` is numerically torch.optim.SGD(momentum, weight_decay). ``decoupled=True``
    applies theta <- theta - lr_t*v - eta_t*wd*theta_old (Loshchilov & Hutter, Algorithm 1).
    With ``momentum=0`` no momentum buffer is kept. State key: ``'momentum_buffer'``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        *,
        decoupled: bool = False,
    ) -> None:
        _check_nonnegative("lr", lr)
        _check_nonnegative("weight_decay", weight_decay)
        _check_unit_interval("momentum", momentum)
        defaults = {"lr": lr, "weight_decay": weight_decay, "momentum": momentum, "decoupled": decoupled}
        super().__init__(params, defaults)

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
            lr = float(group["lr"])
            wd = float(group["weight_decay"])
            mu = float(group["momentum"])
            decoupled = bool(group["decoupled"])
            eta = self._eta(group) if decoupled and wd != 0 else 1.0
            for idx in self._buckets(params):
                ps = [params[i] for i in idx]
                gs = [grads[i] for i in idx]
                if wd != 0 and not decoupled:
                    gs = torch._foreach_add(gs, ps, alpha=wd)
                if mu != 0:
                    bufs = [self._momentum_buffer(p) for p in ps]
                    # Zero-initialised buffer: v1 = mu*0 + g = g, as torch.optim.SGD's clone.
                    torch._foreach_mul_(bufs, mu)
                    torch._foreach_add_(bufs, gs)
                    update = bufs
                else:
                    update = gs
                if wd != 0 and decoupled:
                    # Decay uses theta_old; the momentum update does not depend on theta.
                    torch._foreach_mul_(ps, 1.0 - eta * wd)
                torch._foreach_add_(ps, update, alpha=-lr)
        return loss

    def _momentum_buffer(self, p: Tensor) -> Tensor:
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state["momentum_buffer"]


class AdamFamily(_ScheduledDecayOptimizer):
    """Adam with bias correction; L2 (``decoupled=False``) or paper AdamW (``decoupled=True``).

    ``decoupled=False`` is numerically torch.optim.Adam(weight_decay=wd). ``decoupled=True`` adds
    theta <- theta - eta_t*wd*theta_old, i.e. torch.optim.AdamW(weight_decay=wd/alpha).
    State keys: ``'step'`` (int), ``'exp_avg'``, ``'exp_avg_sq'``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        *,
        decoupled: bool = False,
    ) -> None:
        _check_nonnegative("lr", lr)
        _check_nonnegative("weight_decay", weight_decay)
        _check_nonnegative("eps", eps)
        if len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}.")
        _check_unit_interval("betas[0]", betas[0])
        _check_unit_interval("betas[1]", betas[1])
        defaults = {
            "lr": lr,
            "weight_decay": weight_decay,
            "betas": tuple(betas),
            "eps": eps,
            "decoupled": decoupled,
        }
        super().__init__(params, defaults)

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
                self._init_state(p)
            lr = float(group["lr"])
            wd = float(group["weight_decay"])
            beta1, beta2 = (float(b) for b in group["betas"])
            eps = float(group["eps"])
            decoupled = bool(group["decoupled"])
            eta = self._eta(group) if decoupled and wd != 0 else 1.0
            # Bucketing by step count keeps bias correction one scalar per bucket (normally one bucket).
            for idx in self._buckets(params, extra_key=lambda p: self.state[p]["step"]):
                ps = [params[i] for i in idx]
                gs = [grads[i] for i in idx]
                states = [self.state[p] for p in ps]
                step = states[0]["step"] + 1
                for s in states:
                    s["step"] = step
                exp_avgs = [s["exp_avg"] for s in states]
                exp_avg_sqs = [s["exp_avg_sq"] for s in states]
                if wd != 0 and not decoupled:
                    gs = torch._foreach_add(gs, ps, alpha=wd)
                # Same kernel sequence as torch.optim.Adam's foreach path, for bitwise agreement.
                torch._foreach_lerp_(exp_avgs, gs, 1.0 - beta1)
                torch._foreach_mul_(exp_avg_sqs, beta2)
                torch._foreach_addcmul_(exp_avg_sqs, gs, gs, 1.0 - beta2)
                bias_correction1 = 1.0 - beta1**step
                bias_correction2_sqrt = (1.0 - beta2**step) ** 0.5
                denom = torch._foreach_sqrt(exp_avg_sqs)
                torch._foreach_div_(denom, bias_correction2_sqrt)
                torch._foreach_add_(denom, eps)
                if wd != 0 and decoupled:
                    # Decay uses theta_old; the Adam update does not depend on theta.
                    torch._foreach_mul_(ps, 1.0 - eta * wd)
                torch._foreach_addcdiv_(ps, exp_avgs, denom, value=-(lr / bias_correction1))
        return loss

    def _init_state(self, p: Tensor) -> None:
        state = self.state[p]
        if "step" not in state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)


def build_optimizer(
    variant: str,
    params: Iterable[Any],
    *,
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> Optimizer:
    """Build one of :data:`VARIANTS`; ``weight_decay`` is lambda' (L2) or lambda (decoupled).

    ``momentum`` applies to the SGD variants, ``betas``/``eps`` to the Adam variants.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown optimizer variant {variant!r}; choose one of {', '.join(VARIANTS)}.")
    _check_nonnegative("lr", lr)
    _check_nonnegative("weight_decay", weight_decay)
    if variant in ("sgd", "sgdw"):
        return SGDFamily(params, lr=lr, weight_decay=weight_decay, momentum=momentum, decoupled=variant == "sgdw")
    if variant in ("adam", "adamw"):
        return AdamFamily(params, lr=lr, weight_decay=weight_decay, betas=betas, eps=eps, decoupled=variant == "adamw")
    return torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


# --------------------------------------------------------------------------------------------
# Schedules: multipliers eta_t as picklable callables (LambdaLR saves their __dict__)
# --------------------------------------------------------------------------------------------


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")


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
        _check_positive_int("total_steps", self.total_steps)

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
        _check_positive_int("total_steps", self.total_steps)
        self.milestones = tuple(float(m) for m in self.milestones)
        if any(not (0.0 <= m <= 1.0) for m in self.milestones):
            raise ValueError(f"milestones are fractions of total_steps and must lie in [0, 1], got {self.milestones}.")
        _check_nonnegative("gamma", self.gamma)

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
        _check_positive_int("period (t0_epochs * steps_per_epoch)", self.period)
        _check_positive_int("t_mult", self.t_mult)

    def __call__(self, step: int) -> float:
        t_cur, t_i = max(step, 0), self.period
        if self.t_mult == 1:
            t_cur %= t_i
        else:
            while t_cur >= t_i:  # logarithmically many periods: cheap per call
                t_cur -= t_i
                t_i *= self.t_mult
        return 0.5 * (1.0 + math.cos(math.pi * t_cur / t_i))


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
    _check_positive_int("total_steps", total_steps)
    _check_positive_int("steps_per_epoch", steps_per_epoch)
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

    Iteration t (0-based) runs with lr = initial_lr * eta_t. Schedules (all of :data:`SCHEDULES`):
    constant; cosine from 1 towards 0 over ``total_steps``; step (times ``gamma`` at each
    ``milestones`` fraction of ``total_steps``); warm_restarts (SGDR, first period
    ``t0_epochs*steps_per_epoch`` iterations, each next one ``t_mult`` times longer).
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


def normalized_weight_decay(lambda_norm: float, *, batch_size: int, train_size: int, epochs: float) -> float:
    """Raw per-step decay lambda = lambda_norm * sqrt(b / (B*T)) (paper Appendix B.1).

    ``batch_size`` is b, ``train_size`` is B and ``epochs`` is T: the total number of epochs for a
    single-cycle schedule, or the length in epochs of the current restart period for warm restarts
    (SGDR/AdamWR), so each period gets its own lambda.
    """
    _check_nonnegative("lambda_norm", lambda_norm)
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("train_size", train_size)
    if not epochs > 0:
        raise ValueError(f"epochs must be > 0, got {epochs!r}.")
    return lambda_norm * math.sqrt(batch_size / (train_size * epochs))

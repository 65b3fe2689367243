"""`build_optimizer`: a registry variant's name to its optimizer, reading family and decay form from the registry.

The variants are `hpscape.landscapes.variants.VARIANTS` (the only list of them); this module only knows which class
implements each registry *family*, and each class says which keyword arguments it reads (``options``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

import torch
from torch.optim import Optimizer

from hpscape.landscapes.variants import get_variant

from .adagrad import AdagradFamily
from .adam import AdamFamily, AMSGradFamily
from .base import ScheduledDecayOptimizer
from .checks import check_nonnegative
from .rmsprop import RMSpropFamily
from .sgd import SGDFamily

__all__ = ["FAMILY_OPTIMIZERS", "build_optimizer"]

# Registry family name -> the class that implements its step rule (each class names its own family).
FAMILY_OPTIMIZERS: Mapping[str, type[ScheduledDecayOptimizer]] = MappingProxyType(
    {cls.family: cls for cls in (SGDFamily, AdamFamily, AMSGradFamily, RMSpropFamily, AdagradFamily)}
)


def build_optimizer(
    variant: str,
    params: Iterable[Any],
    *,
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float | None = None,
    rho: float = 0.99,
) -> Optimizer:
    """The optimizer of registry variant ``variant``; ``weight_decay`` is lambda' (L2) or lambda (decoupled).

    ``lr`` is alpha, the initial learning rate (a scheduler then drives lr_t = alpha * eta_t). Each family reads
    its own arguments and ignores the others: ``momentum`` (SGD), ``betas`` and ``eps`` (Adam, AMSGrad), ``rho``
    and ``eps`` (RMSProp), ``eps`` (AdaGrad); ``eps=None`` is the family's registry default (1e-8, AdaGrad
    1e-10). Decay form "l2" and "decoupled" build this package's family classes; "torch" (``adamw-torch``) is
    literally ``torch.optim.AdamW(lr, betas, eps, weight_decay)``. An unknown name: ValueError listing the
    registry's.
    """
    spec = get_variant(variant)
    check_nonnegative("lr", lr)
    check_nonnegative("weight_decay", weight_decay)
    if eps is None:
        eps = spec.family.eps
    if spec.decay == "torch":
        if spec.family.name != AdamFamily.family:
            raise ValueError(f"{variant!r}: torch's decay form exists for Adam only (torch.optim.AdamW).")
        return torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    if spec.decay not in ("l2", "decoupled"):
        raise ValueError(f"{variant!r}: no optimizer implements decay form {spec.decay!r}.")
    family_class = FAMILY_OPTIMIZERS.get(spec.family.name)
    if family_class is None:
        raise ValueError(f"{variant!r}: no optimizer implements the {spec.family.name!r} family yet.")
    available = {"momentum": momentum, "betas": betas, "eps": eps, "rho": rho}
    options = {name: available[name] for name in family_class.options}
    return family_class(params, lr=lr, weight_decay=weight_decay, decoupled=spec.decay == "decoupled", **options)

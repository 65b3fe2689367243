"""Paper-exact optimizers and per-iteration LR schedules (docs/science.md, "The update rules").

Every variant of the registry (`hpscape.landscapes.variants.VARIANTS`) is a family's step rule with a decay form:

- ``sgd.py``      SGD with momentum: v <- mu*v + g; theta <- theta - lr_t*v
- ``adam.py``     Adam, and AMSGrad (the denominator uses v_max = max over steps of v)
- ``rmsprop.py``  RMSProp: v <- rho*v + (1-rho)*g^2; theta <- theta - lr_t*g/(sqrt(v) + eps)
- ``adagrad.py``  AdaGrad: s <- s + g^2; theta <- theta - lr_t*g/(sqrt(s) + eps)
- ``decay.py``    the decay rule every family uses: L2 (g <- g + lambda'*theta) or decoupled
                  (theta <- theta - eta_t*lambda*theta_old, eta_t = lr_t / initial_lr, never alpha)
- ``schedules.py`` the multipliers eta_t and their LambdaLR
- ``build.py``    `build_optimizer`: variant name -> optimizer, from the registry (``adamw-torch`` is torch's AdamW)

``lr_t`` is the param group's current ``'lr'`` (driven by any ``torch.optim.lr_scheduler``) and
``eta_t = group['lr'] / group['initial_lr']`` is the schedule multiplier.
"""

from __future__ import annotations

from .adagrad import AdagradFamily
from .adam import AdamFamily, AMSGradFamily
from .base import ScheduledDecayOptimizer
from .build import FAMILY_OPTIMIZERS, build_optimizer
from .decay import WeightDecay, normalized_weight_decay
from .rmsprop import RMSpropFamily
from .schedules import (
    ConstantMultiplier,
    CosineMultiplier,
    StepMultiplier,
    WarmRestartsMultiplier,
    build_scheduler,
    schedule_multiplier,
)
from .sgd import SGDFamily

__all__ = [
    "FAMILY_OPTIMIZERS",
    "AMSGradFamily",
    "AdagradFamily",
    "AdamFamily",
    "ConstantMultiplier",
    "CosineMultiplier",
    "RMSpropFamily",
    "SGDFamily",
    "ScheduledDecayOptimizer",
    "StepMultiplier",
    "WarmRestartsMultiplier",
    "WeightDecay",
    "build_optimizer",
    "build_scheduler",
    "normalized_weight_decay",
    "schedule_multiplier",
]

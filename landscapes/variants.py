"""The optimizer variants, as data: the one list of them in the project.

Every variant belongs to a *family* (the step rule on the gradient: SGD with momentum, Adam, AMSGrad, RMSProp,
AdaGrad) and applies weight decay in one of three *forms*:

- ``l2``: lambda' * theta is added to the gradient before the family's step (SGD, Adam, ... as usually written);
- ``decoupled``: the step is taken on the plain gradient, then theta <- theta - eta_t * lambda * theta_old, where
  eta_t is the schedule multiplier and never the initial learning rate alpha (Loshchilov & Hutter's SGDW, AdamW);
- ``torch``: ``torch.optim.AdamW``'s rule, theta <- theta * (1 - alpha * eta_t * lambda), which couples the decay
  to alpha again.

Spec validation, the optimizer builder (`hpscape.workers.optim`), the dashboards' pairing and labels, the CLI
choices and the docs all read `VARIANTS` and `FAMILIES`; a test checks that no other module lists variant names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

__all__ = [
    "DECAY_FORMS",
    "DEFAULT_VARIANT",
    "FAMILIES",
    "VARIANTS",
    "VARIANT_NAMES",
    "DecayForm",
    "Family",
    "Variant",
    "get_variant",
    "landscape_pairs",
    "lr_by_family",
    "variant_label",
]

DecayForm = Literal["l2", "decoupled", "torch"]
DECAY_FORMS: Mapping[str, str] = MappingProxyType(
    {
        "l2": "L2 regularization: lambda' * theta added to the gradient",
        "decoupled": "decoupled weight decay: theta <- theta - eta_t * lambda * theta_old (never times alpha)",
        "torch": "torch.optim.AdamW's decay: theta <- theta * (1 - alpha * eta_t * lambda)",
    }
)


@dataclass(frozen=True)
class Family:
    """A step rule on the gradient, with the hyperparameters it reads besides lr and weight decay."""

    name: str
    title: str  # as people write it: "SGD", "Adam", ...
    hyperparameters: tuple[str, ...]  # axis names (see `hpscape.landscapes.axes`) only this family has
    # Typical learning rates relative to SGD's: Figure 2 uses 2^-10..2^0 for SGD and 0.1 x those for Adam.
    lr_scale: float
    eps: float | None  # the family's default epsilon (docs/science.md, "The update rules"); None: the family has none
    rule: str  # the step on g, in one line (docs and --help)


@dataclass(frozen=True)
class Variant:
    """One optimizer variant: a family with a decay form, its landscape partner and its label."""

    name: str
    family: Family
    decay: DecayForm
    partner: str  # the variant its landscape is compared with (the L2 twin of a decoupled one, and back)
    label: str  # as the figures write it

    @property
    def decoupled(self) -> bool:
        """True when the decay is not part of the gradient (decoupled or torch's form)."""
        return self.decay != "l2"

    @property
    def hyperparameters(self) -> tuple[str, ...]:
        """The family-specific axes this variant reads (momentum for SGD, betas and eps for Adam, ...)."""
        return self.family.hyperparameters

    @property
    def decay_symbol(self) -> str:
        """lambda' for an L2 factor (it multiplies the gradient term), lambda for a decay rate."""
        return "λ′" if self.decay == "l2" else "λ"


FAMILIES: Mapping[str, Family] = MappingProxyType(
    {
        family.name: family
        for family in (
            Family("sgd", "SGD", ("momentum",), 1.0, None,
                   "v <- mu*v + g; theta <- theta - lr_t*v (dampening 0, no Nesterov)"),
            Family("adam", "Adam", ("beta1", "beta2", "eps"), 0.1, 1e-8,
                   "Adam moments with bias correction; theta <- theta - lr_t*m_hat/(sqrt(v_hat) + eps)"),
            Family("amsgrad", "AMSGrad", ("beta1", "beta2", "eps"), 0.1, 1e-8,
                   "Adam's moments, v_max <- max(v_max, v); the step divides by sqrt(v_max) (bias-corrected)"),
            Family("rmsprop", "RMSProp", ("rho", "eps"), 0.1, 1e-8,
                   "v <- rho*v + (1-rho)*g^2; theta <- theta - lr_t*g/(sqrt(v) + eps) (no momentum, not centered)"),
            # AdaGrad's steps shrink like 1/sqrt(t): its useful rates are SGD's (measured on quick: 0.1x barely trains).
            Family("adagrad", "AdaGrad", ("eps",), 1.0, 1e-10,
                   "s <- s + g^2; theta <- theta - lr_t*g/(sqrt(s) + eps)"),
        )
    }
)


def _variant(name: str, family: str, decay: DecayForm, partner: str, label: str) -> Variant:
    return Variant(name, FAMILIES[family], decay, partner, label)


# The canonical order: the paper's four first (Figure 2's panels), then torch's AdamW, then the other families.
VARIANTS: Mapping[str, Variant] = MappingProxyType(
    {
        v.name: v
        for v in (
            _variant("sgd", "sgd", "l2", "sgdw", "SGD (L2)"),
            _variant("sgdw", "sgd", "decoupled", "sgd", "SGDW"),
            _variant("adam", "adam", "l2", "adamw", "Adam (L2)"),
            _variant("adamw", "adam", "decoupled", "adam", "AdamW (paper)"),
            _variant("adamw-torch", "adam", "torch", "adamw", "AdamW (torch)"),
            _variant("amsgrad", "amsgrad", "l2", "amsgradw", "AMSGrad (L2)"),
            _variant("amsgradw", "amsgrad", "decoupled", "amsgrad", "AMSGradW"),
            _variant("rmsprop", "rmsprop", "l2", "rmspropw", "RMSProp (L2)"),
            _variant("rmspropw", "rmsprop", "decoupled", "rmsprop", "RMSPropW"),
            _variant("adagrad", "adagrad", "l2", "adagradw", "AdaGrad (L2)"),
            _variant("adagradw", "adagrad", "decoupled", "adagrad", "AdaGradW"),
        )
    }
)
VARIANT_NAMES: tuple[str, ...] = tuple(VARIANTS)
# What `hpscape train` and a bare TrialConfig use when no variant is named: the paper's SGDW.
DEFAULT_VARIANT = "sgdw"


def get_variant(name: str) -> Variant:
    """The registered variant `name`; ValueError listing the known ones otherwise."""
    try:
        return VARIANTS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown variant {name!r}; expected one of {', '.join(VARIANT_NAMES)}") from None


def variant_label(name: str) -> str:
    """The figures' label of a variant ("AdamW (paper)"); the name itself for an unknown one."""
    variant = VARIANTS.get(name)
    return variant.label if variant is not None else str(name)


def landscape_pairs(names: Iterable[str]) -> list[tuple[str, str | None]]:
    """How the figures lay out the landscapes of `names`: (left, right) pairs, then the unpaired alone.

    A pair is a variant and its partner, both present, in registry order (sgd | sgdw, adam | adamw, ...). torch's
    AdamW pairs with the paper's; when adam takes that place already, adamw-torch gets its own row with adamw on
    the left, so a variant can appear in two rows (the figure says so in its titles).
    """
    present = [name for name in VARIANT_NAMES if name in set(names)]
    rows: list[tuple[str, str | None]] = []
    for name in present:
        partner = VARIANTS[name].partner
        if partner in present and VARIANT_NAMES.index(partner) < VARIANT_NAMES.index(name):
            rows.append((partner, name))
    paired = {name for row in rows for name in row}
    rows += [(name, None) for name in present if name not in paired]
    return rows


def lr_by_family(variants: Iterable[str], sgd_rates: Iterable[float]) -> dict[str, list[float]]:
    """A per-variant lr grid: `sgd_rates` times each variant's family `lr_scale` (Adam's rows are 10x smaller).

    Values are computed as ``lr_scale * rate``, so Figure 2's Adam rows are exactly ``0.1 * 2**k``.
    """
    rates = list(sgd_rates)
    return {name: [get_variant(name).family.lr_scale * rate for rate in rates] for name in variants}

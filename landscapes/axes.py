"""The hyperparameters a sweep can vary, as data: the one list of axes in the project.

An axis knows its scale (how values are spaced and drawn: log2, log10, linear or categorical), what values are
valid, its symbol and unit (which optimizer families read it is the families' word, `Family.hyperparameters`), and
where its value comes from
when it is not swept: a field of the spec (epochs, batch_size, ...), a family default (eps), or a fixed default.

A spec's `grid` sweeps exactly two axes, its optional `facet` one more; `hyperparameters` fixes the optimizer axes
it does not sweep. Trial params in the Optuna record are keyed by these names.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from .variants import FAMILIES, Variant
from .vocabulary import SCHEDULES

__all__ = [
    "AXES",
    "AXIS_NAMES",
    "FACET_AXES",
    "GRID_AXES",
    "OPTIMIZER_AXES",
    "Axis",
    "AxisScale",
    "axis_applies",
    "axis_families",
    "family_default",
    "format_axis_value",
    "get_axis",
    "parse_axis_value",
]

AxisScale = Literal["log2", "log10", "linear", "categorical"]
AxisKind = Literal["float", "int", "str"]


def _positive(x: float) -> bool:
    return x > 0


def _non_negative(x: float) -> bool:
    return x >= 0


def _fraction(x: float) -> bool:
    return 0 <= x < 1


@dataclass(frozen=True)
class Axis:
    """One hyperparameter a sweep can vary."""

    name: str
    label: str  # "learning rate"
    symbol: str  # "α"
    unit: str  # "" for a pure number; shown after values ("epochs", "images", "per step")
    scale: AxisScale
    kind: AxisKind
    rule: str  # what a valid value is, for error messages: "> 0", "in [0, 1)", ...
    valid: Callable[[Any], bool]
    spec_field: str | None = None  # the top-level spec field it overrides per trial (epochs, batch_size, ...)
    default: Any = None  # the value when neither swept nor fixed (None: required, or from `spec_field`)
    zero_column: bool = False  # a log axis that may hold 0, drawn as its own column left of the others
    grid: bool = True  # may be one of the grid's two axes (schedule is a facet only)
    choices: tuple[str, ...] = ()  # a categorical axis's values

    @property
    def log(self) -> bool:
        return self.scale in ("log2", "log10")

    @property
    def title(self) -> str:
        """'learning rate α', 'batch size (images)'."""
        text = f"{self.label} {self.symbol}".strip()
        return f"{text} ({self.unit})" if self.unit else text

    def coordinate(self, value: float) -> float:
        """The value in the axis's own scale: log2/log10 of it on log axes (-inf for a 0), itself otherwise."""
        if self.scale == "log2":
            return math.log2(value) if value > 0 else -math.inf
        if self.scale == "log10":
            return math.log10(value) if value > 0 else -math.inf
        return float(value)

    def check(self, value: Any) -> Any:
        """`value` converted to the axis's kind; ValueError saying what is accepted."""
        if self.kind == "str":
            if not isinstance(value, str) or value not in self.choices:
                raise ValueError(f"must be one of {', '.join(self.choices)}, got {value!r}")
            return value
        if isinstance(value, bool):
            raise ValueError(f"must be a number, got {value!r}")
        if self.kind == "int":
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, int):
                raise ValueError(f"must be an integer {self.rule}, got {value!r}")
            if not self.valid(value):
                raise ValueError(f"must be an integer {self.rule}, got {value!r}")
            return value
        # Strings are accepted because YAML 1.1 reads "1e-3" (no dot) as a string.
        if not isinstance(value, (int, float, str)):
            raise ValueError(f"must be a number, got {value!r}")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"must be a number, got {value!r}") from None
        if not math.isfinite(number) or not self.valid(number):
            raise ValueError(f"must be a finite number {self.rule}, got {number!r}")
        return number + 0.0  # -0.0 would print as "-0.0" in cell keys


def _axis(**fields: Any) -> Axis:
    return Axis(**fields)


AXES: Mapping[str, Axis] = MappingProxyType(
    {
        axis.name: axis
        for axis in (
            _axis(name="lr", label="learning rate", symbol="α", unit="", scale="log2", kind="float", rule="> 0",
                  valid=_positive),
            # Raw per step: lambda' for an L2 factor, lambda for a decoupled decay (the figures say which).
            _axis(name="weight_decay", label="weight decay", symbol="λ", unit="", scale="log2", kind="float",
                  rule=">= 0", valid=_non_negative, default=0.0, zero_column=True),
            _axis(name="momentum", label="momentum", symbol="μ", unit="", scale="linear", kind="float",
                  rule="in [0, 1)", valid=_fraction, default=0.9),
            _axis(name="beta1", label="beta1", symbol="β₁", unit="", scale="linear", kind="float", rule="in [0, 1)",
                  valid=_fraction, default=0.9),
            _axis(name="beta2", label="beta2", symbol="β₂", unit="", scale="linear", kind="float", rule="in [0, 1)",
                  valid=_fraction, default=0.999),
            # Each family's own default (docs/science.md, "The update rules"): 1e-8, AdaGrad 1e-10.
            _axis(name="eps", label="epsilon", symbol="ε", unit="", scale="log10", kind="float", rule="> 0",
                  valid=_positive),
            _axis(name="rho", label="rho", symbol="ρ", unit="", scale="linear", kind="float", rule="in [0, 1)",
                  valid=_fraction, default=0.99),
            _axis(name="batch_size", label="batch size", symbol="b", unit="images", scale="log2", kind="int",
                  rule="between 1 and 65536", valid=lambda x: 1 <= x <= 65536, spec_field="batch_size"),
            _axis(name="epochs", label="epochs", symbol="T", unit="epochs", scale="log2", kind="int",
                  rule="between 1 and 10000", valid=lambda x: 1 <= x <= 10000, spec_field="epochs"),
            _axis(name="label_noise", label="label noise", symbol="", unit="fraction of labels", scale="linear",
                  kind="float", rule="in [0, 1)", valid=_fraction, spec_field="label_noise"),
            _axis(name="schedule", label="schedule", symbol="", unit="", scale="categorical", kind="str",
                  rule="", valid=lambda x: x in SCHEDULES, spec_field="schedule", grid=False, choices=SCHEDULES),
        )
    }
)
AXIS_NAMES: tuple[str, ...] = tuple(AXES)
GRID_AXES: tuple[str, ...] = tuple(name for name, axis in AXES.items() if axis.grid)
FACET_AXES: tuple[str, ...] = AXIS_NAMES
# The axes `hyperparameters` may fix: the optimizer's. The others are top-level spec fields.
OPTIMIZER_AXES: tuple[str, ...] = tuple(name for name, axis in AXES.items() if axis.spec_field is None)


def get_axis(name: str) -> Axis:
    """The registered axis `name`; ValueError listing the known ones otherwise."""
    try:
        return AXES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown axis {name!r}; expected one of {', '.join(AXIS_NAMES)}") from None


# An axis some family lists as its own is read by that family only; the others (lr, decay, epochs...) by every one.
_FAMILY_AXES = frozenset(name for family in FAMILIES.values() for name in family.hyperparameters)


def axis_families(axis: Axis) -> tuple[str, ...] | None:
    """The families that read `axis`, or None when every variant does."""
    if axis.name not in _FAMILY_AXES:
        return None
    return tuple(name for name, family in FAMILIES.items() if axis.name in family.hyperparameters)


def axis_applies(axis: Axis, variant: Variant) -> bool:
    """Whether `variant` reads `axis` (momentum: the SGD family; beta1: Adam and AMSGrad; lr: every variant)."""
    return axis.name not in _FAMILY_AXES or axis.name in variant.hyperparameters


def family_default(axis: Axis, variant: Variant) -> Any:
    """The value `variant` uses for an optimizer axis neither swept nor fixed (eps: the family's own)."""
    if axis.name == "eps":
        return FAMILIES[variant.family.name].eps
    return axis.default


def format_axis_value(value: Any) -> str:
    """A value as it appears in study names and cell keys: repr-exact for floats, plain for ints and strings."""
    if isinstance(value, bool):
        raise ValueError(f"an axis value cannot be a boolean, got {value!r}")
    if isinstance(value, float):
        return repr(value)
    return str(value)


def parse_axis_value(axis: Axis, text: str) -> Any:
    """Inverse of `format_axis_value` for `axis`."""
    if axis.kind == "str":
        return axis.check(text)
    if axis.kind == "int":
        return axis.check(int(text))
    return axis.check(float(text))

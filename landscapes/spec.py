"""The sweep specification: a model trained with several optimizer variants over two hyperparameters.

    hyperparameters: {lr: 0.001, weight_decay: 0.0005}   # optimizer values held fixed
    grid: {beta1: [0.5, 0.8, 0.9], beta2: [0.9, 0.99, 0.999]}   # exactly two axes; the first is vertical
    facet: {schedule: [constant, step, cosine]}          # optional third axis: one landscape set per value

Any axis's values may be given per variant (``lr: {sgd: [...], adam: [...], default: [...]}``). A `SweepSpec`
is validated once (pydantic v2, unknown fields rejected everywhere) and then trusted by the driver, the workers
and the service. Every validation message names the offending field, e.g. ``grid.lr[3]: must be a finite
number > 0, got nan``, and an axis a variant does not read is refused naming both.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

from .axes import (
    AXES,
    AXIS_NAMES,
    GRID_AXES,
    OPTIMIZER_AXES,
    Axis,
    axis_applies,
    family_default,
    get_axis,
)
from .errors import problem, problem_at
from .keys import Cell, Facet, study_name
from .variants import VARIANT_NAMES, VARIANTS, get_variant
from .vocabulary import DATASETS, METRICS, NAME_PATTERN, SCHEDULES, validate_model_name

__all__ = [
    "DEFAULT_KEY",
    "MAX_TOTAL_TRIALS",
    "BayesSpec",
    "FacetSpec",
    "GridSpec",
    "Resources",
    "SweepSpec",
]

# Sums over variants x cells x seeds x facet values (grid) or variants x n_trials x facet values (bayes): one
# sweep must stay a size a person meant to launch; fig2 is 484.
MAX_TOTAL_TRIALS = 5000
# Per-variant values: the list for every variant not named.
DEFAULT_KEY = "default"
# numpy's legacy seeding and many CUDA RNG paths take 32-bit seeds.
_MAX_SEED = 2**32 - 1

VariantName = Literal[VARIANT_NAMES]  # type: ignore[valid-type]
DatasetName = Literal[DATASETS]  # type: ignore[valid-type]
ScheduleName = Literal[SCHEDULES]  # type: ignore[valid-type]
MetricName = Literal[METRICS]  # type: ignore[valid-type]
_StrictInt = Annotated[int, Strict()]
Number = float | int
AxisValues = list[Number] | dict[str, list[Number]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _finite(value: Any, rule: str, ok: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise problem(f"must be a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise problem(f"must be a number, got {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")) or not ok(number):
        raise problem(f"must be a finite number {rule}, got {number!r}")
    return number + 0.0


def _check_unique(title: str, loc: tuple[str | int, ...], values: list[Any]) -> None:
    first_seen: dict[Any, int] = {}
    for index, value in enumerate(values):
        if value in first_seen:
            raise problem_at(title, (*loc, index),
                             f"duplicate of item [{first_seen[value]}] ({value!r}); list each value once", value)
        first_seen[value] = index


def _axis_list(title: str, loc: tuple[str | int, ...], axis: Axis, values: Any) -> list[Any]:
    """The values of one axis, each checked and converted (ints stay ints), at least one, none twice."""
    if not isinstance(values, list):
        raise problem_at(title, loc, f"must be a list of {axis.label} values, got {values!r}", values)
    if not values:
        raise problem_at(title, loc, f"must list at least one {axis.label} value", values)
    out = []
    for index, value in enumerate(values):
        try:
            out.append(axis.check(value))
        except ValueError as exc:
            raise problem_at(title, (*loc, index), str(exc), value) from None
    _check_unique(title, loc, out)
    return out


def _axis_values(title: str, where: str, axis_name: Any, values: Any) -> list[Any] | dict[str, list[Any]]:
    """A list for every variant, or a mapping variant (or `default`) -> list."""
    axis = AXES[axis_name]
    if isinstance(values, dict):
        if not values:
            raise problem_at(title, (axis_name,), "a per-variant mapping needs at least one variant (or `default`)",
                             values)
        out: dict[str, list[Any]] = {}
        for variant, listed in values.items():
            if variant != DEFAULT_KEY and variant not in VARIANTS:
                raise problem_at(title, (axis_name, str(variant)), f"unknown variant {variant!r}; expected one of "
                                 f"{', '.join(VARIANT_NAMES)}, or {DEFAULT_KEY!r} for the variants not named",
                                 variant)
            out[variant] = _axis_list(title, (axis_name, variant), axis, listed)
        return out
    if isinstance(values, list):
        return _axis_list(title, (axis_name,), axis, values)
    raise problem_at(title, (axis_name,), f"must be a list of {axis.label} values or a mapping from variant to a "
                     f"list, got {values!r}", values)


def _known_axis(title: str, name: Any, allowed: Iterable[str], what: str) -> None:
    allowed = tuple(allowed)
    if name in allowed:
        return
    if name in AXES:
        raise problem_at(title, (str(name),), f"{name} cannot be {what}; {what} may be: {', '.join(allowed)}", name)
    raise problem_at(title, (str(name),), f"unknown axis {name!r}; {what} may be: {', '.join(allowed)}", name)


# ---------------------------------------------------------------------------------------------
# Spec parts


MIN_CPU_SHARE = 0.05  # the smallest CPU share of a trial: 1e-300 CPUs would let Ray start hundreds of workers


class Resources(_Strict):
    """What one trial reserves: CPU cores (at least `MIN_CPU_SHARE`) and a (possibly fractional) share of GPUs."""

    cpu: float = 1.0
    gpu: float = 0.0

    @field_validator("cpu", mode="before")
    @classmethod
    def _cpu(cls, value: Any) -> float:
        number = _finite(value, "> 0", lambda x: x > 0)
        if number < MIN_CPU_SHARE:
            raise problem(f"must be at least {MIN_CPU_SHARE:g} CPUs per trial, got {number!r}: a smaller share lets "
                          "Ray start a worker process per trial by the hundred on one core")
        return number

    @field_validator("gpu", mode="before")
    @classmethod
    def _gpu(cls, value: Any) -> float:
        number = _finite(value, ">= 0", lambda x: x >= 0)
        if number > 8:
            raise problem(f"must be between 0 and 8 GPUs per trial, got {number!r}")
        return number


class GridSpec(RootModel[dict[str, AxisValues]]):
    """Exactly two swept axes, `{vertical: values, horizontal: values}`; each (point, seed) is one trial."""

    model_config = ConfigDict(frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _axes(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise problem("must map exactly two axis names to their values, e.g. {lr: [...], weight_decay: [...]}")
        for name in value:
            _known_axis("GridSpec", name, GRID_AXES, "a grid axis")
        if len(value) != 2:
            raise problem(f"must sweep exactly two axes (the first is vertical), got {len(value)}: "
                          f"{', '.join(map(str, value)) or 'none'}; hold the others fixed in `hyperparameters`")
        return {name: _axis_values("GridSpec", "grid", name, values) for name, values in value.items()}

    @property
    def axes(self) -> tuple[str, str]:
        y, x = self.root
        return y, x

    def values(self, axis: str, variant: str) -> list[Any] | None:
        """The values of `axis` for `variant` (None when a per-variant mapping leaves it out)."""
        listed = self.root[axis]
        if isinstance(listed, dict):
            found = listed.get(variant, listed.get(DEFAULT_KEY))
            return None if found is None else list(found)
        return list(listed)


class FacetSpec(RootModel[dict[str, list[Number | str]]]):
    """One more axis, `{axis: values}`: the sweep draws one set of landscapes per value (schedule, epochs, ...)."""

    model_config = ConfigDict(frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _axis(cls, value: Any) -> Any:
        if not isinstance(value, dict) or len(value) != 1:
            raise problem("must map exactly one axis name to its values, e.g. {schedule: [constant, step, cosine]}")
        (name, values), = value.items()
        _known_axis("FacetSpec", name, AXIS_NAMES, "a facet")
        return {name: _axis_list("FacetSpec", (name,), AXES[name], values)}

    @property
    def axis(self) -> str:
        return next(iter(self.root))

    @property
    def facets(self) -> list[Facet]:
        return [Facet(self.axis, value) for value in self.root[self.axis]]


class BayesSpec(BaseModel):
    """Bayesian search: `n_trials` per variant inside two axes' `[low, high]` ranges (log-uniform on log axes).

    The ranges are keyed by axis name, beside the other fields: ``{n_trials: 40, lr: [1e-4, 1], beta1: [0.5, 0.99]}``.
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    __pydantic_extra__: dict[str, tuple[Number, Number]] = Field(init=False)  # the two axes' [low, high]

    sampler: Literal["tpe", "gp"] = "tpe"
    n_trials: _StrictInt = Field(ge=1, le=10000, description="trials per variant (and facet value)")
    pruning: Literal["none", "asha"] = "none"

    @model_validator(mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        out = dict(value)
        for name, bounds in value.items():
            if name in cls.model_fields:
                continue
            _known_axis("BayesSpec", name, GRID_AXES, "a searched axis")
            if AXES[name].kind == "float" and isinstance(bounds, (list, tuple)):
                # Integers given for a float axis's range stay floats (the range of an int axis stays ints).
                out[name] = [float(b) if isinstance(b, int) and not isinstance(b, bool) else b for b in bounds]
        return out

    @model_validator(mode="after")
    def _ranges(self) -> BayesSpec:
        ranges = self.__pydantic_extra__ or {}
        if len(ranges) != 2:
            raise problem_at("BayesSpec", (), f"give [low, high] ranges for exactly two axes (beside sampler, "
                             f"n_trials, pruning), got {len(ranges)}: {', '.join(ranges) or 'none'}", None)
        for name, (low, high) in ranges.items():
            axis = AXES[name]
            for index, bound in enumerate((low, high)):
                try:
                    axis.check(int(bound) if axis.kind == "int" and float(bound).is_integer() else bound)
                except ValueError as exc:
                    raise problem_at("BayesSpec", (name, index), str(exc), bound) from None
            if axis.log and low <= 0:
                raise problem_at("BayesSpec", (name, 0), f"must be a finite number > 0 (the search is log-uniform "
                                 f"on {axis.scale}, so 0 is not in range), got {low!r}", low)
            if not low < high:
                raise problem_at("BayesSpec", (name,), f"must be [low, high] with low < high, got [{low!r}, {high!r}]",
                                 [low, high])
        return self

    @property
    def ranges(self) -> dict[str, tuple[Number, Number]]:
        """Axis name -> (low, high), in the order given (the first is vertical)."""
        return dict(self.__pydantic_extra__ or {})

    @property
    def axes(self) -> tuple[str, str]:
        y, x = self.ranges
        return y, x


# ---------------------------------------------------------------------------------------------
# The spec


class SweepSpec(_Strict):
    """One sweep: a model trained with each optimizer variant over a grid or a Bayesian search."""

    name: str = Field(description="sweep name; study names are '<name>/<variant>[/<facet axis>=<value>]'")
    dataset: DatasetName
    model: str = Field(description="shake_shake_<depth>_2x<width>d[_bnhead], one the model registry builds")
    variants: list[VariantName]
    epochs: _StrictInt = Field(ge=1, le=10000, description="training epochs (unless `epochs` is swept)")
    batch_size: _StrictInt = Field(ge=1, le=65536, description="images per step (unless swept)")
    schedule: ScheduleName = "cosine"
    normalized_decay: bool = Field(
        default=False, description="weight_decay values are lambda_norm, converted by the trainer (decoupled variants "
        "only: an L2 or torch-AdamW factor stays raw; under warm_restarts T is the current period)"
    )
    # The schedules' parameters (docs/presets.md: Figure 1 drops at 30, 60, 80; B.2 restarts with T_0, T_mult).
    step_milestones: list[int] | None = Field(
        default=None, description="step schedule: the epochs after which the lr is multiplied by step_gamma (the "
        "drop of milestone m applies from epoch m + 1 on); null: at 50 % and 75 % of the iterations. When epochs is "
        "swept, checked against the longest trial: a shorter trial never reaches the milestones past its end",
    )
    step_gamma: float = Field(default=0.1, description="step schedule: the lr's factor at each milestone, in (0, 1]")
    restart_period: int = Field(default=10, description="warm_restarts: T_0, the first period, in epochs (>= 1)")
    restart_mult: int = Field(default=2, description="warm_restarts: T_mult, each period's length over the one "
                              "before (>= 1; 1 keeps every period T_0 long)")
    label_noise: float = Field(default=0.0, description="fraction of train labels randomized (unless swept)")
    metric: MetricName = Field(default="test_error", description="the study objective (minimized)")
    seeds: list[Annotated[_StrictInt, Field(ge=0, le=_MAX_SEED)]] = Field(default_factory=lambda: [0])
    resources: Resources = Field(default_factory=Resources)
    # How a trial computes; neither changes the trial's mathematics beyond the rounding. A trial with a GPU share runs
    # channels_last in any case (layout only). fp32 matches the paper; bf16 + compile is the fast path (fig2 preset).
    precision: Literal["fp32", "bf16"] = Field(
        default="fp32", description="fp32, or bf16 autocast for the forward/backward (weights stay fp32)"
    )
    compile: bool = Field(default=False, description="torch.compile the model (minutes of warm-up; pays off on GPU)")
    max_concurrent_trials: _StrictInt = Field(default=2, ge=1, le=1024)
    # Where each trial's per-epoch history goes besides the record (docs/telemetry.md). Names only: whether the
    # package is installed is checked when the sweep starts, since a spec is also read where they are not.
    loggers: list[Literal["tensorboard", "mlflow", "wandb"]] = Field(
        default_factory=lambda: ["tensorboard"],
        description="trackers that get every trial's per-epoch metrics through Ray Tune's logger callbacks: "
        "tensorboard (event files under the runs folder), mlflow (MLFLOW_TRACKING_URI; pip install "
        "'hpscape[mlflow]'), wandb (WANDB_PROJECT, WANDB_MODE; pip install 'hpscape[wandb]')",
    )
    hyperparameters: dict[str, Number | dict[str, Number]] = Field(
        default_factory=dict,
        description="optimizer values held fixed (lr, weight_decay, momentum, beta1, beta2, eps, rho), one for "
        "all variants or a mapping variant -> value; the others take the family's defaults",
    )
    grid: GridSpec | None = None
    facet: FacetSpec | None = None
    bayes: BayesSpec | None = None

    # -- field checks --------------------------------------------------------------------------

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise problem(f"must be a string, got {value!r}")
        if not 1 <= len(value) <= 200:
            raise problem(f"must be 1 to 200 characters long, got {len(value)}")
        if not NAME_PATTERN.fullmatch(value):
            raise problem(
                f"{value!r} is not allowed: start with a letter or digit and use only letters, "
                "digits, '.', '_' and '-' (no '/': study names are '<sweep name>/<variant>')"
            )
        return value

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, value: Any) -> Any:
        try:
            validate_model_name(value)
        except ValueError as exc:
            raise problem(str(exc)) from None
        return value

    @field_validator("variants", mode="before")
    @classmethod
    def _variants(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise problem(f"must list at least one variant ({', '.join(VARIANT_NAMES)})")
        return value

    @field_validator("variants", "seeds", "loggers")
    @classmethod
    def _unique(cls, value: list[Any]) -> list[Any]:
        _check_unique("SweepSpec", (), value)
        return value

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise problem("must list at least one seed")
        return value

    @field_validator("label_noise", mode="before")
    @classmethod
    def _label_noise(cls, value: Any) -> float:
        return _finite(value, "in [0, 1) (a fraction of labels)", lambda x: 0 <= x < 1)

    @field_validator("step_gamma", mode="before")
    @classmethod
    def _step_gamma(cls, value: Any) -> float:
        return _finite(value, "in (0, 1] (the factor the lr is multiplied by at each step milestone)",
                       lambda x: 0 < x <= 1)

    @field_validator("restart_period", mode="before")
    @classmethod
    def _restart_period(cls, value: Any) -> int:
        return _whole(value, "of epochs >= 1 (the first warm-restart period T_0)", 1)

    @field_validator("restart_mult", mode="before")
    @classmethod
    def _restart_mult(cls, value: Any) -> int:
        return _whole(value, ">= 1 (T_mult, each warm-restart period's length over the one before; 1 keeps them "
                      "equal)", 1)

    @field_validator("step_milestones", mode="before")
    @classmethod
    def _step_milestones(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, list):
            raise problem(f"must be a list of increasing epochs (e.g. [30, 60, 80]) or null for drops at 50 % and "
                          f"75 % of the iterations, got {value!r}")
        if not value:
            raise problem("must list at least one epoch, or be null for drops at 50 % and 75 % of the iterations "
                          "(for no drop at all, use schedule: constant)")
        for index, epoch in enumerate(value):
            try:
                _whole(epoch, "of epochs >= 1 (the lr drops after that many epochs)", 1)
            except ValueError as exc:
                raise problem_at("SweepSpec", (index,), str(exc), epoch) from None
            if index and epoch <= value[index - 1]:
                raise problem_at("SweepSpec", (index,), f"must be larger than the milestone before it "
                                 f"({value[index - 1]!r}): milestones are increasing epochs, got {epoch!r}", epoch)
        return value

    @field_validator("hyperparameters", mode="before")
    @classmethod
    def _hyperparameters(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise problem(f"must map optimizer axes to fixed values, e.g. {{lr: 0.001}}, got {value!r}")
        out: dict[str, Any] = {}
        for name, fixed in value.items():
            if name in AXES and AXES[name].spec_field is not None:
                raise problem_at("SweepSpec", (str(name),), f"{name} is a top-level field of the spec: write "
                                 f"`{AXES[name].spec_field}: ...` beside `hyperparameters`, or sweep it", name)
            _known_axis("SweepSpec", name, OPTIMIZER_AXES, "a fixed hyperparameter")
            axis = AXES[name]
            if isinstance(fixed, dict):
                out[name] = {}
                for variant, one in fixed.items():
                    if variant != DEFAULT_KEY and variant not in VARIANTS:
                        raise problem_at("SweepSpec", (name, str(variant)), f"unknown variant {variant!r}; expected "
                                         f"one of {', '.join(VARIANT_NAMES)}, or {DEFAULT_KEY!r}", variant)
                    out[name][variant] = _checked(axis, one, (name, variant))
            else:
                out[name] = _checked(axis, fixed, (name,))
        return out

    # -- cross-field checks --------------------------------------------------------------------

    @model_validator(mode="after")
    def _consistent(self) -> SweepSpec:
        title = type(self).__name__
        if (self.grid is None) == (self.bayes is None):
            got = "both" if self.grid is not None else "neither"
            raise problem_at(title, ("grid",), "give exactly one of `grid` (two axes and their values) or `bayes` "
                             f"(a Bayesian search over two axes' ranges), got {got}", None)
        where = "grid" if self.grid is not None else "bayes"
        swept = self.swept_axes
        for variant in self.variants:
            self._check_variant_axes(title, where, variant)
        for name in self.hyperparameters:
            if name in swept:
                raise problem_at(title, ("hyperparameters", name), f"{name} is swept in `{where}`; remove it from "
                                 "`hyperparameters` (a value cannot be fixed and swept)", name)
        if "lr" not in swept and "lr" not in self.hyperparameters:
            raise problem_at(title, ("hyperparameters", "lr"), "required field is missing: give a fixed learning "
                             "rate (e.g. hyperparameters: {lr: 0.001}), or sweep lr", None)
        if self.facet is not None and self.facet.axis in (*swept, *self.hyperparameters):
            raise problem_at(title, ("facet", self.facet.axis), f"{self.facet.axis} is already swept or fixed; a "
                             "facet must be a third axis", self.facet.axis)
        if self.bayes is not None and self.bayes.pruning == "asha" and "epochs" in swept:
            raise problem_at(title, ("bayes", "pruning"), "ASHA stops trials at fractions of the epoch budget, so "
                             "it cannot search over epochs; use pruning: none, or fix epochs", "asha")
        self._check_milestones(title)
        self._check_size(title)
        return self

    def _check_milestones(self, title: str) -> None:
        # Against the longest trial: with epochs swept, a shorter trial simply never reaches the later milestones.
        if self.step_milestones is None:
            return
        longest = self.max_epochs()
        varies = longest != self.epochs or "epochs" in self.swept_axes or (
            self.facet is not None and self.facet.axis == "epochs")
        bound = f"{longest}, the longest trial's epochs (epochs varies per trial)" if varies else f"epochs ({longest})"
        for index, epoch in enumerate(self.step_milestones):
            if epoch > longest:
                raise problem_at(title, ("step_milestones", index), f"must be an epoch within 1..{bound}, got "
                                 f"{epoch!r}", epoch)

    def _check_variant_axes(self, title: str, where: str, variant_name: str) -> None:
        variant = VARIANTS[variant_name]

        def refuse(loc: tuple[str, ...], axis: str, how: str) -> None:
            reads = ", ".join(variant.hyperparameters) or "none"
            raise problem_at(title, loc, f"{axis} does not apply to variant {variant_name} ({variant.family.title} "
                             f"family, whose own hyperparameters are: {reads}); {how}", axis)

        for axis in self.swept_axes:
            if not axis_applies(AXES[axis], variant):
                refuse((where, axis), axis, f"drop {variant_name} from `variants` or sweep an axis it reads")
            if self.grid is not None and self.grid.values(axis, variant_name) is None:
                raise problem_at(title, ("grid", axis), f"no {axis} values for variant {variant_name}: give a list "
                                 f"for every variant in `variants`, a `{DEFAULT_KEY}` list, or one list shared by "
                                 "all", sorted(self.grid.root[axis]))
        for axis, fixed in self.hyperparameters.items():
            named = isinstance(fixed, dict) and variant_name in fixed
            if (not isinstance(fixed, dict) or named) and not axis_applies(AXES[axis], variant):
                refuse(("hyperparameters", axis), axis, f"fix it per variant (e.g. {axis}: {{{_reader(axis)}: ...}}) "
                       f"or drop {variant_name} from `variants`")
        if self.facet is not None and not axis_applies(AXES[self.facet.axis], variant):
            refuse(("facet", self.facet.axis), self.facet.axis, f"drop {variant_name} from `variants`")

    def _check_size(self, title: str) -> None:
        total = self.total_trials()
        if total <= MAX_TOTAL_TRIALS:
            return
        facets = f" x {len(self.facets())} facet values" if self.facet is not None else ""
        if self.grid is not None:
            sizes = "; ".join(f"{v}: {' x '.join(str(len(self.axis_values(a, v))) for a in self.swept_axes)}"
                              for v in self.variants)
            loc: tuple[str, ...] = ("grid",)
            detail = f"{len(self.variants)} variant(s) with cells ({sizes}) x {len(self.seeds)} seed(s){facets}"
            fix = "fewer values, variants or seeds"
        else:
            assert self.bayes is not None
            loc = ("bayes", "n_trials")
            detail = f"{len(self.variants)} variant(s) x {self.bayes.n_trials} trials{facets}"
            fix = "fewer trials or variants"
        raise problem_at(title, loc, f"{total} trials requested ({detail}), more than the cap MAX_TOTAL_TRIALS = "
                         f"{MAX_TOTAL_TRIALS}: use {fix}, or split the sweep", total)

    # -- derived values ------------------------------------------------------------------------

    @property
    def mode(self) -> Literal["grid", "bayes"]:
        return "grid" if self.grid is not None else "bayes"

    @property
    def swept_axes(self) -> tuple[str, str]:
        """The (vertical, horizontal) axis names: the grid's, or the Bayesian search's."""
        return self.grid.axes if self.grid is not None else self.bayes.axes  # type: ignore[union-attr]

    def replace(self, /, **changes: Any) -> SweepSpec:
        """A copy with top-level fields replaced, validated again (model_copy would not check)."""
        data = self.model_dump(exclude_none=True)
        for mode, other in (("bayes", "grid"), ("grid", "bayes")):
            if mode in changes and other not in changes:
                data.pop(other, None)
        data.update(changes)
        return type(self).model_validate(data)

    def facets(self) -> list[Facet | None]:
        """Each facet value, or [None] for a sweep without a facet."""
        return list(self.facet.facets) if self.facet is not None else [None]

    def studies(self) -> list[tuple[str, Facet | None]]:
        """(variant, facet) of every study, variant-major."""
        return [(variant, facet) for variant in self.variants for facet in self.facets()]

    def study_name(self, variant: str, facet: Facet | None = None) -> str:
        self._check_variant(variant)
        return study_name(self.name, variant, facet)

    def axis_values(self, axis: str, variant: str) -> list[Any]:
        """The grid's values of `axis` for one variant."""
        self._check_variant(variant)
        if self.grid is None:
            raise ValueError(f"axis_values() needs a grid sweep; sweep {self.name!r} uses `bayes`")
        values = self.grid.values(axis, variant)
        if values is None:
            raise ValueError(f"axis {axis!r} is not swept by the grid of sweep {self.name!r}")
        return values

    def cells(self, variant: str) -> list[Cell]:
        """Every (vertical, horizontal, seed) of the grid for one variant, vertical-major."""
        y, x = self.swept_axes
        return [
            Cell(vy, vx, seed, (y, x))
            for vy in self.axis_values(y, variant)
            for vx in self.axis_values(x, variant)
            for seed in self.seeds
        ]

    def study_trials(self, variant: str) -> int:
        """Trials one study of `variant` (one facet value) plans: its cells x seeds, or the Bayesian n_trials."""
        self._check_variant(variant)
        if self.grid is None:
            return self.bayes.n_trials  # type: ignore[union-attr]
        y, x = self.swept_axes
        return len(self.grid.values(y, variant) or ()) * len(self.grid.values(x, variant) or ()) * len(self.seeds)

    def total_trials(self) -> int:
        """Trials this sweep launches over all variants and facet values (and seeds, for grids)."""
        per_facet = len(self.facets())
        if self.grid is not None:
            y, x = self.swept_axes
            return per_facet * len(self.seeds) * sum(
                len(self.grid.values(y, v) or ()) * len(self.grid.values(x, v) or ()) for v in self.variants
            )
        assert self.bayes is not None
        return per_facet * len(self.variants) * self.bayes.n_trials

    def max_epochs(self) -> int:
        """The longest epoch budget of any trial (the spec's, or the largest swept or facet value)."""
        if self.facet is not None and self.facet.axis == "epochs":
            return max(int(v) for v in self.facet.root["epochs"])
        if self.grid is not None and "epochs" in self.swept_axes:
            return max(max(self.axis_values("epochs", v)) for v in self.variants)
        if self.bayes is not None and "epochs" in self.swept_axes:
            return int(self.bayes.ranges["epochs"][1])
        return self.epochs

    def fixed_value(self, axis: str, variant: str) -> Any:
        """The value `variant` trains with on an axis this spec does not sweep."""
        spec_axis = get_axis(axis)
        if spec_axis.spec_field is not None:
            return getattr(self, spec_axis.spec_field)
        fixed = self.hyperparameters.get(axis)
        if isinstance(fixed, dict):
            fixed = fixed.get(variant, fixed.get(DEFAULT_KEY))
        if fixed is not None:
            return fixed
        return family_default(spec_axis, get_variant(variant))

    def trial_values(self, variant: str, params: dict[str, Any], facet: Facet | None = None) -> dict[str, Any]:
        """Every axis value one trial trains with: its swept `params`, the facet's value, the fixed rest.

        Only the axes `variant` reads appear (momentum for SGD, betas and eps for Adam, ...), so the result
        describes the trial completely and can go to the trainer as it is.
        """
        variant_def = get_variant(variant)
        out: dict[str, Any] = {}
        for name, axis in AXES.items():
            if not axis_applies(axis, variant_def):
                continue
            if name in params:
                out[name] = params[name]
            elif facet is not None and facet.axis == name:
                out[name] = facet.value
            else:
                out[name] = self.fixed_value(name, variant)
        return out

    def _check_variant(self, variant: str) -> None:
        if variant not in self.variants:
            raise ValueError(
                f"variant {variant!r} is not in sweep {self.name!r} (variants: {', '.join(self.variants)})"
            )


def _whole(value: Any, rule: str, minimum: int) -> int:
    """A whole number >= `minimum` (a bool, a float or a string is refused, as for the other integer fields)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise problem(f"must be a whole number {rule}, got {value!r}")
    return value


def _checked(axis: Axis, value: Any, loc: tuple[str, ...]) -> Any:
    try:
        return axis.check(value)
    except ValueError as exc:
        raise problem_at("SweepSpec", loc, str(exc), value) from None


def _reader(axis: str) -> str:
    """A variant that reads `axis`, for an example in a message."""
    return next(name for name, v in VARIANTS.items() if axis_applies(AXES[axis], v))


_ = ValidationError  # re-exported by callers that catch it next to SpecError

"""The sweep specification: what to train, on which (learning rate, weight decay) points, how often.

A `SweepSpec` is validated once (pydantic v2, unknown fields rejected everywhere) and then trusted by
the driver, the workers and the service. Every validation message names the offending field, e.g.
``grid.lr[3]: must be a finite number > 0, got nan``; `format_validation_error` renders them one per
line for CLIs and HTTP 4xx bodies.
"""

from __future__ import annotations

import json
import math
import re
import typing
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "DATASETS",
    "MAX_TOTAL_TRIALS",
    "METRICS",
    "MODEL_NAME_PATTERN",
    "NAME_PATTERN",
    "SCHEDULES",
    "VARIANTS",
    "BayesSpec",
    "Cell",
    "GridSpec",
    "ModelArch",
    "Resources",
    "SpecError",
    "SweepSpec",
    "dump_spec",
    "format_validation_error",
    "load_spec",
    "study_name",
    "validate_model_name",
]

VARIANTS: tuple[str, ...] = ("sgd", "sgdw", "adam", "adamw", "adamw-torch")
DATASETS: tuple[str, ...] = ("cifar10", "digits", "synthetic")
SCHEDULES: tuple[str, ...] = ("constant", "cosine", "step", "warm_restarts")
METRICS: tuple[str, ...] = ("test_error", "test_loss")

# Sums over variants x cells x seeds (grid) or variants x n_trials (bayes): one sweep must stay a
# size a person meant to launch; fig2 is 484.
MAX_TOTAL_TRIALS = 5000

# No "/": study names are "<sweep name>/<variant>".
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MODEL_NAME_PATTERN = re.compile(r"^shake_shake_(\d+)_2x(8|16|32|64|96)d(_bnhead)?$")

# numpy's legacy seeding and many CUDA RNG paths take 32-bit seeds.
_MAX_SEED = 2**32 - 1

Variant = Literal["sgd", "sgdw", "adam", "adamw", "adamw-torch"]
_StrictInt = Annotated[int, Strict()]


class SpecError(ValueError):
    """A sweep spec could not be read or is invalid; `problems` holds one line per problem."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


def study_name(sweep: str, variant: str) -> str:
    """The Optuna study that holds one variant of a sweep."""
    return f"{sweep}/{variant}"


# ---------------------------------------------------------------------------------------------
# Model names


class ModelArch(NamedTuple):
    """A parsed Shake-Shake model name: depth (6n+2) and base width of the first stage."""

    depth: int
    width: int

    @property
    def blocks_per_stage(self) -> int:
        return (self.depth - 2) // 6


def validate_model_name(name: str) -> ModelArch:
    """Parse ``shake_shake_<depth>_2x<width>d``; raise ValueError saying what is accepted."""
    hint = (
        "expected shake_shake_<depth>_2x<width>d with depth = 6n+2 >= 8 (8, 14, 20, 26, ...) "
        "and width one of 8, 16, 32, 64, 96, e.g. shake_shake_26_2x64d"
    )
    match = MODEL_NAME_PATTERN.match(name) if isinstance(name, str) else None
    if match is None:
        raise ValueError(f"unknown model {name!r}: {hint}")
    depth, width = int(match.group(1)), int(match.group(2))
    if depth < 8 or (depth - 2) % 6 != 0:
        raise ValueError(f"bad depth {depth} in model {name!r}: {hint}")
    return ModelArch(depth, width)


# ---------------------------------------------------------------------------------------------
# Small validation helpers


def _problem(message: str) -> PydanticCustomError:
    # The message goes through the context so braces in reprs are never taken as placeholders.
    return PydanticCustomError("spec", "{detail}", {"detail": message})


def _fail(title: str, loc: tuple[str | int, ...], message: str, value: Any) -> ValidationError:
    """A ValidationError at an explicit location (for checks that span several fields)."""
    return ValidationError.from_exception_data(
        title, [{"type": _problem(message), "loc": loc, "input": value}]
    )


def _number(value: Any) -> float:
    # Strings are accepted because YAML 1.1 reads "1e-3" (no dot) as a string.
    if isinstance(value, bool) or not isinstance(value, (Real, str)):
        raise _problem(f"must be a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise _problem(f"must be a number, got {value!r}") from None
    # -0.0 would print as "-0.0" in cell keys.
    return number + 0.0


def _finite(value: Any, rule: str, ok: typing.Callable[[float], bool]) -> float:
    number = _number(value)
    if not math.isfinite(number) or not ok(number):
        raise _problem(f"must be a finite number {rule}, got {number!r}")
    return number


def _positive(value: Any) -> float:
    return _finite(value, "> 0", lambda x: x > 0)


def _non_negative(value: Any) -> float:
    return _finite(value, ">= 0", lambda x: x >= 0)


PositiveFloat = Annotated[float, BeforeValidator(_positive)]
NonNegativeFloat = Annotated[float, BeforeValidator(_non_negative)]


def _check_unique(title: str, field: tuple[str | int, ...], values: list[Any]) -> None:
    first_seen: dict[Any, int] = {}
    for index, value in enumerate(values):
        if value in first_seen:
            raise _fail(
                title,
                (*field, index),
                f"duplicate of item [{first_seen[value]}] ({value!r}); list each value once",
                value,
            )
        first_seen[value] = index


def _non_empty_list(value: Any, what: str) -> Any:
    if isinstance(value, list) and not value:
        raise _problem(f"must list at least one {what}")
    return value


_LR_LIST = TypeAdapter(list[PositiveFloat])
_DECAY_LIST = TypeAdapter(list[NonNegativeFloat])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------------------
# Spec models


class Resources(_Strict):
    """What one trial reserves: CPU cores and a (possibly fractional) share of GPUs."""

    cpu: PositiveFloat = 1.0
    gpu: NonNegativeFloat = 0.0

    @field_validator("gpu")
    @classmethod
    def _gpu_cap(cls, value: float) -> float:
        if value > 8:
            raise _problem(f"must be between 0 and 8 GPUs per trial, got {value!r}")
        return value


class GridSpec(_Strict):
    """Explicit grid: every lr x weight_decay value (x seed) is one trial."""

    lr: list[float] | dict[Variant, list[float]] = Field(
        description="learning rates, one list for all variants or a list per variant"
    )
    weight_decay: list[float] = Field(description="weight decay / L2 values; 0 is allowed")

    @field_validator("lr", mode="before")
    @classmethod
    def _lr(cls, value: Any) -> Any:
        if isinstance(value, dict):
            out: dict[str, list[float]] = {}
            for variant, values in value.items():
                if variant not in VARIANTS:
                    raise _fail(
                        "GridSpec",
                        (str(variant),),
                        f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}",
                        variant,
                    )
                _non_empty_list(values, "learning rate")
                try:
                    out[variant] = _LR_LIST.validate_python(values)
                except ValidationError as exc:
                    # Re-raise under the variant key so the path reads grid.lr.sgd[3].
                    raise _reroot(exc, (variant,)) from None
                _check_unique("GridSpec", (variant,), out[variant])
            return out
        if isinstance(value, list):
            _non_empty_list(value, "learning rate")
            values = _LR_LIST.validate_python(value)
            _check_unique("GridSpec", (), values)
            return values
        raise _problem(
            "must be a list of learning rates or a mapping from variant to a list of learning "
            f"rates, got {value!r}"
        )

    @field_validator("weight_decay", mode="before")
    @classmethod
    def _weight_decay(cls, value: Any) -> Any:
        if not isinstance(value, list):
            raise _problem(f"must be a list of weight decay values, got {value!r}")
        _non_empty_list(value, "weight decay value")
        values = _DECAY_LIST.validate_python(value)
        _check_unique("GridSpec", (), values)
        return values


class BayesSpec(_Strict):
    """Bayesian search: `n_trials` per variant sampled log-uniformly inside the two ranges."""

    sampler: Literal["tpe", "gp"] = "tpe"
    n_trials: _StrictInt = Field(ge=1, le=10000, description="trials per variant")
    lr: tuple[PositiveFloat, PositiveFloat] = Field(description="[low, high], 0 < low < high")
    weight_decay: tuple[PositiveFloat, PositiveFloat] = Field(
        description="[low, high], 0 < low < high (log-uniform, so 0 is not in range)"
    )
    pruning: Literal["none", "asha"] = "none"

    @field_validator("lr", "weight_decay")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not low < high:
            raise _problem(f"must be [low, high] with low < high, got [{low!r}, {high!r}]")
        return value


@dataclass(frozen=True, order=True)
class Cell:
    """One grid point and seed; `key` identifies it in the Optuna record (repr-exact floats)."""

    lr: float
    weight_decay: float
    seed: int

    @property
    def key(self) -> str:
        return f"lr={self.lr!r}|wd={self.weight_decay!r}|seed={self.seed}"

    @classmethod
    def from_key(cls, key: str) -> Cell:
        """Inverse of `key`."""
        try:
            parts = dict(part.split("=", 1) for part in key.split("|"))
            return cls(float(parts["lr"]), float(parts["wd"]), int(parts["seed"]))
        except (KeyError, ValueError):
            raise ValueError(
                f"bad cell key {key!r}: expected 'lr=<float>|wd=<float>|seed=<int>'"
            ) from None


class SweepSpec(_Strict):
    """One sweep: a model trained with each optimizer variant over a grid or a Bayesian search."""

    name: str = Field(description="sweep name; study names are '<name>/<variant>'")
    dataset: Literal["cifar10", "digits", "synthetic"]
    model: str = Field(description="shake_shake_<depth>_2x<width>d, depth = 6n+2 >= 8")
    variants: list[Variant]
    epochs: _StrictInt = Field(ge=1, le=10000)
    batch_size: _StrictInt = Field(ge=1, le=65536)
    schedule: Literal["constant", "cosine", "step", "warm_restarts"] = "cosine"
    normalized_decay: bool = Field(
        default=False, description="weight_decay values are lambda_norm, converted by the trainer"
    )
    label_noise: NonNegativeFloat = Field(default=0.0, description="fraction of train labels randomized")
    metric: Literal["test_error", "test_loss"] = Field(
        default="test_error", description="the study objective (minimized)"
    )
    seeds: list[Annotated[_StrictInt, Field(ge=0, le=_MAX_SEED)]] = Field(default_factory=lambda: [0])
    resources: Resources = Field(default_factory=Resources)
    max_concurrent_trials: _StrictInt = Field(default=2, ge=1, le=1024)
    grid: GridSpec | None = None
    bayes: BayesSpec | None = None

    # -- field checks --------------------------------------------------------------------------

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise _problem(f"must be a string, got {value!r}")
        if not 1 <= len(value) <= 200:
            raise _problem(f"must be 1 to 200 characters long, got {len(value)}")
        if not NAME_PATTERN.match(value):
            raise _problem(
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
            raise _problem(str(exc)) from None
        return value

    @field_validator("variants", mode="before")
    @classmethod
    def _variants(cls, value: Any) -> Any:
        return _non_empty_list(value, f"variant ({', '.join(VARIANTS)})")

    @field_validator("variants")
    @classmethod
    def _variants_unique(cls, value: list[str]) -> list[str]:
        _check_unique("SweepSpec", (), value)
        return value

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, value: Any) -> Any:
        return _non_empty_list(value, "seed")

    @field_validator("seeds")
    @classmethod
    def _seeds_unique(cls, value: list[int]) -> list[int]:
        _check_unique("SweepSpec", (), value)
        return value

    @field_validator("label_noise")
    @classmethod
    def _label_noise(cls, value: float) -> float:
        if value >= 1:
            raise _problem(f"must be in [0, 1) (a fraction of labels), got {value!r}")
        return value

    # -- cross-field checks --------------------------------------------------------------------

    @model_validator(mode="after")
    def _mode_and_size(self) -> SweepSpec:
        title = type(self).__name__
        if (self.grid is None) == (self.bayes is None):
            got = "both" if self.grid is not None else "neither"
            raise _fail(
                title,
                ("grid",),
                "give exactly one of `grid` (explicit lr and weight_decay lists) or `bayes` "
                f"(a Bayesian search), got {got}",
                None,
            )
        if self.grid is not None and isinstance(self.grid.lr, dict):
            missing = [v for v in self.variants if v not in self.grid.lr]
            if missing:
                raise _fail(
                    title,
                    ("grid", "lr"),
                    f"no learning rates for variant(s) {', '.join(missing)}: give a list for every "
                    "variant in `variants`, or one list shared by all",
                    sorted(self.grid.lr),
                )
        total = self.total_trials()
        if total > MAX_TOTAL_TRIALS:
            if self.grid is not None:
                loc: tuple[str, ...] = ("grid",)
                sizes = ", ".join(f"{v}: {len(self.lr_values(v))}" for v in self.variants)
                detail = (
                    f"{len(self.variants)} variant(s) x lr values ({sizes}) x "
                    f"{len(self.grid.weight_decay)} weight decay values x {len(self.seeds)} seed(s)"
                )
            else:
                assert self.bayes is not None
                loc = ("bayes", "n_trials")
                detail = f"{len(self.variants)} variant(s) x {self.bayes.n_trials} trials"
            fix = "fewer values, variants or seeds" if self.grid is not None else (
                "fewer trials or variants"
            )
            raise _fail(
                title,
                loc,
                f"{total} trials requested ({detail}), more than the cap MAX_TOTAL_TRIALS = "
                f"{MAX_TOTAL_TRIALS}: use {fix}, or split the sweep",
                total,
            )
        return self

    # -- derived values ------------------------------------------------------------------------

    @property
    def mode(self) -> Literal["grid", "bayes"]:
        return "grid" if self.grid is not None else "bayes"

    def replace(self, **changes: Any) -> SweepSpec:
        """A copy with top-level fields replaced, validated again (model_copy would not check)."""
        data = self.model_dump(exclude_none=True)
        for mode, other in (("bayes", "grid"), ("grid", "bayes")):
            if mode in changes and other not in changes:
                data.pop(other, None)
        data.update(changes)
        return type(self).model_validate(data)

    def study_name(self, variant: str) -> str:
        self._check_variant(variant)
        return study_name(self.name, variant)

    def total_trials(self) -> int:
        """Trials this sweep launches over all variants (and seeds, for grids)."""
        if self.grid is not None:
            per_lr = len(self.grid.weight_decay) * len(self.seeds)
            return sum(len(self.lr_values(v)) * per_lr for v in self.variants)
        assert self.bayes is not None
        return len(self.variants) * self.bayes.n_trials

    def lr_values(self, variant: str) -> list[float]:
        """The grid's learning rates for one variant."""
        self._check_variant(variant)
        grid = self._require_grid("lr_values")
        return list(grid.lr[variant] if isinstance(grid.lr, dict) else grid.lr)  # type: ignore[index]

    def cells(self, variant: str) -> list[Cell]:
        """Every (lr, weight_decay, seed) of the grid for one variant, lr-major."""
        grid = self._require_grid("cells")
        return [
            Cell(lr, wd, seed)
            for lr in self.lr_values(variant)
            for wd in grid.weight_decay
            for seed in self.seeds
        ]

    def _require_grid(self, what: str) -> GridSpec:
        if self.grid is None:
            raise ValueError(f"{what}() needs a grid sweep; sweep {self.name!r} uses `bayes`")
        return self.grid

    def _check_variant(self, variant: str) -> None:
        if variant not in self.variants:
            raise ValueError(
                f"variant {variant!r} is not in sweep {self.name!r} (variants: "
                f"{', '.join(self.variants)})"
            )


def _reroot(exc: ValidationError, prefix: tuple[str | int, ...]) -> ValidationError:
    errors = [
        {
            "type": _problem(_clean_message(err)),
            "loc": (*prefix, *err["loc"]),
            "input": err.get("input"),
        }
        for err in exc.errors()
    ]
    return ValidationError.from_exception_data(exc.title, errors)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Error formatting


def _format_loc(loc: tuple[str | int, ...] | list[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            out += " (key)"
        else:
            out += f".{part}" if out else str(part)
    return out


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The spec model that the field at `loc` lives in (to list allowed names for a typo)."""
    model: type[BaseModel] = SweepSpec
    for part in loc[:-1]:
        if not isinstance(part, str) or part not in model.model_fields:
            return None
        inner = _find_model(model.model_fields[part].annotation)
        if inner is None:
            return None
        model = inner
    return model


def _find_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _find_model(arg)
        if found is not None:
            return found
    return None


def _clean_message(err: Any) -> str:
    message = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    kind = err.get("type")
    if kind == "extra_forbidden":
        model = _model_at(tuple(err["loc"]))
        allowed = f"; allowed: {', '.join(model.model_fields)}" if model else ""
        return f"unknown field{allowed}"
    if kind == "missing":
        return "required field is missing"
    if kind in ("literal_error", "enum"):
        return f"{message}, got {err.get('input')!r}"
    return message


def format_validation_error(exc: ValidationError | SpecError) -> str:
    """One line per problem, ``field.path: message``, for CLIs and HTTP 4xx bodies."""
    if isinstance(exc, SpecError):
        return "\n".join(exc.problems)
    lines = []
    for err in exc.errors():
        path = _format_loc(err["loc"])
        message = _clean_message(err)
        lines.append(f"{path}: {message}" if path else message)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Files


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (YAML would silently keep the last one)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)  # type: ignore[no-untyped-call]
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _parse_file(path: Path) -> Any:
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise SpecError(
            f"{path}: unsupported spec file type {path.suffix or '(none)'!r}; "
            "use .yaml, .yml or .json"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: spec file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read spec file: {exc}") from exc
    if suffix == ".json":
        try:
            return json.loads(text, object_pairs_hook=_json_pairs)
        except json.JSONDecodeError as exc:
            raise SpecError(
                f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}"
            ) from exc
        except ValueError as exc:
            raise SpecError(f"{path}: invalid JSON: {exc}") from exc
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(f"{path}{where}: invalid YAML: {problem}") from exc


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a sweep spec from a .yaml/.yml or .json file.

    Raises SpecError for unreadable files, syntax errors (with line:column) and invalid specs
    (`problems` holds one ``field.path: message`` line per problem).
    """
    path = Path(path)
    data = _parse_file(path)
    if not isinstance(data, dict):
        raise SpecError(
            f"{path}: expected a mapping of spec fields at the top level, got "
            f"{type(data).__name__}"
        )
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as exc:
        problems = format_validation_error(exc).splitlines()
        message = f"{path}: invalid sweep spec:\n" + "\n".join(f"  {p}" for p in problems)
        raise SpecError(message, problems) from exc


def dump_spec(spec: SweepSpec, path: str | Path) -> Path:
    """Write a spec as YAML or JSON (by suffix) so that `load_spec` reads it back unchanged."""
    path = Path(path)
    data = spec.model_dump(mode="json", exclude_none=True)
    suffix = path.suffix.lower()
    if suffix == ".json":
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    elif suffix in (".yaml", ".yml"):
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    else:
        raise SpecError(f"{path}: unsupported spec file type; use .yaml, .yml or .json")
    return path

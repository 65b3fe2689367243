"""Sweep specifications, presets, grids and the Optuna record of a sweep.

Imports only optuna, numpy, pydantic, pyyaml and the standard library, so the driver, the
service and the workers can all share it.
"""

from .grid import (
    ADAM_FAMILY,
    FIG2_DECAY_SCALE,
    FIG2_DECAY_TICKS,
    SGD_FAMILY,
    fig2_weight_decays,
    lr_by_family,
    powers_of_two,
    variant_family,
)
from .presets import PRESETS, get_preset
from .spec import (
    DATASETS,
    MAX_TOTAL_TRIALS,
    METRICS,
    MODEL_NAME_PATTERN,
    NAME_PATTERN,
    SCHEDULES,
    VARIANTS,
    BayesSpec,
    Cell,
    GridSpec,
    ModelArch,
    Resources,
    SpecError,
    SweepSpec,
    dump_spec,
    format_validation_error,
    load_spec,
    study_name,
    validate_model_name,
)

__all__ = [
    "ADAM_FAMILY",
    "DATASETS",
    "FIG2_DECAY_SCALE",
    "FIG2_DECAY_TICKS",
    "MAX_TOTAL_TRIALS",
    "METRICS",
    "MODEL_NAME_PATTERN",
    "NAME_PATTERN",
    "PRESETS",
    "SCHEDULES",
    "SGD_FAMILY",
    "VARIANTS",
    "BayesSpec",
    "Cell",
    "GridSpec",
    "ModelArch",
    "Resources",
    "SpecError",
    "SweepSpec",
    "dump_spec",
    "fig2_weight_decays",
    "format_validation_error",
    "get_preset",
    "load_spec",
    "lr_by_family",
    "powers_of_two",
    "study_name",
    "validate_model_name",
    "variant_family",
]

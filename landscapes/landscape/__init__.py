"""The landscape of a sweep: one metric over the cells of two hyperparameters, per study.

- `types`: `Landscape`, its `LandscapeAxis` (``.y`` vertical, ``.x`` horizontal) and `ModelSurface`;
- `reader`: trials as numpy columns (final attrs, intermediate values, or histories), finished ones cached;
- `aggregate`: axis values, bins, per-cell statistics;  `build`: the landscapes;  `trials`: a cell's trials.
"""

from .build import build_landscape, build_sweep_landscapes
from .reader import clear_landscape_cache
from .trials import trial_details
from .types import CELL_STATES, Landscape, LandscapeAxis, LandscapeError, ModelSurface

__all__ = [
    "CELL_STATES",
    "Landscape",
    "LandscapeAxis",
    "LandscapeError",
    "ModelSurface",
    "build_landscape",
    "build_sweep_landscapes",
    "clear_landscape_cache",
    "trial_details",
]

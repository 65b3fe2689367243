"""hpscape: hyperparameter landscapes of two hyperparameters, for L2 and decoupled weight decay.

    import hpscape
    sweep = hpscape.run("quick", storage="sqlite:///quick.db")   # a preset, a spec file, a dict or a SweepSpec
    sweep = hpscape.load("sqlite:///quick.db", "quick")          # a recorded sweep
    sweep.figure()                                               # a plotly Figure (and the notebook's display)

The packages: `hpscape.landscapes` (specs, variants, axes, the Optuna record, landscapes, coupling metrics),
`hpscape.workers` (models, optimizers, data, the trainer, Ray Tune), `hpscape.dashboards` (figures, pages) and
`hpscape.service` (the REST controller and the `hpscape` command).
"""

from importlib.metadata import PackageNotFoundError, version

from hpscape.landscapes import (
    AXES,
    PRESETS,
    VARIANTS,
    BayesSpec,
    FacetSpec,
    GridSpec,
    Landscape,
    SweepSpec,
    get_preset,
    load_spec,
)
from hpscape.notebook import Sweep, load, run

try:
    __version__ = version("hpscape")
except PackageNotFoundError:  # a checkout that was never installed
    __version__ = "0+unknown"

__all__ = [
    "AXES",
    "PRESETS",
    "VARIANTS",
    "BayesSpec",
    "FacetSpec",
    "GridSpec",
    "Landscape",
    "Sweep",
    "SweepSpec",
    "__version__",
    "get_preset",
    "load",
    "load_spec",
    "run",
]

"""What a landscape is: one metric over the cells of two axes of one study, with its bookkeeping."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..axes import AXES, AxisScale
from ..keys import Facet
from ..variants import VARIANTS

__all__ = ["CELL_STATES", "Landscape", "LandscapeAxis", "LandscapeError", "ModelSurface"]

# A cell's summary state, most "in progress" first: a cell with one running seed is running.
CELL_STATES: tuple[str, ...] = ("running", "queued", "done", "stopped", "diverged", "failed", "empty")
# Two floats closer than this (relative) are the same axis value (SQL round trips are exact for doubles, but
# values typed by hand into a spec may differ in the last bits).
AXIS_RTOL = 1e-9


class LandscapeError(ValueError):
    """A landscape cannot be built as asked (unknown metric, metric not recorded at that epoch)."""


@dataclass(frozen=True, eq=False)
class LandscapeAxis:
    """One axis of a landscape: its name, values (ascending; a 0 column first), scale and how it is written."""

    name: str
    values: np.ndarray
    scale: AxisScale
    label: str  # "learning rate"
    symbol: str  # "α"; "λ′" for an L2 variant's decay, "λ" for a decoupled one
    unit: str

    @classmethod
    def of(cls, name: str, values: Any, variant: str | None = None) -> LandscapeAxis:
        """The axis `name` of the registry with `values`; the decay's symbol follows `variant`'s decay form."""
        axis = AXES.get(name)
        if axis is None:  # a param hpscape does not know (a study written by hand): drawn linear
            return cls(name, np.asarray(values, dtype=np.float64), "linear", name.replace("_", " "), "", "")
        symbol = axis.symbol
        if name == "weight_decay" and variant in VARIANTS:
            symbol = VARIANTS[variant].decay_symbol
        return cls(name, np.asarray(values, dtype=np.float64), axis.scale, axis.label, symbol, axis.unit)

    @property
    def title(self) -> str:
        """'learning rate α', 'weight decay λ′', 'batch size b (images)'."""
        text = f"{self.label} {self.symbol}".strip()
        return f"{text} ({self.unit})" if self.unit else text

    @property
    def log(self) -> bool:
        return self.scale in ("log2", "log10")

    @property
    def size(self) -> int:
        return int(self.values.size)

    def coordinates(self) -> np.ndarray:
        """The values in the axis's own scale (log2 / log10 on log axes, -inf for a 0 column)."""
        with np.errstate(divide="ignore"):
            if self.scale == "log2":
                return np.log2(self.values)
            if self.scale == "log10":
                return np.log10(self.values)
        return self.values.astype(np.float64)

    def index(self, value: float) -> int:
        """The position of `value` on this axis; KeyError if it is not one of its values."""
        hits = np.flatnonzero(np.isclose(self.values, value, rtol=AXIS_RTOL, atol=0.0))
        if hits.size == 0:
            raise KeyError(f"{self.name}={value!r} is not on this landscape's axis {self.values.tolist()}")
        return int(hits[0])

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "values": [float(v) for v in self.values], "scale": self.scale,
                "label": self.label, "symbol": self.symbol, "unit": self.unit, "title": self.title}


@dataclass(frozen=True, eq=False)
class ModelSurface:
    """A model-based estimate of the metric on the landscape's cells: NOT measured data.

    A Gaussian kernel smoother in the axes' own scales over the trials with a value; cells with no trial within
    two bandwidths stay NaN (no extrapolation).
    """

    mean: np.ndarray
    bandwidth_octaves: float
    n_points: int
    label: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "gaussian_kernel_smoother",
            "label": self.label,
            "bandwidth_octaves": self.bandwidth_octaves,
            "n_points": self.n_points,
            "mean": nan_to_none(self.mean),
        }


@dataclass(frozen=True, eq=False)
class Landscape:
    """One metric over the `y` (rows, ascending) x `x` (columns, ascending) cells of one study."""

    sweep: str
    variant: str
    facet: Facet | None
    metric: str
    epoch: int | None  # None: the final epoch
    kind: Literal["grid", "binned"]
    spec_metric: str  # what the intermediate values (and the objective) hold
    epochs: int | None  # the spec's epoch budget, if known (and the same for every cell)
    y: LandscapeAxis  # vertical
    x: LandscapeAxis  # horizontal; a 0 column comes first
    mean: np.ndarray  # (rows, cols); NaN: no measured value (empty, running, diverged...)
    std: np.ndarray  # sample std over seeds; NaN where n < 2
    n: np.ndarray  # trials with a measured value
    count: np.ndarray  # all trials in the cell
    n_diverged: np.ndarray  # trials diverged (by this epoch)
    state: np.ndarray  # summary state per cell, one of CELL_STATES
    state_counts: dict[str, np.ndarray]  # per trial category (done, diverged, ...), counts
    budget: np.ndarray  # epochs reached by the cell's stopped-early trials (0: none)
    trials: list[list[list[int]]]  # trial numbers per cell
    notes: tuple[str, ...] = ()
    model: ModelSurface | None = None
    value_source: str = ""
    points: dict[str, np.ndarray] = field(default_factory=dict)  # binned: the raw trials
    seeds: tuple[int, ...] = ()  # the seeds with a measured value
    samples: np.ndarray | None = None  # (seeds, rows, cols): each seed's value per cell, NaN where it has none

    @property
    def key(self) -> str:
        """The study's suffix: 'sgdw', or 'sgdw/schedule=step' in a faceted sweep."""
        return self.variant if self.facet is None else f"{self.variant}/{self.facet.label}"

    @property
    def study(self) -> str:
        return f"{self.sweep}/{self.key}"

    @property
    def shape(self) -> tuple[int, int]:
        return self.mean.shape  # type: ignore[return-value]

    @property
    def diverged(self) -> np.ndarray:
        """Cells whose only outcome is divergence: marked on the plot, kept out of its colours."""
        return (self.n == 0) & (self.n_diverged > 0)

    @property
    def n_trials(self) -> int:
        return int(self.count.sum())

    def best_cells(self, k: int = 10) -> list[tuple[int, int]]:
        """The (row, col) of the `k` cells with the lowest mean, best first (ties: lower y, then x)."""
        flat = self.mean.ravel()
        finite = np.flatnonzero(np.isfinite(flat))
        order = finite[np.lexsort((finite, flat[finite]))][:k]
        cols = self.mean.shape[1]
        return [(int(i // cols), int(i % cols)) for i in order]

    def cell_index(self, y: float, x: float) -> tuple[int, int]:
        """The (row, col) of the cell holding (y, x); KeyError if there is none."""
        return self.y.index(y), self.x.index(x)

    def progress(self) -> dict[str, int]:
        """Trials per category over the whole study (done, diverged, stopped, running, ...)."""
        return {name: int(counts.sum()) for name, counts in self.state_counts.items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: lists of lists, NaN as None, cells indexed [row][col]."""
        return {
            "sweep": self.sweep,
            "variant": self.variant,
            "facet": None if self.facet is None else {"axis": self.facet.axis, "value": self.facet.value,
                                                      "label": self.facet.label},
            "key": self.key,
            "study": self.study,
            "metric": self.metric,
            "epoch": self.epoch,
            "epochs": self.epochs,
            "kind": self.kind,
            "spec_metric": self.spec_metric,
            "value_source": self.value_source,
            "y": self.y.to_dict(),
            "x": self.x.to_dict(),
            "mean": nan_to_none(self.mean),
            "std": nan_to_none(self.std),
            "n": self.n.tolist(),
            "count": self.count.tolist(),
            "n_diverged": self.n_diverged.tolist(),
            "diverged": self.diverged.tolist(),
            "state": self.state.tolist(),
            "state_counts": {k: v.tolist() for k, v in self.state_counts.items()},
            "budget": self.budget.tolist(),
            "trials": self.trials,
            "best": [list(cell) for cell in self.best_cells(10)],
            "progress": self.progress(),
            "n_trials": self.n_trials,
            "seeds": list(self.seeds),
            "notes": list(self.notes),
            "model": None if self.model is None else self.model.to_dict(),
        }


def nan_to_none(array: np.ndarray) -> list[Any]:
    """tolist() with NaN as None (JSON has no NaN); a cheap scan, much faster than np.where on object arrays."""
    out = array.tolist()
    if array.ndim == 1:
        return [None if v != v else v for v in out]
    return [[None if v != v else v for v in row] for row in out]

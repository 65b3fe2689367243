"""What a sweep will cost before it runs: trials, epochs and images per study, and time from a measured throughput.

    plan = plan_sweep(get_preset("fig2"), throughput=Throughput(3200.0, "fig2 record, 484 trials"))
    plan.trials          # 484
    plan.trial_hours     # trial-hours at that throughput (None when no throughput is known)

Nothing here guesses a speed: the time estimate exists only when a measured throughput is given (from the record
of earlier trials of the same model and batch size, or one the user passes), and says where it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .keys import Facet
from .spec import SweepSpec
from .vocabulary import DATASET_SIZES

__all__ = ["PlanRow", "SweepPlan", "Throughput", "plan_sweep"]


@dataclass(frozen=True)
class Throughput:
    """Training images per second of one trial (evaluation included when measured from the record)."""

    images_per_s: float
    source: str  # where it was measured, for the reader: "3 trials of sweep quick (median)", "--throughput"

    def __post_init__(self) -> None:
        if not self.images_per_s > 0:
            raise ValueError(f"a throughput must be > 0 images/s, got {self.images_per_s!r}")


@dataclass(frozen=True)
class PlanRow:
    """One study of the sweep: a variant, and a facet value when the sweep has a facet."""

    variant: str
    facet: Facet | None
    trials: int
    epochs: int  # summed over the study's trials (for a Bayesian search over epochs: its upper bound)
    train_images: int  # images trained on, summed over epochs and trials
    test_images: int  # images evaluated (the whole test set after every epoch)

    @property
    def study(self) -> str:
        return self.variant if self.facet is None else f"{self.variant}/{self.facet.label}"


@dataclass(frozen=True)
class SweepPlan:
    spec: SweepSpec
    rows: list[PlanRow]
    throughput: Throughput | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def trials(self) -> int:
        return sum(row.trials for row in self.rows)

    @property
    def epochs(self) -> int:
        return sum(row.epochs for row in self.rows)

    @property
    def train_images(self) -> int:
        return sum(row.train_images for row in self.rows)

    @property
    def trial_hours(self) -> float | None:
        """Hours of one trial slot for the whole sweep (None without a measured throughput)."""
        if self.throughput is None:
            return None
        return self.train_images / self.throughput.images_per_s / 3600.0

    @property
    def gpu_hours(self) -> float | None:
        """GPU-hours reserved: trial-hours times each trial's GPU share (None on CPU or without a throughput)."""
        hours = self.trial_hours
        return None if hours is None or self.spec.resources.gpu == 0 else hours * self.spec.resources.gpu

    @property
    def wall_hours(self) -> float | None:
        """Hours on a cluster that runs `max_concurrent_trials` trials at once (a lower bound: the last trials of a
        study run alone)."""
        hours = self.trial_hours
        return None if hours is None else hours / max(1, min(self.spec.max_concurrent_trials, self.trials))

    def to_dict(self) -> dict[str, Any]:
        return {
            "sweep": self.spec.name,
            "trials": self.trials,
            "epochs": self.epochs,
            "train_images": self.train_images,
            "studies": [
                {"study": row.study, "variant": row.variant, "facet": row.facet.label if row.facet else None,
                 "trials": row.trials, "epochs": row.epochs, "train_images": row.train_images,
                 "test_images": row.test_images}
                for row in self.rows
            ],
            "throughput_images_per_s": self.throughput.images_per_s if self.throughput else None,
            "throughput_source": self.throughput.source if self.throughput else None,
            "trial_hours": self.trial_hours,
            "gpu_hours": self.gpu_hours,
            "wall_hours": self.wall_hours,
            "notes": list(self.notes),
        }


def plan_sweep(spec: SweepSpec, throughput: Throughput | None = None) -> SweepPlan:
    """The plan of `spec`: per study its trials, epochs and images; hours when `throughput` is known."""
    train_size, test_size = DATASET_SIZES[spec.dataset]
    notes: list[str] = []
    rows = []
    for variant, facet in spec.studies():
        epochs = _study_epochs(spec, variant, facet, notes)
        rows.append(PlanRow(variant=variant, facet=facet, trials=spec.study_trials(variant), epochs=epochs,
                            train_images=epochs * train_size, test_images=epochs * test_size))
    if throughput is None:
        notes.append("no measured throughput for this model and batch size: no time estimate (pass --throughput "
                     "IMAGES_PER_S, or run a few trials first; bench/gpu_check.sh measures a GPU)")
    return SweepPlan(spec=spec, rows=rows, throughput=throughput, notes=list(dict.fromkeys(notes)))


def _study_epochs(spec: SweepSpec, variant: str, facet: Facet | None, notes: list[str]) -> int:
    """Epochs summed over one study's trials: the facet's or the cells' own budgets when epochs varies."""
    if facet is not None and facet.axis == "epochs":
        return int(facet.value) * spec.study_trials(variant)
    if "epochs" not in spec.swept_axes:
        return spec.epochs * spec.study_trials(variant)
    if spec.grid is not None:
        y, _ = spec.swept_axes
        return sum(int(cell.y if y == "epochs" else cell.x) for cell in spec.cells(variant))
    notes.append("the Bayesian search draws epochs per trial: its epochs are counted at the range's upper bound")
    return spec.max_epochs() * spec.study_trials(variant)

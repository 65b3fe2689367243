"""Building landscapes: one study's cells (`build_landscape`), or every study of a sweep.

    build_landscape(study, metric="test_error", epoch=None)               # one variant (and facet value)
    build_sweep_landscapes(storage, "fig2", metric="test_loss", epoch=3)  # every study, keyed 'sgd', 'sgdw', ...

A cell holds the mean, std and n of the metric over its seeds, the summary state of its trials, the numbers of
those trials and, for cells whose trials were stopped early, the budget (epochs) they reached. Nothing is
interpolated: a cell without a measured value stays empty (NaN).

Grid sweeps use the spec's values as the axes (every spec cell appears, even before it runs). Bayesian sweeps
(scattered points) are binned; an optional kernel-smoothed surface is attached as `Landscape.model`, labelled as a
model, never as data.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from optuna.storages import BaseStorage
from optuna.study import Study

from ..keys import Facet, parse_study_name, study_name
from ..parallel import map_keyed
from ..record import _optuna
from ..record.storage import as_storage
from ..record.studies import stored_spec, stored_spec_of, study_key
from ..spec import SweepSpec
from ..variants import VARIANT_NAMES
from ..vocabulary import LANDSCAPE_METRICS
from .aggregate import aggregate, bin_axis, bin_index, index_on, kernel_surface, merge_axis
from .reader import View, read_columns
from .types import Landscape, LandscapeAxis, LandscapeError

__all__ = ["build_landscape", "build_sweep_landscapes"]

# Above this many distinct values per axis, trials without a spec are treated as scattered.
_MAX_GRID_AXIS = 64
_DEFAULT_AXES = ("lr", "weight_decay")  # what hpscape 0.1 swept, and a study without a spec most likely holds


def _epochs(spec: SweepSpec | None, facet: Facet | None) -> int | None:
    """The epoch budget every cell shares: the spec's, or the facet's value; None when it varies by cell."""
    if spec is None or "epochs" in spec.swept_axes:
        return None
    if facet is not None and facet.axis == "epochs":
        return int(facet.value)
    return spec.epochs


def _source(metric: str, epoch: int | None, spec_metric: str,
            epochs: int | None) -> tuple[Literal["final", "intermediate", "history"], int | None]:
    if metric not in LANDSCAPE_METRICS:
        raise LandscapeError(f"unknown metric {metric!r}; choose one of {', '.join(LANDSCAPE_METRICS)}")
    if epoch is None:
        return "final", None
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
        raise LandscapeError(f"epoch must be an integer >= 1 (or omitted for the final epoch), got {epoch!r}")
    if epochs is not None and epoch > epochs:
        raise LandscapeError(
            f"epoch {epoch} is past this sweep's last epoch ({epochs}); choose 1..{epochs} or omit it for the "
            "final epoch"
        )
    if epochs is not None and epoch == epochs:
        return "final", None  # every metric is recorded at the end
    if metric == spec_metric:
        return "intermediate", epoch
    return "history", epoch


def build_landscape(
    study: Study,
    *,
    metric: str = "test_error",
    epoch: int | None = None,
    bins_per_octave: int = 1,
    model: bool = False,
    model_bandwidth: float = 0.75,
) -> Landscape:
    """The landscape of `metric` (at `epoch`, or the final epoch) over one study's cells.

    Grid sweeps: the spec's values on both axes. Bayesian sweeps or studies with scattered points: bins,
    `bins_per_octave` per factor of the axis's base on log axes. `model=True` attaches a kernel-smoothed
    `ModelSurface` to binned landscapes. Raises LandscapeError for an unknown metric, an epoch out of range, or
    a metric that was not recorded at that epoch.
    """
    return _build(_optuna.storage_of(study), _optuna.study_id_of(study), study.study_name, stored_spec(study),
                  metric, epoch, bins_per_octave, model, model_bandwidth)


def build_sweep_landscapes(
    storage: BaseStorage | str,
    record_name: str,
    *,
    metric: str = "test_error",
    epoch: int | None = None,
    bins_per_octave: int = 1,
    model: bool = False,
    spec: SweepSpec | None = None,
) -> dict[str, Landscape]:
    """`build_landscape` for every study of a sweep, keyed by study key ('sgd', 'sgdw/schedule=step', ...).

    Variants in registry order, facet values in the spec's order. `spec` (the sweep's, if the caller has it)
    saves looking the studies up. Pass a storage object (`make_storage`) rather than a URL when calling
    repeatedly: a URL opens a new connection pool each time. An unknown sweep gives an empty dict.
    """
    storage = as_storage(storage)
    found = _find_studies(storage, record_name, spec)
    if not found:
        return {}
    # Every study of a sweep holds the same spec; read it once.
    if spec is None:
        spec = stored_spec_of(storage, next(iter(found.values()))[0])
    # The studies are read side by side: their queries leave the GIL (the packed read spends nearly all its time in
    # the database), so four studies on two cores take about the time of two.
    return map_keyed(lambda study: _build(storage, study[0], study[1], spec, metric, epoch, bins_per_octave, model,
                                          0.75), found)


def _find_studies(storage: BaseStorage, sweep: str, spec: SweepSpec | None) -> dict[str, tuple[int, str]]:
    """Study key -> (study id, study name), in the figures' order."""
    if spec is not None:
        wanted = [(study_key(v, f), study_name(sweep, v, f)) for v in VARIANT_NAMES if v in spec.variants
                  for f in spec.facets()]
    else:
        # A few indexed lookups for an unfaceted sweep; a faceted one is found by listing the studies.
        wanted = [(v, study_name(sweep, v)) for v in VARIANT_NAMES]
    found: dict[str, tuple[int, str]] = {}
    for key, name in wanted:
        try:
            found[key] = (storage.get_study_id_from_name(name), name)
        except KeyError:
            continue
    if found or spec is not None:
        return found
    listed = []
    for summary in sorted(storage.get_all_studies()):
        try:
            name, variant, facet = parse_study_name(summary.study_name)
        except ValueError:
            continue
        if name == sweep and variant in VARIANT_NAMES and facet is not None:
            listed.append((variant, facet, summary.study_name))
    listed.sort(key=lambda item: VARIANT_NAMES.index(item[0]))
    return {study_key(v, f): (storage.get_study_id_from_name(n), n) for v, f, n in listed}


def _build(
    storage: BaseStorage,
    study_id: int,
    name: str,
    spec: SweepSpec | None,
    metric: str,
    epoch: int | None,
    bins_per_octave: int,
    model: bool,
    model_bandwidth: float,
) -> Landscape:
    sweep, variant, facet = parse_study_name(name)
    notes: list[str] = []
    if spec is None:
        notes.append("no readable sweep spec on the study: axes come from the trials, and the per-epoch values "
                     "are assumed to hold test_error")
    spec_metric = spec.metric if spec is not None else "test_error"
    epochs = _epochs(spec, facet)
    if not isinstance(bins_per_octave, int) or isinstance(bins_per_octave, bool) or bins_per_octave < 1:
        raise LandscapeError(f"bins_per_octave must be an integer >= 1, got {bins_per_octave!r}")
    source, view_epoch = _source(metric, epoch, spec_metric, epochs)
    y_name, x_name = spec.swept_axes if spec is not None else _DEFAULT_AXES
    view = View(metric, view_epoch, spec_metric, source, y_name, x_name)
    cols = read_columns(storage, study_id, view)

    y = LandscapeAxis.of(y_name, [], variant)
    x = LandscapeAxis.of(x_name, [], variant)
    grid = spec is not None and spec.grid is not None and variant in spec.variants
    scattered = not grid and (
        (spec is not None and spec.bayes is not None)
        or np.unique(cols.y).size > _MAX_GRID_AXIS
        or np.unique(cols.x).size > _MAX_GRID_AXIS
    )
    if scattered:
        kind: Literal["grid", "binned"] = "binned"
        ranges = spec.bayes.ranges if spec is not None and spec.bayes is not None else {}
        y_values = bin_axis(cols.y, ranges.get(y_name), bins_per_octave, y.scale)
        x_values = bin_axis(cols.x, ranges.get(x_name), bins_per_octave, x.scale)
        if x.log and np.any(cols.x == 0.0):
            x_values = np.concatenate([[0.0], x_values])
        row = bin_index(y_values, cols.y, bins_per_octave, y.scale)
        col = bin_index(x_values, cols.x, bins_per_octave, x.scale)
        notes.append(f"scattered trials binned ({bins_per_octave} bin(s) per factor of 2 on log axes); each cell "
                     "averages the trials that fell into it")
    else:
        kind = "grid"
        spec_y = spec.axis_values(y_name, variant) if grid else []  # type: ignore[union-attr]
        spec_x = spec.axis_values(x_name, variant) if grid else []  # type: ignore[union-attr]
        y_values, extra_y = merge_axis(spec_y, cols.y)
        x_values, extra_x = merge_axis(spec_x, cols.x)
        if grid and (extra_y or extra_x):
            notes.append("some trials lie off the spec's grid; their values were added as axis values")
        row = index_on(y_values, cols.y)
        col = index_on(x_values, cols.x)
    y = LandscapeAxis.of(y_name, y_values, variant)
    x = LandscapeAxis.of(x_name, x_values, variant)
    unplaced = int(np.sum((row < 0) | (col < 0)))
    if unplaced:
        notes.append(f"{unplaced} trial(s) without a usable {y_name}/{x_name} were left out")

    agg = aggregate(cols, row, col, (y.size, x.size))
    if source == "final":
        value_source = f"user attr {metric!r} at the final epoch"
        if metric == spec_metric:
            value_source += " (the objective where the attr is missing)"
    elif source == "intermediate":
        value_source = f"intermediate value at epoch {view_epoch} (holds {spec_metric})"
    else:
        value_source = f"the trials' history at epoch {view_epoch}"
        reached = int(np.sum(cols.epochs_done >= (view_epoch or 0)))
        if reached and not agg["n"].any() and not agg["n_diverged"].any():
            raise LandscapeError(
                f"{metric} is not recorded at epoch {view_epoch} in {name}: its trials keep no per-epoch history "
                f"(a record written before hpscape 0.2, whose per-epoch values hold only {spec_metric}). Choose "
                f"metric={spec_metric} for epoch {view_epoch}, or the final epoch for {metric}."
            )
    if np.any(agg["state_counts"]["stopped"]) and source == "final":
        notes.append("cells marked 'stopped' hold values at the epoch their trials were stopped (budget b), not at "
                     "the final epoch")

    surface = None
    if model and kind == "binned":
        surface = kernel_surface(cols, y.values, x.values, (y.scale, x.scale), model_bandwidth)
    elif model:
        notes.append("a model surface is only drawn for Bayesian (binned) sweeps")

    points = {"number": cols.number, "y": cols.y, "x": cols.x, "value": cols.value} if kind == "binned" else {}
    return Landscape(
        sweep=sweep, variant=variant, facet=facet, metric=metric, epoch=epoch, kind=kind, spec_metric=spec_metric,
        epochs=epochs, y=y, x=x, notes=tuple(notes), model=surface, value_source=value_source, points=points, **agg,
    )

"""The Python API for notebooks and scripts: run a sweep, load a recorded one, look at it.

    import hpscape
    sweep = hpscape.run("quick", storage="sqlite:///quick.db", epochs=5)   # a local Ray by default
    sweep = hpscape.load("sqlite:///quick.db", "quick")                     # any recorded sweep
    sweep.coupling["sgd"].ridge_slope, sweep.figure()                       # numbers, and a plotly Figure

A `Sweep` shows itself as its figure in Jupyter (`_repr_html_`). Configuration (HPSCAPE_*) is read here, at the
edge, only for what the caller does not pass.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpscape.landscapes import (
    PRESETS,
    CouplingMetrics,
    Landscape,
    SpecError,
    SweepSpec,
    build_sweep_landscapes,
    coupling_metrics,
    get_preset,
    list_sweep_studies,
    load_spec,
    make_storage,
    stored_spec,
    sweep_summary,
)

__all__ = ["Sweep", "load", "run"]

log = logging.getLogger("hpscape")
_PROGRESS_EVERY_S = 10.0


@dataclass
class Sweep:
    """A recorded sweep: its spec, landscapes (keyed 'sgd', 'sgdw/schedule=step', ...) and coupling metrics."""

    spec: SweepSpec
    storage: str
    metric: str
    epoch: int | None
    landscapes: dict[str, Landscape]
    coupling: dict[str, CouplingMetrics]
    summary: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    def at(self, *, metric: str | None = None, epoch: int | None = None) -> Sweep:
        """The same sweep's landscapes of another metric, or at an epoch (None: the final one)."""
        return load(self.storage, self.name, metric=metric or self.metric, epoch=epoch)

    def figure(self, *, clip: tuple[float, float] | None = None) -> Any:
        """The landscapes side by side (Figure 2's layout) as a plotly `go.Figure`."""
        import plotly.graph_objects as go

        from hpscape.dashboards import default_clip, sweep_figure

        used = clip or default_clip(self.landscapes.values(), self.metric, dataset=self.spec.dataset)
        figure = sweep_figure(self.landscapes, clip=used, coupling=self.coupling,
                              title=f"{self.name}: {self.metric.replace('_', ' ')}", width=1300)
        return go.Figure(figure)

    def view(self, name: str, *, metrics: list[str] | None = None, angle: str = "theory") -> dict[str, Any]:
        """Another view of the sweep as the pages draw it: "facets", "curves", "budget" or "mechanism" (figures and
        tables; `angle` is the mechanism's x axis, "theory" or "measured").

        ValueError when it does not apply (the message says why: no facet, too many cells, no epochs facet, no
        variant pair).
        """
        from hpscape.dashboards.views import budget_view, curves_view, facet_view, mechanism_view, view_unavailable

        why = view_unavailable(name, self.spec)
        if why is not None or name == "landscape":
            raise ValueError(why or "the landscape view is `figure()`")
        if name == "facets":
            return facet_view(self.landscapes, dataset=self.spec.dataset, title=f"{self.name}: {self.metric}")
        if name == "budget":
            return budget_view(self.landscapes, self.spec, title=f"{self.name}: optimal decay against the budget")
        if name == "mechanism":
            return mechanism_view(self.mechanism(angle=angle), title=f"{self.name}: {self.metric} against the angle")
        chosen = metrics or list(dict.fromkeys([self.metric, "train_loss"]))
        return curves_view(self.curves(chosen), self.spec, chosen, title=f"{self.name}: learning curves")

    def curves(self, metrics: list[str] | None = None) -> list[Any]:
        """Every cell's per-epoch curves over its seeds (`hpscape.landscapes.CellCurves`), for few-cell sweeps."""
        from hpscape.landscapes import LANDSCAPE_METRICS, sweep_curves

        return sweep_curves(self.storage, self.name, self.spec, metrics=metrics or list(LANDSCAPE_METRICS))

    def mechanism(self, *, angle: str = "theory") -> list[Any]:
        """Per variant pair (and facet value): the cells against their equilibrium angle and the collapse score
        (`hpscape.landscapes.mechanism.Collapse`)."""
        from hpscape.landscapes import sweep_mechanism

        return sweep_mechanism(self.storage, self.name, self.spec, metric=self.metric, angle=angle)  # type: ignore[arg-type]

    def table(self) -> list[dict[str, Any]]:
        """One row per landscape: best value and cell, ridge slope with its 95 % interval, verdict, interaction,
        separability, basin size."""
        rows = []
        for key, metrics in self.coupling.items():
            rows.append({"landscape": key, "best": None if metrics.best is None else metrics.best["value"],
                         "at": None if metrics.best is None else metrics.best["params"],
                         "ridge_slope": metrics.ridge_slope, "ridge_slope_ci": metrics.ridge_slope_ci,
                         "verdict": metrics.verdict, "interaction": metrics.interaction,
                         "separability": metrics.separability, "basin_cells": metrics.basin_cells,
                         "cells": metrics.n_cells, "notes": list(metrics.notes)})
        return rows

    def _repr_html_(self) -> str:
        return self.figure().to_html(include_plotlyjs="cdn", full_html=False)

    def __repr__(self) -> str:
        done = sum(int(land.n.sum()) for land in self.landscapes.values())
        return (f"<hpscape.Sweep {self.name!r}: {len(self.landscapes)} landscape(s) of {self.metric} over "
                f"{' x '.join(self.spec.swept_axes)}, {done} measured trial(s), {self.storage}>")


def _settings() -> Any:
    from hpscape.service.settings import load_settings

    return load_settings()


def _as_spec(spec_or_preset: SweepSpec | str | Path | Mapping[str, Any], overrides: dict[str, Any]) -> SweepSpec:
    if isinstance(spec_or_preset, SweepSpec):
        return spec_or_preset.replace(**overrides) if overrides else spec_or_preset
    if isinstance(spec_or_preset, Mapping):
        return SweepSpec.model_validate({**spec_or_preset, **overrides})
    if isinstance(spec_or_preset, str) and spec_or_preset in PRESETS:
        return get_preset(spec_or_preset, **overrides)
    path = Path(spec_or_preset)
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        spec = load_spec(path)
        return spec.replace(**overrides) if overrides else spec
    raise SpecError(f"{spec_or_preset!r} is neither a preset ({', '.join(sorted(PRESETS))}) nor a spec file "
                    "(.yaml, .yml, .json); pass a SweepSpec, a dict, a preset name or a path")


def run(
    spec_or_preset: SweepSpec | str | Path | Mapping[str, Any],
    *,
    storage: str | None = None,
    runs_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
    ray_address: str | None = None,
    resume: bool = False,
    **overrides: Any,
) -> Sweep:
    """Run a sweep to its end and return it, loaded: a preset name, a spec file, a dict or a `SweepSpec`.

    `overrides` replace top-level spec fields (``epochs=5``, ``name="mine"``). Without `ray_address` a local Ray
    is started in this process. A sweep run before under the same name and spec continues where it stopped
    (`resume` adopts trials a crashed run left RUNNING). Progress is logged to the "hpscape" logger.
    """
    from hpscape.landscapes import ensure_sqlite_dir
    from hpscape.workers.sweep import run_sweep

    spec = _as_spec(spec_or_preset, overrides)
    settings = _settings()
    storage = storage or settings.storage
    ensure_sqlite_dir(storage)
    last = [0.0]

    def on_progress(snapshot: dict[str, Any]) -> None:
        now = time.monotonic()
        if not snapshot.get("final") and now - last[0] < _PROGRESS_EVERY_S:
            return
        last[0] = now
        done = sum(s["counts"].get("COMPLETE", 0) + s["counts"].get("PRUNED", 0) + s["counts"].get("FAIL", 0)
                   for s in snapshot["summary"].values())
        log.warning("%s: %d/%d trials finished, %.0f s", spec.name, done, spec.total_trials(),
                    snapshot.get("elapsed_s", 0.0))

    run_sweep(spec, storage_url=storage, runs_dir=runs_dir or settings.runs_dir,
              data_dir=data_dir or settings.data_dir, ray_address=ray_address or settings.ray_address,
              resume=resume, on_progress=on_progress)
    return load(storage, spec.name)


def load(storage: str | None, name: str, *, metric: str | None = None, epoch: int | None = None) -> Sweep:
    """A recorded sweep's landscapes (of its own metric, at the final epoch, unless told otherwise).

    `storage` None reads HPSCAPE_STORAGE. LookupError naming the sweeps that exist when there is none called
    `name`.
    """
    storage = storage or _settings().storage
    backend = make_storage(storage)
    studies = list_sweep_studies(backend, name)
    if not studies:
        known = sorted({s.study_name.split("/", 1)[0] for s in backend.get_all_studies()})
        raise LookupError(f"no sweep named {name!r} in {storage}; recorded sweeps: {', '.join(known) or 'none'}")
    spec = stored_spec(next(iter(studies.values())))
    if spec is None:
        raise LookupError(f"sweep {name!r} in {storage} has no spec this version of hpscape can read")
    metric = metric or spec.metric
    landscapes = build_sweep_landscapes(backend, name, metric=metric, epoch=epoch, spec=spec)
    coupling = {key: coupling_metrics(landscape) for key, landscape in landscapes.items()}
    return Sweep(spec, storage, metric, epoch, landscapes, coupling, sweep_summary(backend, name, spec.studies()))

"""What the sweep page fetches: landscapes, coupling metrics, progress and (optionally) the figure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hpscape.landscapes import LANDSCAPE_METRICS, Landscape, coupling_metrics

from .figures import panel_rows, sweep_figure
from .format import default_clip

__all__ = ["landscape_payload", "sweep_progress"]


def sweep_progress(landscapes: Mapping[str, Landscape]) -> dict[str, int]:
    """Trials per category over all variants, plus ``total`` and ``finished``."""
    totals: dict[str, int] = {}
    for landscape in landscapes.values():
        for name, count in landscape.progress().items():
            totals[name] = totals.get(name, 0) + count
    totals["total"] = sum(totals.values())
    totals["finished"] = sum(totals.get(k, 0) for k in ("done", "diverged", "stopped", "failed"))
    return totals


def landscape_payload(
    landscapes: Mapping[str, Landscape],
    *,
    sweep: Mapping[str, Any],
    metric: str,
    epoch: int | None,
    clip: tuple[float, float] | None = None,
    figure: bool = False,
    show_model: bool = False,
) -> dict[str, Any]:
    """The JSON body of ``GET /api/v1/sweeps/{id}/landscape``.

    `sweep` describes the sweep (id, name, status, dataset, epochs, ...) and is passed through.
    `clip` overrides the default colour range; `figure` adds the plotly figure of the page.
    """
    coupling = {variant: coupling_metrics(l) for variant, l in landscapes.items()}
    default = default_clip(landscapes.values(), metric, dataset=sweep.get("dataset"))
    used = clip if clip is not None else default
    body: dict[str, Any] = {
        "sweep": dict(sweep),
        "metric": metric,
        "epoch": epoch,
        "metrics": list(LANDSCAPE_METRICS),
        "variants": list(landscapes),
        "rows": [list(row) for row in panel_rows(list(landscapes))],
        "clip": None if used is None else list(used),
        "clip_default": None if default is None else list(default),
        "progress": sweep_progress(landscapes),
        "landscapes": {
            variant: {**l.to_dict(), "coupling": coupling[variant].to_dict()}
            for variant, l in landscapes.items()
        },
    }
    if figure:
        body["figure"] = sweep_figure(landscapes, clip=used, coupling=coupling, show_model=show_model)
    return body

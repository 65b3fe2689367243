"""What the sweep page fetches: landscapes, coupling metrics, progress and (optionally) the figure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hpscape.landscapes import LANDSCAPE_METRICS, Landscape, coupling_metrics_by_key
from hpscape.landscapes.variants import variant_label

from .figures import sweep_figure
from .format import default_clip
from .rows import figure_rows
from .traces import panel_name

__all__ = ["landscape_payload", "sweep_progress"]


def sweep_progress(landscapes: Mapping[str, Landscape]) -> dict[str, int]:
    """Trials per category over all studies, plus ``total`` and ``finished``."""
    totals: dict[str, int] = {}
    for landscape in landscapes.values():
        for name, count in landscape.progress().items():
            totals[name] = totals.get(name, 0) + count
    totals["total"] = sum(totals.values())
    totals["finished"] = sum(totals.get(k, 0) for k in ("done", "diverged", "stopped", "failed"))
    return totals


def _unique(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


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
    `landscapes` (and the body's "landscapes") are keyed by study key: 'sgdw', or 'sgdw/schedule=step'.
    """
    coupling = coupling_metrics_by_key(landscapes)
    default = default_clip(landscapes.values(), metric, dataset=sweep.get("dataset"))
    used = clip if clip is not None else default
    first = next(iter(landscapes.values()), None)
    body: dict[str, Any] = {
        "sweep": dict(sweep),
        "metric": metric,
        "epoch": epoch,
        "metrics": list(LANDSCAPE_METRICS),
        "keys": list(landscapes),
        "variants": _unique([land.variant for land in landscapes.values()]),
        "facets": _unique([land.facet.label for land in landscapes.values() if land.facet is not None]),
        "axes": None if first is None else [first.y.name, first.x.name],
        "rows": [row.to_dict() for row in figure_rows(landscapes)],
        "clip": None if used is None else list(used),
        "clip_default": None if default is None else list(default),
        "progress": sweep_progress(landscapes),
        "landscapes": {
            key: {
                **land.to_dict(),
                "label": variant_label(land.variant),  # "AdamW (paper)"
                "title": panel_name(land),  # "AdamW (paper) · schedule=step"
                "coupling": coupling[key].to_dict(),
            }
            for key, land in landscapes.items()
        },
    }
    if figure:
        body["figure"] = sweep_figure(landscapes, clip=used, coupling=coupling, show_model=show_model)
    return body

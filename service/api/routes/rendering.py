"""Figures as images for the export routes: drawn by a headless Chromium (dashboards.render), with a caption.

Drawing takes a few seconds and a browser process; at most `_MAX_RENDERS` run at once, others get a 503 with
Retry-After rather than a queue that grows without bound.
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import HTTPException
from fastapi.responses import Response

from hpscape.dashboards.render import IMAGE_FORMATS, RenderUnavailable, figure_caption, render_figure, with_caption
from hpscape.service.db.models import SweepRow
from hpscape.service.settings import Settings

__all__ = ["image_response"]

_MAX_RENDERS = 2
_renders = threading.BoundedSemaphore(_MAX_RENDERS)


def image_response(figure: dict[str, Any], fmt: str, *, row: SweepRow, settings: Settings, what: str | None = None,
                   metric: str | None = None, epoch: int | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    from hpscape.landscapes import SweepSpec

    spec = SweepSpec.model_validate(row.spec) if row.spec else None
    if spec is not None:
        figure = with_caption(figure, figure_caption(spec, metric or spec.metric, epoch, what=what))
    if not _renders.acquire(blocking=False):
        raise HTTPException(503, detail=f"{_MAX_RENDERS} images are being drawn already; try again in a few seconds",
                            headers={"Retry-After": "5"})
    try:
        image = render_figure(figure, fmt, browser=settings.chromium)  # type: ignore[arg-type]
    except RenderUnavailable as exc:
        raise HTTPException(503, detail=str(exc)) from None
    finally:
        _renders.release()
    return Response(image, media_type=IMAGE_FORMATS[fmt], headers=headers or {})

"""The HTML pages (sweep list, sweep landscape) and their static files, plotly.js included.

The pages are shells with no sweep data in them, so they need no token: their scripts read the
API with the token the user gives them (kept in the browser's localStorage), or anonymously when
HPSCAPE_PUBLIC_READ is on.
"""

from __future__ import annotations

import gzip
import hashlib
from functools import lru_cache
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Request, status
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from hpscape.dashboards import (
    STATIC_FILES,
    plotly_js_path,
    static_path,
    sweep_list_html,
    sweep_page_html,
    view_page_html,
)
from hpscape.dashboards.views import VIEWS

# The landscape view is the sweep page itself; the others have a page each.
VIEW_NAMES = tuple(name for name in VIEWS if name != "landscape")

router = APIRouter(include_in_schema=False)

# plotly.min.js changes only with the installed package: let browsers keep it for a day.
_PLOTLY_CACHE = {"Cache-Control": "public, max-age=86400"}
_PAGE_CACHE = {"Cache-Control": "no-cache"}


@router.get("/")
def index() -> RedirectResponse:
    return RedirectResponse("/sweeps", status_code=status.HTTP_307_TEMPORARY_REDIRECT)


@router.get("/sweeps", response_class=HTMLResponse)
def sweeps_page() -> HTMLResponse:
    return HTMLResponse(sweep_list_html(), headers=_PAGE_CACHE)


@router.get("/sweeps/{sweep_id}", response_class=HTMLResponse)
def sweep_page(sweep_id: Annotated[str, Path(max_length=64)]) -> HTMLResponse:
    return HTMLResponse(sweep_page_html(sweep_id), headers=_PAGE_CACHE)


@router.get("/sweeps/{sweep_id}/{view}", response_class=HTMLResponse)
def view_page(sweep_id: Annotated[str, Path(max_length=64)], view: Literal[VIEW_NAMES]) -> HTMLResponse:  # type: ignore[valid-type]
    return HTMLResponse(view_page_html(sweep_id, view), headers=_PAGE_CACHE)


@lru_cache(maxsize=1)
def _plotly_bundle() -> tuple[bytes, bytes, str]:
    """plotly.min.js, gzipped once (4.8 MB -> about 1.4 MB on the wire), and its ETag."""
    raw = plotly_js_path().read_bytes()
    return raw, gzip.compress(raw, compresslevel=6, mtime=0), '"' + hashlib.sha256(raw).hexdigest()[:20] + '"'


@router.get("/static/plotly.min.js")
def plotly_js(request: Request) -> Response:
    raw, packed, etag = _plotly_bundle()
    headers = {**_PLOTLY_CACHE, "ETag": etag, "Vary": "Accept-Encoding"}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(packed, media_type="text/javascript; charset=utf-8", headers=headers)
    return Response(raw, media_type="text/javascript; charset=utf-8", headers=headers)


@router.get("/static/{name}")
def static_file(name: str) -> FileResponse:
    try:
        path = static_path(name)
    except KeyError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no static file {name!r}") from None
    return FileResponse(path, media_type=STATIC_FILES[name], headers=_PAGE_CACHE)

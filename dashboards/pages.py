"""The HTML pages (thin shells: their scripts fetch the API) and the static files they load.

plotly.js comes from the installed plotly package (its package data holds plotly.min.js), so
the pages work with no internet access.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

__all__ = [
    "STATIC_DIR",
    "STATIC_FILES",
    "plotly_js_path",
    "static_path",
    "sweep_list_html",
    "sweep_page_html",
    "view_page_html",
]

STATIC_DIR = Path(__file__).resolve().parent / "static"
# The files the pages load, with their media types; nothing else is served from STATIC_DIR.
STATIC_FILES: dict[str, str] = {
    "api.js": "text/javascript; charset=utf-8",  # what both pages share: token, requests, errors, the token form
    "cell.js": "text/javascript; charset=utf-8",  # the sweep page's panel of a clicked cell (small multiples)
    "hpscape.css": "text/css; charset=utf-8",
    "sweep.js": "text/javascript; charset=utf-8",
    "sweeps.js": "text/javascript; charset=utf-8",
    "view.js": "text/javascript; charset=utf-8",  # the facet, curves and budget views
}


def plotly_js_path() -> Path:
    """plotly.min.js as shipped inside the installed plotly Python package."""
    import plotly

    path = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: the plotly package is incomplete; reinstall it "
            "(pip install --force-reinstall plotly)"
        )
    return path


def static_path(name: str) -> Path:
    """The path of static file `name`; KeyError for anything not in STATIC_FILES."""
    if name not in STATIC_FILES:
        raise KeyError(f"no static file {name!r}")
    return STATIC_DIR / name


def _config_script(config: dict[str, Any]) -> str:
    # "<" escaped so that no value can close the script element.
    payload = json.dumps(config).replace("<", "\\u003c")
    return f'<script id="hpscape-config" type="application/json">{payload}</script>'


# Both pages ask for a token the same way; api.js shows the form on a 401 and stores what is typed.
_AUTH_FORM = """<form id="auth" class="auth" hidden onsubmit="return false">
  This server needs an API token to read sweeps:
  <input id="token" type="password" size="40" placeholder="token" autocomplete="off">
  <button id="token-save" type="submit">use token</button>
</form>"""


def _script(static_base: str, name: str) -> str:
    return f'<script src="{escape(static_base)}/{name}"></script>'


def _head(title: str, static_base: str) -> str:
    """Everything up to (not including) the closing </head>."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title>"
        f'<link rel="icon" href="data:,"><link rel="stylesheet" href="{escape(static_base)}/hpscape.css">'
    )


def sweep_page_html(
    sweep_id: str,
    *,
    api_base: str = "/api/v1",
    static_base: str = "/static",
    pages_base: str = "",
    poll_seconds: float = 5.0,
) -> str:
    """The Figure 2 page of one sweep; its script polls the landscape API while the sweep runs."""
    config = {
        "sweep_id": sweep_id,
        "api": api_base,
        "pages": pages_base,
        "poll_ms": int(poll_seconds * 1000),
    }
    # sweep.js (after api.js, which it uses) comes before plotly.js, so that its landscape request overlaps
    # plotly.js's compilation.
    head = _head(f"hpscape · {sweep_id}", static_base)
    scripts = (
        _config_script(config)
        + _script(static_base, "api.js")
        + _script(static_base, "sweep.js")
        + _script(static_base, "plotly.min.js")
        + _script(static_base, "cell.js")
    )
    return (
        head
        + scripts
        + f"""</head>
<body class="sweep-page">
<header>
  <a class="back" href="{escape(pages_base)}/sweeps">&larr; sweeps</a>
  <h1 id="sweep-name">{escape(sweep_id)}</h1>
  <span id="sweep-status" class="badge">loading</span>
  <div class="progress" title="finished trials"><div id="progress-bar" class="bar"></div></div>
  <span id="progress-text" class="muted"></span>
  <nav id="views" class="views"></nav>
</header>
<section class="controls">
  <label>metric <select id="metric"></select></label>
  <label>epoch <select id="epoch"><option value="">final</option></select></label>
  <label>colour range <input id="clip-lo" type="number" step="any" size="6"> &ndash;
    <input id="clip-hi" type="number" step="any" size="6"> <span id="clip-unit"></span></label>
  <button id="clip-reset" type="button">reset range</button>
  <label id="model-toggle" hidden><input id="model" type="checkbox"> model surface</label>
  <label><input id="live" type="checkbox" checked> live</label>
  <span id="updated" class="muted"></span>
  <span class="exports">export
    <button type="button" data-export="html">HTML</button>
    <button type="button" id="export-png">PNG</button>
    <button type="button" data-export="csv">CSV</button>
    <button type="button" data-export="json">JSON</button>
  </span>
</section>
{_AUTH_FORM}
<div id="message" class="message" hidden></div>
<div id="notes" class="notes" hidden></div>
<div id="figure" class="figure"></div>
<section>
  <h2>Coupling</h2>
  <p class="muted"><span id="coupling-ridge">ridge slope: the line through each row's optimum between grid points,
  horizontal against vertical, each in its axis's scale (lr &times; weight decay: &asymp; &minus;1 coupled, &asymp; 0
  decoupled)</span>, with its 95&nbsp;% interval (a bootstrap over seeds, or over cells with one seed); verdict:
  coupled when the whole interval lies below &minus;0.3, separable when it lies within &plusmn;0.3, inconclusive
  otherwise; interaction: |c|/&radic;(ab) of a quadratic fit around the best cells (0 separable, 1 diagonal);
  separability: share of variance that row + column effects explain around the basin; basin: cells within
  10&nbsp;% of the best, and the fitted basin's area (axis units&sup2;) and tilt from vertical.</p>
  <table id="coupling" class="grid-table"></table>
</section>
<section class="detail">
  <div class="curves-box">
    <h2 id="curves-title">Learning curves</h2>
    <label>curve <select id="curve-metric"></select></label>
    <p id="curves-hint" class="muted">Click a cell to see the learning curves of its trials.</p>
    <div id="curves" class="curves"></div>
  </div>
  <div class="trials-box">
    <h2 id="table-title">Trials</h2>
    <label>study <select id="table-variant"></select></label>
    <button id="table-best" type="button">best trials</button>
    <table id="trials" class="grid-table"></table>
  </div>
</section>
</body></html>
"""
    )


def view_page_html(
    sweep_id: str,
    view: str,
    *,
    api_base: str = "/api/v1",
    static_base: str = "/static",
    pages_base: str = "",
    poll_seconds: float = 5.0,
) -> str:
    """One of the sweep's other views (facets, curves, budget): figures the server draws, and their numbers."""
    from .views import VIEWS

    if view not in VIEWS:
        raise KeyError(f"no view {view!r}")
    config = {"sweep_id": sweep_id, "view": view, "api": api_base, "pages": pages_base,
              "poll_ms": int(poll_seconds * 1000), "views": VIEWS}
    sweep = f"{escape(pages_base)}/sweeps/{escape(sweep_id)}"
    return (
        _head(f"hpscape · {sweep_id} · {view}", static_base)
        + f"""</head>
<body class="view-page" data-view="{escape(view)}">
<header>
  <a class="back" href="{sweep}">&larr; {escape(sweep_id)}</a>
  <h1 id="view-title">{escape(VIEWS[view])}</h1>
  <span id="sweep-status" class="badge">loading</span>
  <nav id="views" class="views"></nav>
</header>
<section class="controls">
  <label id="metric-box">metric <select id="metric"></select></label>
  <label id="epoch-box" hidden>epoch <select id="epoch"><option value="">final</option></select></label>
  <label><input id="live" type="checkbox" checked> live</label>
  <span id="updated" class="muted"></span>
  <span class="exports">export
    <button type="button" data-export="html">HTML</button>
    <button type="button" data-export="png">PNG</button>
    <button type="button" data-export="svg">SVG</button>
    <button type="button" data-export="json">JSON</button>
  </span>
</section>
{_AUTH_FORM}
<div id="message" class="message" hidden></div>
<div id="notes" class="notes" hidden></div>
<div id="figure" class="figure"></div>
<div id="figure2" class="figure" hidden></div>
<section>
  <h2 id="table-title">Numbers</h2>
  <table id="table" class="grid-table"></table>
  <h2 id="table2-title" hidden></h2>
  <table id="table2" class="grid-table" hidden></table>
</section>
{_config_script(config)}
{_script(static_base, "api.js")}
{_script(static_base, "plotly.min.js")}
{_script(static_base, "view.js")}
</body></html>
"""
    )


def sweep_list_html(
    *,
    api_base: str = "/api/v1",
    static_base: str = "/static",
    pages_base: str = "",
    poll_seconds: float = 5.0,
) -> str:
    """The list of sweeps with their status and progress; refreshed by polling."""
    config = {"api": api_base, "pages": pages_base, "poll_ms": int(poll_seconds * 1000)}
    return (
        _head("hpscape · sweeps", static_base)
        + f"""</head>
<body class="list-page">
<header><h1>Sweeps</h1><span id="updated" class="muted"></span></header>
{_AUTH_FORM}
<div id="message" class="message" hidden></div>
<table id="sweeps" class="grid-table">
  <thead><tr><th class="left">sweep</th><th class="left">status</th><th class="left">progress</th>
    <th class="left">owner</th><th class="left">created</th><th class="left">finished</th></tr></thead>
  <tbody></tbody>
</table>
<button id="more" type="button" hidden>more</button>
{_config_script(config)}
{_script(static_base, "api.js")}
{_script(static_base, "sweeps.js")}
</body></html>
"""
    )

"""Figures as image files (PNG, SVG, PDF), drawn by plotly.js itself in a headless Chromium.

The same figure the page and the offline HTML show goes into a page with plotly.js inlined; plotly's own
`Plotly.toImage` gives the PNG and SVG, Chromium's printer the PDF. Nothing is fetched from the network. Chromium is
Debian's (`make chromium`), driven through playwright; which one is passed in (`HPSCAPE_CHROMIUM` at the edges).
"""

from __future__ import annotations

import base64
import tempfile
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from .export import standalone_html

__all__ = ["DEFAULT_CHROMIUM", "IMAGE_FORMATS", "RenderUnavailable", "figure_caption", "render_figure",
           "with_caption"]

DEFAULT_CHROMIUM = Path("/usr/bin/chromium")
IMAGE_FORMATS: Mapping[str, str] = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf"}
_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
_CAPTION_PX = 40


class RenderUnavailable(RuntimeError):
    """No browser to draw with; the message says how to get one."""


def figure_caption(spec: Any, metric: str, epoch: int | None = None, *, what: str | None = None) -> str:
    """One line on what was trained, on what, and what the figure shows (a `SweepSpec` in, text out)."""
    seeds = ", ".join(str(s) for s in spec.seeds)
    shown = what or f"colour: {metric.replace('_', ' ')} at " + ("the final epoch" if epoch is None else
                                                               f"epoch {epoch}")
    noise = f" · label noise {spec.label_noise:.0%}" if spec.label_noise else ""
    facet = f" · facet {spec.facet.axis}" if spec.facet is not None else ""
    return (f"{spec.name}: {spec.dataset} · {spec.model} · {spec.max_epochs()} epochs, batch {spec.batch_size}, "
            f"{spec.schedule}{facet}{noise} · {spec.precision} · seeds {seeds} · {shown}")


def with_caption(figure: Mapping[str, Any], caption: str) -> dict[str, Any]:
    """The figure with one line of `caption` under it (what was trained, on what, and what the colour is)."""
    layout = dict(figure.get("layout", {}))
    margin = dict(layout.get("margin", {}))
    below = int(margin.get("b", 16))  # what the figure already draws under its plots: axis titles, a legend
    margin["b"] = below + _CAPTION_PX
    layout["margin"] = margin
    if "height" in layout:
        layout["height"] = int(layout["height"]) + _CAPTION_PX
    note = {"text": caption, "xref": "paper", "yref": "paper", "x": 0.0, "y": 0.0, "xanchor": "left",
            "yanchor": "top", "yshift": -below - 4, "showarrow": False, "font": {"size": 11, "color": "#444"},
            "align": "left", "name": "caption"}
    layout["annotations"] = [*layout.get("annotations", []), note]
    return {**dict(figure), "layout": layout}


def render_figure(
    figure: Mapping[str, Any],
    fmt: Literal["png", "svg", "pdf"],
    *,
    width: int = 1300,
    scale: float = 2.0,
    browser: str | Path = DEFAULT_CHROMIUM,
) -> bytes:
    """The figure as `fmt` bytes, `width` CSS pixels wide (its own height), PNG at `scale` device pixels per pixel."""
    if fmt not in IMAGE_FORMATS:
        raise ValueError(f"unknown image format {fmt!r}; choose one of {', '.join(IMAGE_FORMATS)}")
    browser = Path(browser)
    if not browser.is_file():
        raise RenderUnavailable(f"{browser} is missing: image export draws with Chromium; install it "
                                "(`make chromium`, or apt-get install chromium) or set HPSCAPE_CHROMIUM to one")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # a trimmed install
        raise RenderUnavailable("image export needs playwright: pip install playwright (no browser download)") \
            from exc
    layout = dict(figure.get("layout", {}))
    height = int(layout.get("height", 800))
    html = standalone_html({**dict(figure), "layout": {**layout, "width": width}}, title="hpscape figure")
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        page_file = Path(tmp) / "figure.html"
        page_file.write_text(html, encoding="utf-8")
        chromium = playwright.chromium.launch(executable_path=str(browser), args=_ARGS)
        try:
            page = chromium.new_page(viewport={"width": width + 40, "height": height + 80})
            page.goto(page_file.as_uri())
            page.wait_for_selector(".main-svg")
            if fmt == "pdf":
                return page.pdf(width=f"{width + 40}px", height=f"{height + 80}px", print_background=True)
            url = page.evaluate(
                "([format, width, height, scale]) => Plotly.toImage(document.querySelector('.js-plotly-plot'), "
                "{format, width, height, scale})", [fmt, width, height, scale])
        finally:
            chromium.close()
    header, _, data = url.partition(",")
    return base64.b64decode(data) if header.endswith(";base64") else urllib.parse.unquote(data).encode("utf-8")

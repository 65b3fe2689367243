"""Figures and pages for the landscapes: the Figure 2 view, exports, and the HTML the service serves.

Builds on `landscapes` (Landscape objects in, plotly dicts / HTML / CSV out); no database I/O.
"""

from .export import CSV_COLUMNS, grid_csv, grid_json, landscape_html, standalone_html
from .figures import PAIRS, difference, panel_rows, sweep_figure
from .format import (
    FIG2_CLIP,
    VARIANT_LABELS,
    axis_ticks,
    default_clip,
    format_value,
    is_error_metric,
    metric_label,
)
from .pages import (
    STATIC_DIR,
    STATIC_FILES,
    plotly_js_path,
    static_path,
    sweep_list_html,
    sweep_page_html,
)
from .payload import landscape_payload, sweep_progress

__all__ = [
    "CSV_COLUMNS",
    "FIG2_CLIP",
    "PAIRS",
    "STATIC_DIR",
    "STATIC_FILES",
    "VARIANT_LABELS",
    "axis_ticks",
    "default_clip",
    "difference",
    "format_value",
    "grid_csv",
    "grid_json",
    "is_error_metric",
    "landscape_html",
    "landscape_payload",
    "metric_label",
    "panel_rows",
    "plotly_js_path",
    "standalone_html",
    "static_path",
    "sweep_figure",
    "sweep_list_html",
    "sweep_page_html",
    "sweep_progress",
]

"""Figures and pages for the landscapes: the Figure 2 view, exports, and the HTML the service serves.

Builds on `landscapes` (Landscape objects in, plotly dicts / HTML / CSV out); no database I/O. Variants, their
labels and pairs come from the registry (`hpscape.landscapes.variants`), axes and their titles from each
landscape's `LandscapeAxis`.
"""

from .export import csv_columns, grid_csv, grid_json, landscape_figure, landscape_html, standalone_html
from .figures import sweep_figure
from .format import (
    FIG2_CLIP,
    axis_ticks,
    axis_title,
    coordinate,
    coupling_text,
    default_clip,
    format_value,
    is_error_metric,
    metric_label,
    slope_text,
)
from .pages import (
    STATIC_DIR,
    STATIC_FILES,
    plotly_js_path,
    static_path,
    sweep_list_html,
    sweep_page_html,
    view_page_html,
)
from .payload import landscape_payload, sweep_progress
from .rows import FigureRow, difference, figure_rows
from .traces import panel_name

__all__ = [
    "FIG2_CLIP",
    "STATIC_DIR",
    "STATIC_FILES",
    "FigureRow",
    "axis_ticks",
    "axis_title",
    "coordinate",
    "coupling_text",
    "csv_columns",
    "default_clip",
    "difference",
    "figure_rows",
    "format_value",
    "grid_csv",
    "grid_json",
    "is_error_metric",
    "landscape_figure",
    "landscape_html",
    "landscape_payload",
    "metric_label",
    "panel_name",
    "plotly_js_path",
    "standalone_html",
    "static_path",
    "sweep_figure",
    "sweep_list_html",
    "sweep_page_html",
    "view_page_html",
    "slope_text",
    "sweep_progress",
]

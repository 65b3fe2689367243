"""The budget view: the optimal decay against the number of epochs, raw (left) and normalized (right), per variant.

Both axes are log2. Each point is one budget's optimum with its 95 % interval as an error bar; the legend gives
each variant's fitted exponent k of lambda* ~ T^k (normalized: k + 0.5). The paper's claim reads as a falling line
on the left and a flat one on the right.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hpscape.landscapes import BudgetPoint, BudgetTrend
from hpscape.landscapes.variants import variant_label

__all__ = ["budget_figure", "exponent_text"]

_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf")


def exponent_text(trend: BudgetTrend, *, normalized: bool = False) -> str:
    """'−0.48 [−0.71, −0.30]' (the exponent and its 95 % interval), '−0.48 (no interval)', or '—'."""
    if trend.exponent is None:
        return "—"
    shift = 0.5 if normalized else 0.0

    def signed(v: float) -> str:
        return f"{v + shift:+.2f}".replace("-", "−")

    if trend.exponent_ci is None:
        return f"{signed(trend.exponent)} (no interval)"
    return f"{signed(trend.exponent)} [{signed(trend.exponent_ci[0])}, {signed(trend.exponent_ci[1])}]"


def budget_figure(points: Sequence[BudgetPoint], trends: Sequence[BudgetTrend], *, title: str | None = None,
                  width: int | None = None) -> dict[str, Any]:
    by_variant = {t.variant: t for t in trends}
    variants = list(dict.fromkeys([p.variant for p in points]))
    data: list[dict[str, Any]] = []
    for v, variant in enumerate(variants):
        colour = _PALETTE[v % len(_PALETTE)]
        mine = [p for p in points if p.variant == variant and p.raw is not None]
        trend = by_variant.get(variant)
        for side, (field, ci_field, normalized) in enumerate((("raw", "raw_ci", False),
                                                              ("normalized", "normalized_ci", True))):
            ys = [getattr(p, field) for p in mine]
            cis = [getattr(p, ci_field) for p in mine]
            exponent = "" if trend is None else f" (k = {exponent_text(trend, normalized=normalized)})"
            exponent = (" λ_norm" if normalized else " raw λ") + exponent
            data.append({
                "type": "scatter", "mode": "lines+markers", "name": f"{variant_label(variant)}{exponent}",
                "legendgroup": variant, "showlegend": True,
                "x": [p.epochs for p in mine], "y": ys,
                "error_y": {"type": "data", "symmetric": False,
                            "array": [None if ci is None else ci[1] - y for ci, y in zip(cis, ys)],
                            "arrayminus": [None if ci is None else y - ci[0] for ci, y in zip(cis, ys)],
                            "color": colour, "thickness": 1.2, "width": 4},
                "line": {"color": colour, "width": 2}, "marker": {"color": colour, "size": 8},
                "xaxis": "x" if side == 0 else "x2", "yaxis": "y" if side == 0 else "y2",
                "hovertemplate": f"{variant_label(variant)}<br>%{{x}} epochs: optimal {'λ_norm' if normalized else 'λ'}"
                                 " %{y:.3g}<extra></extra>",
                "meta": {"variant": variant, "role": field},
            })
    missing = [p for p in points if p.raw is None]
    notes = "; ".join(f"{variant_label(p.variant)} at {p.epochs} epochs: {p.note}" for p in missing)
    log2 = {"type": "log", "dtick": 0.30103, "zeroline": False}  # log axis, ticks one octave apart
    # Ticks at the budgets that were run (5, 10, 20 ... are not powers of two).
    budgets = sorted({p.epochs for p in points})
    ticks = {"tickvals": budgets, "ticktext": [str(b) for b in budgets]} if budgets else {}
    layout: dict[str, Any] = {
        "height": 520,
        "margin": {"t": 70 if title else 40, "b": 120 if not notes else 150, "l": 80, "r": 20},
        "font": {"family": "Helvetica, Arial, sans-serif", "size": 12},
        "xaxis": {**log2, **ticks, "domain": [0.0, 0.45], "title": {"text": "budget T (epochs)"}},
        "yaxis": {**log2, "dtick": None, "title": {"text": "optimal raw decay λ* (per step)"}},
        "xaxis2": {**log2, **ticks, "domain": [0.55, 1.0], "anchor": "y2", "title": {"text": "budget T (epochs)"}},
        "yaxis2": {**log2, "dtick": None, "anchor": "x2", "title": {"text": "optimal normalized decay λ*_norm"}},
        # Below the panels: above them it collides with the title.
        "legend": {"orientation": "h", "x": 0.0, "y": -0.2, "yanchor": "top", "font": {"size": 11}},
        "plot_bgcolor": "white",
        "annotations": [] if not notes else [{
            "text": "no optimum: " + notes, "xref": "paper", "yref": "paper", "x": 0.0, "y": -0.36,
            "xanchor": "left", "yanchor": "top", "showarrow": False, "font": {"size": 10, "color": "#a33"}}],
    }
    for axis in ("yaxis", "yaxis2"):
        layout[axis].pop("dtick")
    if title:
        layout["title"] = {"text": title, "x": 0.0, "xanchor": "left", "font": {"size": 16}}
    if width:
        layout["width"] = width
    return {"data": data, "layout": layout}

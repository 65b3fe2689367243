"""The views beside the Figure 2 one, as JSON-ready payloads: a figure (or two) and a table of the numbers drawn.

- `facets`: Figure 1's layout, variants down, facet values across, one colour scale, coupling per panel;
- `curves`: Figures 3 and 4, metrics against epoch per cell, test error against training loss, restarts marked and
  the anytime speedups of warm restarts;
- `budget`: the optimal decay against the budget, raw and normalized, with the fitted exponent;
- `mechanism`: each cell's final metric against its equilibrium angle, an L2 variant and its decoupled partner in
  one panel, and how well one curve fits both (the collapse score, `hpscape.landscapes.mechanism`).

`available_views(spec)` says which apply to a sweep; each `*_view` takes what `landscapes` computed (no database).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hpscape.landscapes import (
    MAX_CURVE_CELLS,
    CellCurves,
    Landscape,
    SweepSpec,
    anytime_speedups,
    at_train_loss,
    budget_study,
    budget_supported,
    coupling_metrics_by_key,
    landscape_pairs,
    restart_epochs,
)
from hpscape.landscapes.mechanism import Collapse
from hpscape.landscapes.variants import variant_label

from .budget import budget_figure, exponent_text
from .curves import curve_name, curves_figure, generalization_figure
from .facets import facet_figure
from .format import default_clip, format_value, slope_text
from .mechanism import collapse_text, mechanism_figure

__all__ = ["VIEWS", "available_views", "budget_view", "curves_view", "facet_view", "mechanism_view",
           "view_unavailable"]

# name -> what it shows (the page's links and `hpscape views` read this)
VIEWS: dict[str, str] = {
    "landscape": "Figure 2: the landscapes in pairs, with difference maps",
    "facets": "Figure 1: each facet value side by side on one colour scale",
    "curves": "Figures 3 and 4: learning curves per cell, test error against training loss, warm restarts",
    "budget": "the budget study: optimal decay against the number of epochs, raw and normalized",
    "mechanism": "the mechanism: final metric against the equilibrium angle, L2 and decoupled decay on one curve?",
}


def view_unavailable(name: str, spec: SweepSpec | None) -> str | None:
    """None when view `name` applies to `spec`; otherwise why not, with what would make it apply."""
    if name not in VIEWS:
        return f"unknown view {name!r}; views are: {', '.join(VIEWS)}"
    if name == "landscape":
        return None
    if spec is None:
        return "the sweep's spec is not known, so its views are not either"
    if name == "facets":
        return None if spec.facet is not None else "the facet view needs a sweep with a `facet` (e.g. quick-fig1)"
    if name == "curves":
        cells = max(spec.study_trials(v) // (len(spec.seeds) if spec.grid is not None else 1) for v in spec.variants)
        return None if cells <= MAX_CURVE_CELLS else (
            f"the curves view draws sweeps of at most {MAX_CURVE_CELLS} cells per study; this one has {cells}")
    if name == "mechanism":
        if any(right is not None for _, right in landscape_pairs(spec.variants)):
            return None
        return ("the mechanism view compares a variant with its partner (sgd with sgdw, adam with adamw, ...); "
                f"this sweep has {', '.join(spec.variants)}")
    return budget_supported(spec)


def available_views(spec: SweepSpec | None) -> list[str]:
    return [name for name in VIEWS if view_unavailable(name, spec) is None]


def facet_view(landscapes: Mapping[str, Landscape], *, dataset: str | None = None,
               clip: tuple[float, float] | None = None, title: str | None = None) -> dict[str, Any]:
    coupling = coupling_metrics_by_key(landscapes)
    metric = next(iter(landscapes.values())).metric if landscapes else "test_error"
    used = clip or default_clip(landscapes.values(), metric, dataset=dataset)
    rows = []
    for key, land in landscapes.items():
        m = coupling[key]
        rows.append([variant_label(land.variant), "" if land.facet is None else land.facet.label,
                     format_value(metric, m.best["value"] if m.best else None), slope_text(m), m.verdict,
                     "—" if m.interaction is None else f"{m.interaction:.2f}"])
    return {
        "figure": facet_figure(landscapes, clip=used, coupling=coupling, title=title, width=1300),
        "clip": None if used is None else list(used),
        "coupling": {key: m.to_dict() for key, m in coupling.items()},
        "table": {"columns": ["variant", "facet", f"best {metric}", "ridge slope [95 %]", "verdict",
                              "interaction"], "rows": rows},
    }


def curves_view(curves: Sequence[CellCurves], spec: SweepSpec, metrics: Sequence[str], *,
                title: str | None = None) -> dict[str, Any]:
    restarts = {c.key: restart_epochs(spec, c.facet) for c in curves}
    body: dict[str, Any] = {
        "figure": curves_figure(curves, metrics, restarts=restarts, title=title, width=1300),
        "generalization": generalization_figure(curves, y_metric=_error_or(metrics, spec), width=1300),
        "curves": [c.to_dict() for c in curves],
        "restarts": sorted({e for ends in restarts.values() for e in ends}),
    }
    final = [[curve_name(c), str(len(c.seeds))] + [format_value(m, _last(c, m)) for m in metrics] for c in curves]
    body["table"] = {"columns": ["cell", "seeds", *(f"final {m}" for m in metrics)], "rows": final}
    y_metric = _error_or(metrics, spec)
    level = _common_train_loss(curves)
    if level is not None and y_metric in (curves[0].values if curves else {}):
        # Figure 3's question: at the same training loss, which setting tests better?
        rows = [[curve_name(c), format_value(y_metric, at_train_loss(c, level, y_metric))] for c in curves]
        body["generalization_table"] = {"level": level, "metric": y_metric,
                                        "columns": ["cell", f"{y_metric} at training loss {level:.4g}"],
                                        "rows": rows}
    if spec.facet is not None and spec.facet.axis == "schedule" and any(f.value == "warm_restarts"
                                                                         for f in spec.facet.facets):
        metric = spec.metric
        speedups = anytime_speedups(curves, spec, metric)
        body["anytime"] = {"metric": metric, "items": [s.to_dict() for s in speedups]}
        body["anytime_table"] = {
            "columns": ["variant", "cell", "restart after epoch", f"{metric} (warm restarts)",
                        "cosine reached it at epoch", "speedup"],
            "rows": [[variant_label(s.variant), ", ".join(f"{k} {v:.4g}" for k, v in s.params.items()),
                      str(s.restart_epoch), format_value(metric, s.value),
                      "never" if s.reference_epoch is None else str(s.reference_epoch),
                      "—" if s.speedup is None else f"{s.speedup:.1f}×"] for s in speedups],
        }
    return body


def _common_train_loss(curves: Sequence[CellCurves]) -> float | None:
    """The median of the cells' final training losses: a level most of them pass through."""
    finals = [v for c in curves if "train_loss" in c.values for v in [_last(c, "train_loss")] if v and v > 0]
    return float(sorted(finals)[len(finals) // 2]) if finals else None


def _error_or(metrics: Sequence[str], spec: SweepSpec) -> str:
    return "test_error" if "test_error" in metrics or spec.metric == "test_error" else spec.metric


def _last(c: CellCurves, metric: str) -> float | None:
    mean = c.mean(metric)
    finite = [v for v in mean.tolist() if v == v]
    return finite[-1] if finite else None


def budget_view(landscapes: Mapping[str, Landscape], spec: SweepSpec, *, title: str | None = None) -> dict[str, Any]:
    points, trends = budget_study(landscapes, spec)

    def ci(pair: tuple[float, float] | None) -> str:
        return "—" if pair is None else f"[{pair[0]:.3g}, {pair[1]:.3g}]"

    return {
        "figure": budget_figure(points, trends, title=title, width=1300),
        "points": [p.to_dict() for p in points],
        "trends": [t.to_dict() for t in trends],
        "table": {
            "columns": ["variant", "epochs", "row (lr)", "optimal λ", "95 %", "optimal λ_norm", "95 %", "note"],
            "rows": [[variant_label(p.variant), str(p.epochs), "—" if p.lr is None else f"{p.lr:.4g}",
                      "—" if p.raw is None else f"{p.raw:.3g}", ci(p.raw_ci),
                      "—" if p.normalized is None else f"{p.normalized:.3g}", ci(p.normalized_ci), p.note or ""]
                     for p in points],
        },
        "trend_table": {
            "columns": ["variant", "exponent k of λ* ∝ T^k [95 %]", "normalized: k + 0.5", "budgets"],
            "rows": [[variant_label(t.variant), exponent_text(t), exponent_text(t, normalized=True), str(t.budgets)]
                     for t in trends],
        },
    }


def _interval_text(value: float | None, ci: tuple[float, float] | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2f}" + (" (no interval)" if ci is None else f" [{ci[0]:.2f}, {ci[1]:.2f}]")


def mechanism_view(pairs: Sequence[Collapse], *, title: str | None = None) -> dict[str, Any]:
    """The mechanism figure, each pair's collapse (cells included) and a table of the scores with their intervals."""
    rows = []
    for c in pairs:
        used = " / ".join(f"{variant_label(v)} {c.used[v]}" for v in c.variants)
        rows.append([c.label, c.angle, used, collapse_text(c), _interval_text(c.r2_joint, c.r2_joint_ci),
                     _interval_text(c.r2_separate, c.r2_separate_ci),
                     "—" if c.overlap is None else f"{100 * c.overlap:.0f} %", "; ".join(c.notes)])
    notes = list(dict.fromkeys(n for c in pairs for n in c.notes if n.startswith("this record has no telemetry")))
    return {
        "figure": mechanism_figure(pairs, title=title, width=1300),
        "collapse": [c.to_dict() for c in pairs],
        "angle": pairs[0].angle if pairs else "theory",
        "notes": notes,
        "table": {"columns": ["pair", "angle", "cells with an angle", "collapse score [95 %]",
                              "R² one fit [95 %]", "R² separate fits [95 %]", "angle ranges overlap", "notes"],
                  "rows": rows},
        "definition": ("collapse score = R²(one quadratic in log angle through both variants' cells) / R²(one "
                       "quadratic per variant): 1 when one curve fits as well as two; 95 % interval: bootstrap "
                       "over cells"),
    }

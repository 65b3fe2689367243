"""The facet, curves and budget views: their numbers from records written from known formulas, and their figures."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from recorded import record_sweep

from hpscape.dashboards.views import available_views, budget_view, curves_view, facet_view, view_unavailable
from hpscape.landscapes import (
    anytime_speedups,
    axis_optimum,
    budget_study,
    build_sweep_landscapes,
    get_preset,
    restart_epochs,
    sweep_curves,
)

DIGITS_TRAIN = 1437


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'views.db'}"


def test_which_views_apply() -> None:
    assert available_views(get_preset("quick")) == ["landscape", "mechanism"]  # sgd with its partner sgdw
    assert available_views(get_preset("quick-fig1")) == ["landscape", "facets", "curves", "mechanism"]  # 12 cells
    assert available_views(get_preset("quick-fig4")) == ["landscape", "facets", "curves"]
    assert available_views(get_preset("quick-budget")) == ["landscape", "facets", "curves", "budget"]
    assert "at most 12 cells per study; this one has 121" in view_unavailable("curves", get_preset("fig2"))
    assert "needs an `epochs` facet" in view_unavailable("budget", get_preset("quick-fig1"))
    assert "unknown view 'nope'" in view_unavailable("nope", None)


def test_restart_epochs_follow_t0_and_t_mult() -> None:
    spec = get_preset("quick-fig4")
    facets = {f.value: f for f in spec.facet.facets}
    assert restart_epochs(spec, facets["warm_restarts"]) == [2, 6, 14]  # then the last period ends at 30
    assert restart_epochs(spec, facets["cosine"]) == []
    assert restart_epochs(get_preset("fig4"), facets["warm_restarts"]) == [100, 300, 700]


# -- budget ---------------------------------------------------------------------------------------------------

def _budget_loss(exponent: float):
    """A bowl in log2(decay) whose centre moves as T^exponent (raw), plus seed noise."""

    def metrics(variant, facet, params, seed, epoch):
        centre = -4.0 + exponent * math.log2(facet.value / 5)
        noise = 0.01 * np.random.default_rng([seed, epoch, int(1e6 * params["weight_decay"])]).standard_normal()
        loss = 0.3 + 0.05 * (math.log2(params["weight_decay"]) - centre) ** 2 + noise
        return {"test_loss": loss, "test_error": loss / 3, "train_loss": loss / 2, "train_error": loss / 4}

    return metrics


@pytest.mark.parametrize("exponent", [-0.5, 0.0])
def test_budget_study_recovers_the_exponent(tmp_path: Path, exponent: float) -> None:
    spec = get_preset("quick-budget").replace(seeds=[0, 1, 2])
    record_sweep(_url(tmp_path), spec, _budget_loss(exponent))
    landscapes = build_sweep_landscapes(_url(tmp_path), spec.name, metric="test_loss", spec=spec)
    points, trends = budget_study(landscapes, spec)
    assert [(p.variant, p.epochs) for p in points][:4] == [("sgdw", 5), ("sgdw", 10), ("sgdw", 20), ("sgdw", 40)]
    for p in points:
        expected = 2.0 ** (-4.0 + exponent * math.log2(p.epochs / 5))
        assert p.raw == pytest.approx(expected, rel=0.25) and p.raw_ci[0] < p.raw < p.raw_ci[1]
        assert p.normalized == pytest.approx(p.raw / math.sqrt(64 / (DIGITS_TRAIN * p.epochs)))
    for t in trends:
        assert t.exponent == pytest.approx(exponent, abs=0.1) and t.exponent_ci[0] <= exponent <= t.exponent_ci[1]
    body = budget_view(landscapes, spec)
    assert body["trends"][0]["normalized_exponent"] == pytest.approx(trends[0].exponent + 0.5)
    assert [trace["meta"]["role"] for trace in body["figure"]["data"]][:2] == ["raw", "normalized"]
    assert body["table"]["rows"][0][:2] == ["SGDW", "5"]


def test_an_optimum_at_the_grid_edge_has_none(tmp_path: Path) -> None:
    spec = get_preset("quick-budget").replace(seeds=[0], variants=["sgdw"])

    def at_edge(variant, facet, params, seed, epoch):
        return {"test_loss": 1.0 - math.log2(params["weight_decay"]) / 100, "test_error": 0.1, "train_loss": 0.1,
                "train_error": 0.1}

    record_sweep(_url(tmp_path), spec, at_edge)
    landscapes = build_sweep_landscapes(_url(tmp_path), spec.name, metric="test_loss", spec=spec)
    optimum = axis_optimum(next(iter(landscapes.values())))
    assert optimum.value is None and "edge" in optimum.note
    points, trends = budget_study(landscapes, spec)
    assert all(p.raw is None for p in points) and trends[0].exponent is None
    assert "no optimum" in budget_view(landscapes, spec)["figure"]["layout"]["annotations"][0]["text"]


# -- curves ---------------------------------------------------------------------------------------------------

def _restart_curve(variant, facet, params, seed, epoch):
    """Warm restarts reach a low loss at each period's end; one cosine period only at its own end (epoch 30)."""
    if facet.value == "warm_restarts":
        ends = [2, 6, 14, 30]
        end = next(e for e in ends if e >= epoch)
        start = max([0] + [e for e in ends if e < epoch])
        progress = (epoch - start) / (end - start)
        loss = 1.0 - 0.6 * (end / 30) ** 0.3 * progress
    else:
        loss = 1.0 - 0.6 * (epoch / 30)
    loss += 0.001 * seed
    return {"test_loss": loss, "test_error": loss / 2, "train_loss": loss / 3, "train_error": loss / 4}


def test_curves_and_anytime_speedups(tmp_path: Path) -> None:
    spec = get_preset("quick-fig4")
    record_sweep(_url(tmp_path), spec, _restart_curve)
    curves = sweep_curves(_url(tmp_path), spec.name, spec, metrics=["test_loss", "train_loss"])
    assert [(c.key, len(c.seeds)) for c in curves] == [
        ("sgdw/schedule=cosine", 3), ("sgdw/schedule=warm_restarts", 3), ("adamw/schedule=cosine", 3),
        ("adamw/schedule=warm_restarts", 3)]
    wr = curves[1]
    assert wr.values["test_loss"].shape == (3, 30) and wr.mean("test_loss")[1] == pytest.approx(
        1.0 - 0.6 * (2 / 30) ** 0.3 + 0.001)  # the mean of seeds 0, 1, 2
    assert wr.std("test_loss")[0] == pytest.approx(0.001)
    speedups = anytime_speedups(curves, spec, "test_loss")
    first = next(s for s in speedups if s.variant == "sgdw" and s.restart_epoch == 2)
    # cosine reaches 1 - 0.6 (2/30)^0.3 + 0.001 = 0.738 when 1 - 0.02 e + 0.001 <= it: at epoch 14
    assert first.reference_epoch == 14 and first.speedup == pytest.approx(7.0)
    last = next(s for s in speedups if s.variant == "sgdw" and s.restart_epoch == 30)
    assert last.reference_epoch == 30 and last.speedup == pytest.approx(1.0)
    body = curves_view(curves, spec, ["test_loss", "train_loss"])
    assert body["restarts"] == [2, 6, 14]
    lines = [t for t in body["figure"]["data"] if t["meta"]["role"] == "curve"]
    assert len(lines) == 8 and lines[0]["name"].startswith("SGDW · lr 0.125")
    assert sum(s["x0"] == 2 for s in body["figure"]["layout"]["shapes"]) == 2  # a restart line in each panel
    assert body["anytime_table"]["rows"][0][-1] == "7.0×"
    finals = [t for t in body["generalization"]["data"] if t["meta"]["role"] == "final"]
    assert len(finals) == 4 and finals[1]["x"] == [pytest.approx(wr.mean("train_loss")[-1])]


def test_curves_refuse_a_sweep_of_many_cells(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="121 cells per study; curves are drawn for at most 12"):
        sweep_curves(_url(tmp_path), "fig2", get_preset("fig2"))
    with pytest.raises(ValueError, match="unknown metric"):
        sweep_curves(_url(tmp_path), "x", get_preset("quick-fig4"), metrics=["accuracy"])


# -- facets ---------------------------------------------------------------------------------------------------

def test_facet_view_puts_facet_values_side_by_side(tmp_path: Path) -> None:
    spec = get_preset("quick-fig1").replace(seeds=[0, 1])

    def bowl(variant, facet, params, seed, epoch):
        gap = {"constant": 0.2, "step": 0.1, "cosine": 0.0}[facet.value]
        loss = 0.3 + gap + 0.01 * (math.log2(params["weight_decay"]) + 6) ** 2 + 0.01 * seed
        return {"test_loss": loss, "test_error": loss / 3, "train_loss": loss / 2, "train_error": loss / 4}

    record_sweep(_url(tmp_path), spec, bowl)
    landscapes = build_sweep_landscapes(_url(tmp_path), spec.name, metric="test_loss", spec=spec)
    body = facet_view(landscapes, dataset="digits")
    figure = body["figure"]
    panels = [t for t in figure["data"] if t.get("meta", {}).get("role") == "panel"]
    assert [p["meta"]["key"] for p in panels] == [
        "adam/schedule=constant", "adam/schedule=step", "adam/schedule=cosine",
        "adamw/schedule=constant", "adamw/schedule=step", "adamw/schedule=cosine"]
    assert all(p["coloraxis"] == "coloraxis" for p in panels)  # one shared scale
    x_domains = [figure["layout"][f"xaxis{'' if i == 0 else i + 1}"]["domain"] for i in range(3)]
    assert x_domains[0][1] < x_domains[1][0] < x_domains[1][1] < x_domains[2][0]  # columns left to right
    titles = [a["text"] for a in figure["layout"]["annotations"]]
    assert sum("★" in t for t in titles) == 2 and all("schedule=cosine" in t for t in titles if "★" in t)
    assert len(body["table"]["rows"]) == 6 and body["table"]["rows"][0][:2] == ["Adam (L2)", "schedule=constant"]

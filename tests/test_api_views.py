"""The facet, curves and budget views through the REST API and their pages; figure exports as images; the plan.

A sweep is submitted (dispatch off) and its record written from a formula (tests/recorded.py), so the numbers each
view shows are known.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from recorded import record_sweep

from hpscape.landscapes import SweepSpec, get_preset

CHROMIUM = Path("/usr/bin/chromium")


def _loss(variant: str, facet: Any, params: dict[str, Any], seed: int, epoch: int) -> dict[str, float]:
    # Falls with the epoch; the best decay moves with the budget (an `epochs` facet): 2^-4 at 5 epochs, x2 per
    # doubling, and the decoupled variant's 2x lower.
    budget = facet.value if facet is not None and facet.axis == "epochs" else 10
    centre = -4.0 - 0.5 * math.log2(budget / 5) - (1.0 if variant.endswith("w") else 0.0)
    wd = params.get("weight_decay", 2.0**-4)
    noise = 0.005 * np.random.default_rng([seed, epoch, int(1e6 * wd)]).standard_normal()
    loss = 0.3 + 0.04 * (math.log2(wd) - centre) ** 2 + 1.0 / epoch + noise
    return {"test_loss": loss, "test_error": loss / 3, "train_loss": loss / 2, "train_error": loss / 4}


def _submit(api, body: dict[str, Any]) -> dict[str, Any]:
    response = api.client.post("/api/v1/sweeps", json=body, headers=api.auth("alice"))
    assert response.status_code == 202, response.text
    return response.json()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One controller holding a budget sweep (epochs facet) and a small lr x decay sweep, both fully recorded."""
    from conftest import _api_factory

    tmp = tmp_path_factory.mktemp("views_api")
    url = f"sqlite:///{tmp / 'optuna.db'}"
    with _api_factory(tmp) as factory:
        api = factory(url)
        budget = get_preset("quick-budget").model_dump(mode="json", exclude_none=True)
        budget.update(name="bud", seeds=[0, 1], facet={"epochs": [5, 10, 20]},
                      grid={"lr": budget["grid"]["lr"], "weight_decay": [2.0**-7, 2.0**-6, 2.0**-5, 2.0**-4,
                                                                           2.0**-3]})
        plain = {"preset": "quick", "name": "plain", "epochs": 3, "seeds": [0]}
        sweeps = {}
        for key, body in (("budget", budget), ("plain", plain)):
            row = _submit(api, body)
            spec = SweepSpec.model_validate(api.client.get(f"/api/v1/sweeps/{row['id']}",
                                                           headers=api.auth("alice")).json()["spec"])
            record_sweep(url, spec.model_copy(update={"name": row["record_name"]}), _loss)
            sweeps[key] = row
        yield {"api": api, "sweeps": sweeps}


def _get(served, path: str, **params: Any):
    api = served["api"]
    return api.client.get(path, params=params, headers=api.auth("alice"))


def test_the_views_a_sweep_has_say_why_not_for_the_others(served) -> None:
    budget, plain = served["sweeps"]["budget"]["id"], served["sweeps"]["plain"]["id"]
    body = _get(served, f"/api/v1/sweeps/{budget}/views").json()
    assert body["available"] == ["landscape", "facets", "curves", "budget"]
    body = _get(served, f"/api/v1/sweeps/{plain}/views").json()
    assert body["available"] == ["landscape", "mechanism"]  # quick has sgd with its partner sgdw
    assert "needs an `epochs` facet" in body["views"]["budget"]["unavailable"]
    response = _get(served, f"/api/v1/sweeps/{plain}/views/budget")
    assert response.status_code == 422 and "needs an `epochs` facet" in response.text
    response = _get(served, f"/api/v1/sweeps/{plain}/views/nope")
    assert response.status_code == 422 and "view" in response.text


def test_the_budget_view_finds_the_optimum_moving_with_the_budget(served) -> None:
    sid = served["sweeps"]["budget"]["id"]
    body = _get(served, f"/api/v1/sweeps/{sid}/views/budget").json()
    assert body["view"] == "budget" and body["figure"]["data"], body.get("notes")
    rows = body["table"]["rows"]
    assert len(rows) == 2 * 3  # two variants x three budgets
    assert "optimal λ" in body["table"]["columns"]
    for variant in {p["variant"] for p in body["points"]}:
        raw = {p["epochs"]: p["raw"] for p in body["points"] if p["variant"] == variant}
        assert raw[5] > raw[10] > raw[20], (variant, raw)  # the formula's centre halves per doubling... in octaves
    for trend in body["trends"]:
        assert trend["exponent"] == pytest.approx(-0.5, abs=0.15), trend


def test_the_facet_view_draws_one_panel_per_facet_value_on_one_scale(served) -> None:
    sid = served["sweeps"]["budget"]["id"]
    body = _get(served, f"/api/v1/sweeps/{sid}/views/facets", metric="test_loss").json()
    heatmaps = [t for t in body["figure"]["data"] if t["type"] == "heatmap"]
    assert len(heatmaps) == 2 * 3
    assert len({(t.get("zmin"), t.get("zmax"), t.get("coloraxis")) for t in heatmaps}) == 1
    response = _get(served, f"/api/v1/sweeps/{sid}/views/facets", metric="accuracy")
    assert response.status_code == 422 and "unknown metric 'accuracy'" in response.text


def test_the_curves_view_draws_the_chosen_metrics(served) -> None:
    sid = served["sweeps"]["budget"]["id"]
    body = _get(served, f"/api/v1/sweeps/{sid}/views/curves", metrics="test_loss,train_loss").json()
    assert body["chosen_metrics"] == ["test_loss", "train_loss"]
    assert body["figure"]["data"] and body.get("generalization")


def test_view_pages_are_served_and_unknown_ones_are_not(served) -> None:
    api, sid = served["api"], served["sweeps"]["budget"]["id"]
    for view in ("facets", "curves", "budget"):
        response = api.client.get(f"/sweeps/{sid}/{view}")
        assert response.status_code == 200 and "view.js" in response.text and f'data-view="{view}"' in response.text
    assert api.client.get(f"/sweeps/{sid}/nope").status_code == 422
    assert 'id="views"' in api.client.get(f"/sweeps/{sid}").text  # the sweep page links to them


def test_view_exports_as_html_and_json(served) -> None:
    sid = served["sweeps"]["budget"]["id"]
    response = _get(served, f"/api/v1/sweeps/{sid}/views/budget/export", format="html")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "bud" in response.headers["content-disposition"] and "Plotly" in response.text
    response = _get(served, f"/api/v1/sweeps/{sid}/views/budget/export", format="json")
    assert response.status_code == 200 and "figure" not in response.json() and response.json()["table"]
    response = _get(served, f"/api/v1/sweeps/{sid}/views/budget/export", format="gif")
    assert response.status_code == 422 and "format" in response.text


@pytest.mark.slow
def test_figures_export_as_images_with_a_caption(served) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: image export needs Debian's chromium (run `make chromium`)")
    sid = served["sweeps"]["plain"]["id"]
    svg = _get(served, f"/api/v1/sweeps/{sid}/landscape/export", format="svg", metric="test_loss")
    assert svg.status_code == 200, svg.text
    assert svg.headers["content-type"] == "image/svg+xml" and b"<svg" in svg.content[:400]
    assert b"digits" in svg.content and b"3 epochs" in svg.content  # the caption
    png = _get(served, f"/api/v1/sweeps/{sid}/landscape/export", format="png")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    pdf = _get(served, f"/api/v1/sweeps/{served['sweeps']['budget']['id']}/views/budget/export", format="pdf")
    assert pdf.status_code == 200 and pdf.content[:5] == b"%PDF-"


def test_an_image_without_a_browser_is_a_503_saying_how_to_get_one(served, monkeypatch) -> None:
    api, sid = served["api"], served["sweeps"]["plain"]["id"]
    monkeypatch.setattr(api.settings, "chromium", Path("/nonexistent/chromium"))
    response = _get(served, f"/api/v1/sweeps/{sid}/landscape/export", format="png")
    assert response.status_code == 503 and "make chromium" in response.text and "HPSCAPE_CHROMIUM" in response.text


def test_the_plan_endpoint_plans_presets_and_specs_without_queueing(served) -> None:
    api = served["api"]
    before = api.client.get("/api/v1/sweeps", headers=api.auth("alice")).json()["total"]
    response = api.client.post("/api/v1/sweeps/plan", json={"preset": "fig2"}, headers=api.auth("alice"))
    assert response.status_code == 200, response.text
    plan = response.json()
    assert plan["trials"] == 484 and plan["epochs"] == 484 * 100
    assert {row["variant"] for row in plan["studies"]} >= {"sgd", "sgdw", "adam", "adamw"}
    assert plan["trial_hours"] is None and any("throughput" in note for note in plan["notes"])
    timed = api.client.post("/api/v1/sweeps/plan", params={"throughput": 3200}, json={"preset": "fig2"},
                            headers=api.auth("alice")).json()
    assert timed["trial_hours"] == pytest.approx(484 * 100 * 50_000 / 3200 / 3600, rel=0.01)
    assert api.client.get("/api/v1/sweeps", headers=api.auth("alice")).json()["total"] == before
    bad = api.client.post("/api/v1/sweeps/plan", json={"preset": "quick", "epochs": -1}, headers=api.auth("alice"))
    assert bad.status_code == 422 and "epochs" in bad.text
    assert api.client.post("/api/v1/sweeps/plan", json={"preset": "quick"}).status_code == 401

"""The Figure 2 figure, the exports, the pages and the landscape API, on a seeded sweep (no browser).

`seeded_service` (a controller app with one seeded sweep) is also used by the browser test.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from hpscape.dashboards import (
    CSV_COLUMNS,
    FIG2_CLIP,
    axis_ticks,
    default_clip,
    difference,
    grid_csv,
    grid_json,
    landscape_payload,
    panel_rows,
    plotly_js_path,
    standalone_html,
    sweep_figure,
    sweep_list_html,
    sweep_page_html,
)
from hpscape.landscapes import Cell, SweepSpec, build_sweep_landscapes, get_preset
from hpscape.service.api.app import create_app
from hpscape.service.db.models import utcnow
from hpscape.service.settings import Settings
from hpscape.service.sweeps import submit_sweep
from test_landscape import SMALL, seed_sweep

ADMIN = "admin-token-for-dashboard-tests"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
# Figure 2's grid and variants, two seeds, 20 epochs of synthetic curves.
FIG2_TEST = get_preset("fig2", seeds=[0, 1], epochs=20)
N_LR, N_WD = 11, 11


def fig2_state(variant: str, cell: Cell) -> str:
    """Where the seeded sweep stands: L2 variants diverge in the top-right corner, the top row runs."""
    i = FIG2_TEST.lr_values(variant).index(cell.lr)
    j = FIG2_TEST.grid.weight_decay.index(cell.weight_decay)
    if variant in ("sgd", "adam") and i >= 9 and j >= 8:
        return "diverged"
    if i == N_LR - 1 and j <= 2:
        return "running" if cell.seed == 0 else "queued"
    return "done"


@contextmanager
def seeded_service(
    tmp_path: Path, *, spec: SweepSpec = FIG2_TEST, public_read: bool = False
) -> Iterator[tuple[FastAPI, str, str]]:
    """A controller app (no dispatcher) with one running sweep seeded with synthetic trials.

    Yields (app, sweep id, record name); the admin token is ADMIN.
    """
    settings = Settings(
        storage=f"sqlite:///{tmp_path / 'hpscape.db'}",
        public_read=public_read,
        admin_token=ADMIN,
        runs_dir=tmp_path / "runs",
        data_dir=tmp_path / "data",
    )
    app = create_app(settings, dispatch=False)
    state = app.state.hpscape
    state.ensure_ready()
    with state.sessions() as session:
        row, _ = submit_sweep(session, spec, owner="alice")
        row.status, row.started_at = "running", utcnow()
        session.commit()
        sweep_id, record = row.id, row.record_name
    seed_sweep(state.optuna(), spec, record_name=record, state_for=fig2_state)
    try:
        yield app, sweep_id, record
    finally:
        state.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str, str]]:
    with seeded_service(tmp_path_factory.mktemp("dash")) as (app, sweep_id, record):
        with TestClient(app) as client:
            yield client, sweep_id, record


@pytest.fixture(scope="module")
def lands(service: tuple[TestClient, str, str]):
    client, _, record = service
    return build_sweep_landscapes(client.app.state.hpscape.optuna(), record)


# ---------------------------------------------------------------------------------------------
# Labels and layout


def test_axis_ticks_are_powers_of_two_with_a_zero() -> None:
    labels, scale = axis_ticks(FIG2_TEST.grid.weight_decay)
    assert scale == "0.001"
    assert labels == ["0", "2⁻⁵", "2⁻⁴", "2⁻³", "2⁻²", "2⁻¹", "1", "2¹", "2²", "2³", "2⁴"]
    assert axis_ticks(FIG2_TEST.lr_values("adam")) == ([f"2{s}" for s in
        ["⁻¹⁰", "⁻⁹", "⁻⁸", "⁻⁷", "⁻⁶", "⁻⁵", "⁻⁴", "⁻³", "⁻²", "⁻¹"]] + ["1"], "0.1")
    assert axis_ticks([0.3, 0.5]) == (["0.3", "0.5"], "1")  # not powers of two: plain numbers


def test_panel_rows_pair_the_variants() -> None:
    assert panel_rows(["sgd", "sgdw", "adam", "adamw"]) == [("sgd", "sgdw"), ("adam", "adamw")]
    assert panel_rows(["adamw-torch", "adamw", "sgd", "sgdw", "adam"]) == [
        ("sgd", "sgdw"), ("adam", "adamw"), ("adamw", "adamw-torch")]
    assert panel_rows(["adam", "sgdw"]) == [("sgdw", None), ("adam", None)]


def test_default_clip() -> None:
    assert default_clip([], "test_error", dataset="cifar10") == FIG2_CLIP
    assert default_clip([], "test_loss", dataset="digits") is None


# ---------------------------------------------------------------------------------------------
# The figure


def _heatmaps(fig: dict, role: str) -> list[dict]:
    return [t for t in fig["data"] if t["type"] == "heatmap" and t["meta"]["role"] == role]


def test_sweep_figure_panels_marks_and_hover(lands) -> None:
    fig = sweep_figure(lands, clip=FIG2_CLIP)
    panels = _heatmaps(fig, "panel")
    assert [p["meta"]["variant"] for p in panels] == ["sgd", "sgdw", "adam", "adamw"]
    for panel in panels:
        z = np.array(panel["z"], dtype=float)
        assert z.shape == (N_LR, N_WD)
        land = lands[panel["meta"]["variant"]]
        np.testing.assert_array_equal(np.isnan(z), np.isnan(land.mean))
        np.testing.assert_allclose(z[np.isfinite(z)], land.mean[np.isfinite(land.mean)])
        assert panel["coloraxis"] == "coloraxis"  # one shared colour scale
    layout = fig["layout"]
    assert (layout["coloraxis"]["cmin"], layout["coloraxis"]["cmax"]) == FIG2_CLIP
    # Learning rate up, decay right: x ticks are the decay labels, y ticks the lr labels.
    assert layout["xaxis"]["ticktext"][0] == "0" and layout["xaxis"]["title"]["text"] == "weight decay (× 0.001)"
    assert layout["yaxis"]["title"]["text"] == "learning rate" and layout["yaxis3"]["ticktext"][-1] == "1"
    assert layout["yaxis4"]["title"]["text"] == "learning rate (× 0.1)"

    marks = {(t["meta"]["variant"], t["meta"]["role"]): t for t in fig["data"] if t["type"] == "scatter"}
    for variant in ("sgd", "sgdw", "adam", "adamw"):
        best = marks[(variant, "best")]
        assert sorted(zip(best["y"], best["x"])) == sorted(lands[variant].best_cells(10))
        assert best["marker"]["symbol"] == "circle-open" and best["marker"]["color"] == "black"
    diverged = marks[("sgd", "diverged")]
    assert sorted(zip(diverged["y"], diverged["x"])) == [(i, j) for i in (9, 10) for j in (8, 9, 10)]
    assert np.isnan(np.array(_heatmaps(fig, "panel")[0]["z"], dtype=float)[9:, 8:]).all()  # out of the colours
    assert ("sgdw", "diverged") not in marks
    assert len(marks[("sgd", "running")]["x"]) == 3

    hover = panels[0]["hovertext"][5][6]
    land = lands["sgd"]
    assert "±" in hover and "(n=2)" in hover and "state: done (2 done)" in hover
    assert f"{100 * land.mean[5, 6]:.2f}" in hover
    assert all(f"#{n}" in hover for n in land.trials[5][6])
    assert "state: running (1 running, 1 queued)" in panels[0]["hovertext"][10][0]
    assert "diverged: kept out of the colour scale" in panels[0]["hovertext"][10][10]

    titles = [a["text"] for a in layout["annotations"]]
    assert any(t.startswith("<b>SGD (L2)</b>") and "ridge slope" not in t for t in titles)
    json.dumps(fig, allow_nan=False)

    # With coupling metrics, each panel's title carries them.
    from hpscape.landscapes import coupling_metrics

    coupling = {v: coupling_metrics(l) for v, l in lands.items()}
    titles = [a["text"] for a in sweep_figure(lands, coupling=coupling)["layout"]["annotations"]]
    sgd_title = next(t for t in titles if t.startswith("<b>SGD (L2)</b>"))
    assert f"ridge slope {coupling['sgd'].ridge_slope:+.2f}" in sgd_title
    assert f"basin {coupling['sgd'].basin_cells} cells" in sgd_title


def test_small_grids_mark_a_quarter_of_their_cells_best(tmp_path) -> None:
    from hpscape.landscapes import make_storage

    storage = make_storage(f"sqlite:///{tmp_path / 'small.db'}")
    seed_sweep(storage, SMALL)  # 3 x 3 cells per panel
    small = build_sweep_landscapes(storage, SMALL.name)
    fig = sweep_figure(small)
    best = [t for t in fig["data"] if t["type"] == "scatter" and t["meta"]["role"] == "best"]
    assert [len(t["x"]) for t in best] == [2, 2], "9 cells: 2 marked, not 9 of 9"
    assert best[0]["name"] == "2 best cells" and best[0]["showlegend"] and not best[1]["showlegend"]


def test_difference_maps(lands) -> None:
    fig = sweep_figure(lands)
    diffs = _heatmaps(fig, "diff")
    assert [d["meta"]["pair"] for d in diffs] == [["sgd", "sgdw"], ["adam", "adamw"]]
    z = np.array(diffs[0]["z"], dtype=float)
    expected = lands["sgdw"].mean - lands["sgd"].mean
    np.testing.assert_allclose(z, expected, equal_nan=True)
    assert diffs[0]["coloraxis"] == "coloraxis2" and fig["layout"]["coloraxis2"]["cmin"] < 0
    # Grids that share no cell give an empty difference, not an error.
    empty = difference(lands["sgd"], lands["adam"])
    assert empty["diff"].shape == (0, N_WD)


def test_payload_has_coupling_progress_and_figure(lands) -> None:
    body = landscape_payload(lands, sweep={"id": "x", "dataset": "cifar10"}, metric="test_error", epoch=None,
                             figure=True)
    assert body["clip"] == list(FIG2_CLIP) and body["rows"] == [["sgd", "sgdw"], ["adam", "adamw"]]
    progress = body["progress"]
    assert progress["total"] == 4 * N_LR * N_WD * 2
    assert progress["diverged"] == 2 * 2 * 6 and progress["running"] == 4 * 3 and progress["queued"] == 4 * 3
    assert progress["finished"] == progress["total"] - 24
    coupling = {v: body["landscapes"][v]["coupling"] for v in body["variants"]}
    assert coupling["sgd"]["ridge_slope"] < -0.5 and abs(coupling["sgdw"]["ridge_slope"]) < 0.2
    assert coupling["sgdw"]["separability"] > coupling["sgd"]["separability"]
    assert "figure" in body
    json.dumps(body, allow_nan=False)


# ---------------------------------------------------------------------------------------------
# Exports


def test_grid_csv_and_json(lands) -> None:
    text = grid_csv(lands)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 4 * N_LR * N_WD
    land = lands["sgdw"]
    row = next(r for r in rows if r["variant"] == "sgdw" and float(r["lr"]) == land.lr[4]
               and float(r["weight_decay"]) == land.weight_decay[7])
    assert float(row["mean"]) == land.mean[4, 7] and row["n"] == "2" and row["state"] == "done"
    assert row["trials"] == " ".join(map(str, land.trials[4][7]))
    diverged = next(r for r in rows if r["variant"] == "sgd" and r["state"] == "diverged")
    assert diverged["mean"] == "" and diverged["n_diverged"] == "2"
    body = json.loads(grid_json(lands))
    assert set(body) == {"sgd", "sgdw", "adam", "adamw"} and "coupling" in body["sgd"]


def test_standalone_html_inlines_plotly(lands) -> None:
    html = standalone_html(sweep_figure(lands, clip=FIG2_CLIP), title="fig2 <test>")
    assert "fig2 &lt;test&gt;" in html
    plotly_src = plotly_js_path().read_text(encoding="utf-8")
    assert plotly_src[:2000] in html  # the library itself, inlined
    assert not re.search(r"<script[^>]+src=", html)  # nothing fetched: works offline
    assert "cdn" not in html.replace(plotly_src, "").lower()
    assert '"coloraxis"' in html and "circle-open" in html


# ---------------------------------------------------------------------------------------------
# Pages


def test_pages_escape_and_point_at_local_assets() -> None:
    page = sweep_page_html("a</script><b>")
    assert "</script><b>" not in page.split("<body", 1)[1].split("</header>")[0]
    config = json.loads(re.search(r'id="hpscape-config" type="application/json">(.*?)</script>', page).group(1))
    assert config["sweep_id"] == "a</script><b>"
    assert '<script src="/static/plotly.min.js">' in page and "cdn" not in page.lower()
    # sweep.js loads before plotly.js, so its first request overlaps plotly's compilation.
    assert page.index("/static/sweep.js") < page.index("/static/plotly.min.js")
    assert "/static/sweeps.js" in sweep_list_html()


def test_page_routes_and_static_files(service) -> None:
    client, sweep_id, _ = service
    assert client.get("/", follow_redirects=False).headers["location"] == "/sweeps"
    page = client.get(f"/sweeps/{sweep_id}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert sweep_id in page.text
    assert "Sweeps" in client.get("/sweeps").text
    for name in ("sweep.js", "sweeps.js", "hpscape.css"):
        assert client.get(f"/static/{name}").status_code == 200
    assert client.get("/static/../app.py").status_code == 404
    assert client.get("/static/secret.txt").status_code == 404

    raw = plotly_js_path().read_bytes()
    plain = client.get("/static/plotly.min.js", headers={"Accept-Encoding": "identity"})
    assert plain.content == raw and "Content-Encoding" not in plain.headers
    packed = client.get("/static/plotly.min.js", headers={"Accept-Encoding": "gzip"})
    assert packed.headers["content-encoding"] == "gzip"
    assert int(packed.headers["content-length"]) < len(raw) / 2
    assert packed.content == raw  # httpx decodes it
    again = client.get("/static/plotly.min.js", headers={"If-None-Match": packed.headers["etag"]})
    assert again.status_code == 304


# ---------------------------------------------------------------------------------------------
# The landscape API


def test_landscape_api_needs_a_token_when_reads_are_private(service) -> None:
    client, sweep_id, _ = service
    assert client.get(f"/api/v1/sweeps/{sweep_id}/landscape").status_code == 401
    assert client.get("/api/v1/sweeps/nope/landscape", headers=AUTH).status_code == 404


def test_landscape_api_body(service, lands) -> None:
    client, sweep_id, record = service
    response = client.get(f"/api/v1/sweeps/{sweep_id}/landscape", headers=AUTH)
    assert response.status_code == 200 and "landscape;dur=" in response.headers["server-timing"]
    body = response.json()
    assert body["sweep"]["id"] == sweep_id and body["sweep"]["record_name"] == record
    assert body["sweep"]["name"] == FIG2_TEST.name
    assert body["sweep"]["status"] == "running" and body["sweep"]["epochs"] == 20
    assert "figure" not in body
    sgd = body["landscapes"]["sgd"]
    assert sgd["mean"][5][6] == pytest.approx(lands["sgd"].mean[5, 6])
    assert sgd["trials"] == lands["sgd"].trials and sgd["coupling"]["ridge_slope"] < -0.5
    assert body["clip"] == list(FIG2_CLIP)

    with_fig = client.get(f"/api/v1/sweeps/{sweep_id}/landscape",
                          params={"figure": "true", "clip_lo": 0.035, "clip_hi": 0.06}, headers=AUTH).json()
    assert with_fig["figure"]["layout"]["coloraxis"]["cmax"] == 0.06 and with_fig["clip"] == [0.035, 0.06]

    epoch = client.get(f"/api/v1/sweeps/{sweep_id}/landscape", params={"epoch": 3}, headers=AUTH).json()
    assert epoch["epoch"] == 3 and epoch["landscapes"]["sgdw"]["mean"][5][6] > sgd["mean"][5][6]
    loss = client.get(f"/api/v1/sweeps/{sweep_id}/landscape", params={"metric": "test_loss"}, headers=AUTH).json()
    assert loss["landscapes"]["sgd"]["mean"][5][6] == pytest.approx(3 * sgd["mean"][5][6])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"metric": "test_loss", "epoch": 3}, "test_loss is not recorded at epoch 3"),
        ({"epoch": 21}, "past this sweep's last epoch"),
        ({"clip_lo": 0.03}, "give both clip_lo and clip_hi"),
        ({"clip_lo": 0.05, "clip_hi": 0.04}, "clip_lo < clip_hi"),
        ({"metric": "accuracy"}, "test_error"),
    ],
)
def test_landscape_api_errors_say_how_to_fix(service, params: dict, message: str) -> None:
    client, sweep_id, _ = service
    response = client.get(f"/api/v1/sweeps/{sweep_id}/landscape", params=params, headers=AUTH)
    assert response.status_code == 422
    assert message in json.dumps(response.json())


def test_landscape_trials_api(service, lands) -> None:
    client, sweep_id, _ = service
    numbers = lands["sgdw"].trials[5][6]
    url = f"/api/v1/sweeps/{sweep_id}/landscape/trials"
    body = client.get(url, params={"variant": "sgdw", "numbers": ",".join(map(str, numbers))}, headers=AUTH).json()
    assert [t["number"] for t in body["items"]] == numbers
    assert len(body["items"][0]["curve"]) == 20 and body["items"][0]["state"] == "done"
    best = client.get(url, params={"variant": "sgd", "limit": 5}, headers=AUTH).json()["items"]
    assert [t["value"] for t in best] == sorted(t["value"] for t in best) and len(best) == 5
    assert best[0]["value"] == pytest.approx(float(np.nanmin(lands["sgd"].mean)), abs=0.01)
    assert client.get(url, params={"variant": "adamw-torch"}, headers=AUTH).status_code == 422
    assert client.get(url, params={"variant": "sgd", "numbers": "1,x"}, headers=AUTH).status_code == 422


def test_landscape_export_api(service, lands) -> None:
    client, sweep_id, record = service
    url = f"/api/v1/sweeps/{sweep_id}/landscape/export"
    csv_response = client.get(url, params={"format": "csv"}, headers=AUTH)
    assert csv_response.headers["content-disposition"] == f'attachment; filename="{record}-test_error.csv"'
    assert csv_response.text == grid_csv(lands)
    json_response = client.get(url, params={"format": "json", "epoch": 4}, headers=AUTH)
    assert f"{record}-test_error-epoch4.json" in json_response.headers["content-disposition"]
    assert json_response.json()["sgd"]["epoch"] == 4
    html = client.get(url, params={"format": "html"}, headers=AUTH)
    assert html.headers["content-type"].startswith("text/html") and len(html.content) > 3_000_000
    assert "Plotly.newPlot" in html.text and '"cmin":0.03' in html.text.replace(" ", "")


def test_binned_figure_shows_counts_and_labels_the_model() -> None:
    from test_landscape import _bayes_study

    from hpscape.landscapes import build_landscape

    land = build_landscape(_bayes_study(150), model=True)
    measured = sweep_figure({"adamw": land})
    panel = _heatmaps(measured, "panel")[0]
    assert panel["text"] == land.count.tolist() and panel["texttemplate"] == "%{text}"
    assert not any("MODEL" in a["text"] for a in measured["layout"]["annotations"])
    modelled = sweep_figure({"adamw": land}, show_model=True)
    panel = _heatmaps(modelled, "panel")[0]
    np.testing.assert_allclose(np.array(panel["z"], dtype=float), land.model.mean, equal_nan=True)
    assert any("MODEL surface, not measured" in a["text"] for a in modelled["layout"]["annotations"])
    assert "MODEL estimate" in panel["hovertext"][3][4] and "(not measured)" in panel["hovertext"][3][4]


def test_a_sweep_that_has_not_started_has_an_empty_landscape(tmp_path: Path) -> None:
    settings = Settings(storage=f"sqlite:///{tmp_path / 'q.db'}", public_read=True)
    app = create_app(settings, dispatch=False)
    with TestClient(app) as client:
        with app.state.hpscape.sessions() as session:
            row, _ = submit_sweep(session, get_preset("quick"), owner="bob")
            sweep_id = row.id
        body = client.get(f"/api/v1/sweeps/{sweep_id}/landscape", params={"figure": "true"}).json()
        assert body["landscapes"] == {} and body["progress"]["total"] == 0 and body["clip"] is None
        assert body["figure"]["data"] == [] and body["sweep"]["status"] == "queued"
        trials = client.get(f"/api/v1/sweeps/{sweep_id}/landscape/trials", params={"variant": "sgd"})
        assert trials.status_code == 404 and "has not started" in trials.json()["detail"]

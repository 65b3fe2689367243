"""The Figure 2 view, the exports, the pages and the landscape API, on seeded sweeps (no browser).

The sweeps are recorded the way workers record them (`enqueue_cells`, `claim_next`, `record_epoch` with the
per-epoch history, `finish_trial`), once per test session; `seeded_service` (a controller app holding them) is
also used by the browser test.
"""

from __future__ import annotations

import atexit
import csv
import io
import json
import math
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from hpscape.dashboards import (
    FIG2_CLIP,
    STATIC_DIR,
    STATIC_FILES,
    FigureRow,
    axis_ticks,
    axis_title,
    coordinate,
    csv_columns,
    default_clip,
    difference,
    figure_rows,
    grid_csv,
    grid_json,
    landscape_payload,
    plotly_js_path,
    slope_text,
    standalone_html,
    sweep_figure,
    sweep_list_html,
    sweep_page_html,
)
from hpscape.landscapes import (
    SPEC_ATTR,
    Cell,
    Facet,
    LandscapeAxis,
    SweepSpec,
    build_landscape,
    build_sweep_landscapes,
    coupling_metrics,
    get_preset,
)
from hpscape.landscapes.record import (
    ask_bayes,
    claim_next,
    enqueue_cells,
    finish_trial,
    open_study,
    record_epoch,
)
from hpscape.service.api.app import create_app
from hpscape.service.db.models import utcnow
from hpscape.service.settings import Settings
from hpscape.service.sweeps import submit_sweep

ADMIN = "admin-token-for-dashboard-tests"
AUTH = {"Authorization": f"Bearer {ADMIN}"}

# ---------------------------------------------------------------------------------------------
# The seeded sweeps

_BASE = {"dataset": "synthetic", "model": "shake_shake_8_2x16d", "batch_size": 16, "metric": "test_error"}
SGD_RATES = [2.0**k for k in range(-6, -1)]  # 2^-6 .. 2^-2; the Adam family's are 0.1 x these
DECAYS = [0.0] + [0.001 * 2.0**k for k in range(-5, 4)]  # 0, then 2^-5 .. 2^3 x 0.001: Figure 2's ticks (most)
LRWD = SweepSpec.model_validate({
    **_BASE, "name": "lrwd", "epochs": 4, "seeds": [0, 1],
    "variants": ["sgd", "sgdw", "adam", "adamw", "adamw-torch"],
    "grid": {"lr": {"sgd": SGD_RATES, "sgdw": SGD_RATES, "default": [0.1 * r for r in SGD_RATES]},
             "weight_decay": DECAYS},
})
BETAS = SweepSpec.model_validate({
    **_BASE, "name": "betas", "epochs": 3, "variants": ["adam", "adamw"],
    "hyperparameters": {"lr": 0.0125, "weight_decay": 0.001},
    "grid": {"beta1": [0.5, 0.8, 0.9, 0.95], "beta2": [0.9, 0.99, 0.999]},
})
FACETED = SweepSpec.model_validate({
    **_BASE, "name": "faceted", "epochs": 2, "variants": ["sgd", "sgdw"],
    "grid": {"lr": [2.0**-4, 2.0**-3, 2.0**-2], "weight_decay": [0.0, 0.0005, 0.001]},
    "facet": {"schedule": ["constant", "step"]},
})
# As hpscape 0.1 recorded a sweep: per-epoch values of the objective only, no history.
LEGACY = SweepSpec.model_validate({
    **_BASE, "name": "legacy", "epochs": 3, "variants": ["sgd", "sgdw"],
    "grid": {"lr": [0.25, 0.5], "weight_decay": [0.0, 0.001]},
})
N_LR, N_WD = len(SGD_RATES), len(DECAYS)
# The top row's last two cells are still running (seed 0 of the first) or queued; L2's corner below diverged.
RUNNING = [(N_LR - 1, N_WD - 2, 0)]
QUEUED = [(N_LR - 1, N_WD - 2, 1), (N_LR - 1, N_WD - 1, 0), (N_LR - 1, N_WD - 1, 1)]
DIVERGED = [(N_LR - 2, N_WD - 2), (N_LR - 2, N_WD - 1), (N_LR - 1, N_WD - 3)]


# Figure 2 at full size, for bench/landscape_build.py --browser (which seeds it with this rule).
FIG2_TEST = get_preset("fig2", seeds=[0, 1], epochs=20)


def fig2_state(variant: str, cell: Cell) -> str:
    """Where the bench's Figure 2 sweep stands: L2 variants diverge in the top-right corner, the top row runs."""
    i = FIG2_TEST.axis_values("lr", variant).index(cell.y)
    j = FIG2_TEST.axis_values("weight_decay", variant).index(cell.x)
    if variant in ("sgd", "adam") and i >= 9 and j >= 8:
        return "diverged"
    if i == 10 and j <= 2:
        return "running" if cell.seed == 0 else "queued"
    return "done"


def _octaves(value: float, values: list[float]) -> float:
    return math.log2(value / min(v for v in values if v > 0))


def final_error(spec: SweepSpec, variant: str, facet: Facet | None, cell: Cell) -> float:
    """The synthetic test error of a cell: L2's valley lies on a diagonal (lr x decay = const), decoupled decay's
    stands upright; the betas favour (0.9, 0.999), and Adam's L2 a large beta2; a step schedule costs half a
    point."""
    noise = 0.0008 * (cell.seed - 0.5)
    extra = 0.005 if facet is not None and facet.value == "step" else 0.0
    params = cell.params
    if "beta1" in params:
        l2 = 0.004 if variant == "adam" and params["beta2"] < 0.99 else 0.0  # something for the difference map
        return 0.04 + 0.1 * (params["beta1"] - 0.9) ** 2 + 0.3 * (params["beta2"] - 0.999) ** 2 + l2 + extra + noise
    if params["weight_decay"] == 0:
        return 0.075 + noise + extra
    u = _octaves(params["lr"], spec.axis_values("lr", variant))  # 0 .. 4
    v = math.log2(params["weight_decay"] / 0.001)  # -3 .. 1
    if variant in ("sgdw", "adamw"):
        return 0.036 + 0.002 * (v + 1) ** 2 + 0.002 * (u - 2) ** 2 + extra + noise
    return 0.038 + 0.003 * (u + v - 2) ** 2 + 0.001 * (u - 2) ** 2 + extra + noise


def lrwd_outcome(variant: str, i: int, j: int, seed: int) -> str:
    if (i, j, seed) in RUNNING:
        return "running"
    if (i, j, seed) in QUEUED:
        return "queued"
    if variant in ("sgd", "adam") and (i, j) in DIVERGED:
        return "diverged"
    return "done"


def _metrics(error: float) -> dict[str, float]:
    return {"test_error": error, "test_loss": 3 * error, "train_loss": 2 * error, "train_error": 0.5 * error}


def error_at(final: float, epoch: int, epochs: int) -> float:
    """The curves: each epoch 1 point worse than the next, down to the final value."""
    return final + 0.01 * (epochs - epoch)


def record_sweep(storage, spec: SweepSpec, record: str, *, history: bool = True,
                 outcome: Callable[[str, int, int, int], str] | None = None) -> None:
    """Record every study of `spec` under `record` as workers do: enqueue the cells, claim them in order, record
    each epoch (with the whole per-epoch history unless `history` is False) and finish. `outcome(variant, row,
    col, seed)` ("done", "diverged", "running" or "queued") leaves some trials unfinished; queued trials must be
    the last cells, since claims take the lowest-numbered waiting trial."""
    y_name, x_name = spec.swept_axes
    for variant in spec.variants:
        ys, xs = spec.axis_values(y_name, variant), spec.axis_values(x_name, variant)
        for facet in spec.facets():
            study = open_study(storage, record, variant, facet)
            study.set_user_attr(SPEC_ATTR, spec.model_dump(mode="json"))  # what the driver stores
            cells = spec.cells(variant)
            enqueue_cells(study, cells, epochs_budget=spec.epochs)
            queued = False
            for number, cell in enumerate(cells):
                state = "done" if outcome is None else outcome(variant, ys.index(cell.y), xs.index(cell.x),
                                                                cell.seed)
                if state == "queued":
                    queued = True
                    continue
                assert not queued, "queued cells must come last"
                assert claim_next(study) == number, "trials are numbered in the order their cells were enqueued"
                if state == "diverged":
                    finish_trial(study, number, _metrics(float("nan")), objective=spec.metric)
                    continue
                final = final_error(spec, variant, facet, cell)
                entries = []
                last = 1 if state == "running" else spec.epochs
                for epoch in range(1, last + 1):
                    metrics = _metrics(error_at(final, epoch, spec.epochs))
                    entries.append({"epoch": epoch, **metrics, "lr_t": 1.0 / epoch, "epoch_seconds": 0.5,
                                    "images_per_s": 1000.0, "diverged": False})
                    record_epoch(study, number, epoch, metrics, objective=spec.metric,
                                 history=list(entries) if history else None)
                if state == "done":
                    finish_trial(study, number, _metrics(final), objective=spec.metric)


@dataclass(frozen=True)
class Seeded:
    """A sweep of the seeded service: its id, record name and spec."""

    id: str
    record: str
    spec: SweepSpec


SEEDED = {"lrwd": LRWD, "betas": BETAS, "faceted": FACETED, "legacy": LEGACY}
_TEMPLATE: dict[str, object] = {}  # the database file recorded once per session, and its sweeps


def _settings(path: Path, public_read: bool) -> Settings:
    return Settings(storage=f"sqlite:///{path}", public_read=public_read, admin_token=ADMIN,
                    runs_dir=path.parent / "runs", data_dir=path.parent / "data")


def _template() -> tuple[Path, dict[str, Seeded]]:
    """The seeded database, recorded on first use (about 15 s on 2 cores); every service gets a copy of it."""
    if not _TEMPLATE:
        directory = Path(tempfile.mkdtemp(prefix="hpscape-dashboard-"))
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        path = directory / "hpscape.db"
        app = create_app(_settings(path, False), dispatch=False)
        state = app.state.hpscape
        state.ensure_ready()
        sweeps = {}
        try:
            for key, spec in SEEDED.items():
                with state.sessions() as session:
                    row, _ = submit_sweep(session, spec, owner="alice")
                    row.status, row.started_at = "running", utcnow()
                    session.commit()
                    sweeps[key] = Seeded(row.id, row.record_name, spec)
                record_sweep(state.optuna(), spec, sweeps[key].record, history=key != "legacy",
                             outcome=lrwd_outcome if key == "lrwd" else None)
        finally:
            state.close()
        _TEMPLATE.update(path=path, sweeps=sweeps)
    return _TEMPLATE["path"], _TEMPLATE["sweeps"]  # type: ignore[return-value]


@contextmanager
def seeded_service(tmp_path: Path, *, public_read: bool = False) -> Iterator[tuple[FastAPI, dict[str, Seeded]]]:
    """A controller app (no dispatcher) holding the running sweeps of SEEDED, on a copy of the recorded database.

    Yields (app, {"lrwd": Seeded, "betas": ..., "faceted": ..., "legacy": ...}); the admin token is ADMIN.
    """
    template, sweeps = _template()
    path = tmp_path / "hpscape.db"
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{template}{suffix}").exists():
            shutil.copyfile(f"{template}{suffix}", f"{path}{suffix}")
    app = create_app(_settings(path, public_read), dispatch=False)
    try:
        yield app, sweeps
    finally:
        app.state.hpscape.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, Seeded]]]:
    with seeded_service(tmp_path_factory.mktemp("dash")) as (app, sweeps):
        with TestClient(app) as client:
            yield client, sweeps


def _lands(service, key: str, **kwargs):
    client, sweeps = service
    return build_sweep_landscapes(client.app.state.hpscape.optuna(), sweeps[key].record, **kwargs)


@pytest.fixture(scope="module")
def lands(service):
    return _lands(service, "lrwd")


@pytest.fixture(scope="module")
def betas(service):
    return _lands(service, "betas")


@pytest.fixture(scope="module")
def faceted(service):
    return _lands(service, "faceted")


def _heatmaps(fig: dict, role: str) -> list[dict]:
    return [t for t in fig["data"] if t["type"] == "heatmap" and t["meta"]["role"] == role]


def _axis_titles(fig: dict, letter: str) -> list[str]:
    layout = fig["layout"]
    keys = sorted((k for k in layout if re.fullmatch(f"{letter}axis\\d*", k)), key=lambda k: int(k[5:] or 1))
    return [layout[k]["title"]["text"] for k in keys]


# ---------------------------------------------------------------------------------------------
# Labels


def test_axis_ticks_follow_the_axis_scale() -> None:
    labels, scale = axis_ticks(get_preset("fig2").grid.values("weight_decay", "sgd"))
    assert scale == "0.001"
    assert labels == ["0", "2⁻⁵", "2⁻⁴", "2⁻³", "2⁻²", "2⁻¹", "1", "2¹", "2²", "2³", "2⁴"]
    assert axis_ticks([0.1 * 2.0**k for k in (-2, -1, 0)], "log2") == (["2⁻²", "2⁻¹", "1"], "0.1")
    assert axis_ticks([0.3, 0.5], "log2") == (["0.3", "0.5"], "1")  # not powers of two: plain numbers
    assert axis_ticks([1e-10, 1e-8, 1e-6, 1.0], "log10") == (["10⁻¹⁰", "10⁻⁸", "10⁻⁶", "1"], "1")
    assert axis_ticks([3e-8, 1e-7], "log10") == (["3×10⁻⁸", "10⁻⁷"], "1")
    assert axis_ticks([0.5, 0.9, 0.999], "linear") == (["0.5", "0.9", "0.999"], "1")
    assert axis_ticks([0, 0.25], "linear") == (["0", "0.25"], "1")


def test_axis_titles_say_the_symbol_and_unit() -> None:
    decay = [0.0, 0.001 * 2.0**-7, 0.001]
    l2, decoupled = LandscapeAxis.of("weight_decay", decay, "sgd"), LandscapeAxis.of("weight_decay", decay, "sgdw")
    labels, scale = axis_ticks(decay)
    assert (axis_title(l2, scale) == "weight decay λ′ (× 0.001)"
            and axis_title(decoupled, scale) == "weight decay λ (× 0.001)")
    assert coordinate(l2, 1, labels, scale) == "weight decay λ′ 2⁻⁷×0.001 (7.81e-06)"
    assert coordinate(l2, 0, labels, scale) == "weight decay λ′ 0"
    lr = LandscapeAxis.of("lr", [0.125], "sgd")
    assert coordinate(lr, 0, *axis_ticks([0.125])) == "lr 2⁻³ (0.125)" and axis_title(lr) == "learning rate α"
    batch = LandscapeAxis.of("batch_size", [64, 128])
    assert axis_title(batch) == "batch size b (images)"
    assert coordinate(batch, 1, *axis_ticks([64, 128])) == "batch size 2⁷ (128 images)"
    beta1 = LandscapeAxis.of("beta1", [0.9])
    assert axis_title(beta1) == "beta1 β₁" and coordinate(beta1, 0, ["0.9"], "1") == "beta1 0.9"


def test_default_clip() -> None:
    assert default_clip([], "test_error", dataset="cifar10") == FIG2_CLIP
    assert default_clip([], "test_loss", dataset="digits") is None


# ---------------------------------------------------------------------------------------------
# Rows: the registry's pairs, each panel drawn once


def test_figure_rows_pair_the_registry_variants_and_draw_each_panel_once(lands) -> None:
    assert figure_rows(lands) == [
        FigureRow(None, "sgd", "sgdw", ("sgd", "sgdw")),
        FigureRow(None, "adam", "adamw", ("adam", "adamw")),
        # torch's AdamW against the paper's: AdamW's panel is the one above, its column here a note.
        FigureRow(None, None, "adamw-torch", ("adamw", "adamw-torch")),
    ]
    assert figure_rows(lands)[2].placeholder(0) == "adamw" and figure_rows(lands)[0].placeholder(0) is None
    alone = {k: lands[k] for k in ("sgdw", "adam")}
    assert figure_rows(alone) == [FigureRow(None, "sgdw", None, None), FigureRow(None, "adam", None, None)]
    torch_only = {k: lands[k] for k in ("adamw-torch", "adamw")}
    assert figure_rows(torch_only) == [FigureRow(None, "adamw", "adamw-torch", ("adamw", "adamw-torch"))]


def test_faceted_rows_come_in_one_block_per_facet_value(faceted) -> None:
    assert list(faceted) == ["sgd/schedule=constant", "sgd/schedule=step", "sgdw/schedule=constant",
                             "sgdw/schedule=step"]
    assert figure_rows(faceted) == [
        FigureRow("schedule=constant", "sgd/schedule=constant", "sgdw/schedule=constant",
                  ("sgd/schedule=constant", "sgdw/schedule=constant")),
        FigureRow("schedule=step", "sgd/schedule=step", "sgdw/schedule=step",
                  ("sgd/schedule=step", "sgdw/schedule=step")),
    ]


# ---------------------------------------------------------------------------------------------
# The figure


def test_lr_weight_decay_figure_panels_axes_marks_and_hover(lands) -> None:
    fig = sweep_figure(lands, clip=FIG2_CLIP)
    panels = _heatmaps(fig, "panel")
    assert [p["meta"]["key"] for p in panels] == ["sgd", "sgdw", "adam", "adamw", "adamw-torch"]  # AdamW once
    for panel in panels:
        z = np.array(panel["z"], dtype=float)
        land = lands[panel["meta"]["key"]]
        assert z.shape == (N_LR, N_WD) and panel["coloraxis"] == "coloraxis"  # one shared colour scale
        np.testing.assert_array_equal(np.isnan(z), np.isnan(land.mean))
        np.testing.assert_allclose(z[np.isfinite(z)], land.mean[np.isfinite(land.mean)])
    layout = fig["layout"]
    assert (layout["coloraxis"]["cmin"], layout["coloraxis"]["cmax"]) == FIG2_CLIP

    # Subplots: sgd, sgdw, diff | adam, adamw, diff | adamw-torch, diff. Decay right, lr up, each in its scale.
    x_titles, y_titles = _axis_titles(fig, "x"), _axis_titles(fig, "y")
    l2, rate = "weight decay λ′ (× 0.001)", "weight decay λ (× 0.001)"
    assert x_titles == [l2, rate, "weight decay λ′ | λ (× 0.001)"] * 2 + [rate, rate]
    assert y_titles == ["learning rate α", "", "", "learning rate α (× 0.1)", "", "", "learning rate α (× 0.1)", ""]
    assert layout["xaxis"]["ticktext"] == ["0", "2⁻⁵", "2⁻⁴", "2⁻³", "2⁻²", "2⁻¹", "1", "2¹", "2²", "2³"]
    assert layout["yaxis"]["ticktext"] == ["2⁻⁶", "2⁻⁵", "2⁻⁴", "2⁻³", "2⁻²"]
    # A white line sets the 0-decay column off, on every subplot (they all have one).
    separators = [s for s in layout["shapes"] if s["line"]["color"] == "white"]
    assert len(separators) == 8 and all(s["x0"] == s["x1"] == 0.5 for s in separators)
    # AdamW (paper) is drawn once: the adamw-torch row's left column is a note, not a second panel.
    notes = [a for a in layout["annotations"] if a.get("name", "").startswith("placeholder:")]
    assert [a["name"] for a in notes] == ["placeholder:adamw"]
    assert "AdamW (paper)" in notes[0]["text"] and "row above" in notes[0]["text"]
    assert notes[0]["x"] == pytest.approx(0.145)
    titles = [a["text"] for a in layout["annotations"] if "name" not in a]
    assert sum(t.startswith("<b>AdamW (paper)</b>") for t in titles) == 1

    marks = {(t["meta"]["key"], t["meta"]["role"]): t for t in fig["data"] if t["type"] == "scatter"}
    top_k = min(10, N_LR * N_WD // 4)  # a quarter of a small panel, at most Figure 2's ten
    for key in lands:
        best = marks[(key, "best")]
        assert sorted(zip(best["y"], best["x"])) == sorted(lands[key].best_cells(top_k))
        assert best["marker"]["symbol"] == "circle-open" and best["marker"]["color"] == "black"
    assert sorted(zip(marks[("sgd", "diverged")]["y"], marks[("sgd", "diverged")]["x"])) == sorted(DIVERGED)
    assert ("sgdw", "diverged") not in marks and len(marks[("sgd", "running")]["x"]) == 1

    hover = panels[0]["hovertext"][2][5]
    land = lands["sgd"]
    assert hover.startswith("<b>SGD (L2)</b>  lr 2⁻⁴ (0.0625) · weight decay λ′ 2⁻¹×0.001 (0.0005)")
    assert f"{100 * land.mean[2, 5]:.2f} ± {100 * land.std[2, 5]:.2f} %" in hover and "(n=2)" in hover
    assert "state: done (2 done)" in hover and all(f"#{n}" in hover for n in land.trials[2][5])
    assert "state: running (1 running, 1 queued)" in panels[0]["hovertext"][N_LR - 1][N_WD - 2]
    assert "diverged: kept out of the colour scale" in panels[0]["hovertext"][N_LR - 2][N_WD - 1]
    assert "weight decay λ 2⁻¹×0.001" in panels[1]["hovertext"][2][5]  # SGDW's decay is a rate: λ
    json.dumps(fig, allow_nan=False)

    # With coupling metrics, each panel's title carries them.
    coupling = {k: coupling_metrics(land) for k, land in lands.items()}
    titles = [a["text"] for a in sweep_figure(lands, coupling=coupling)["layout"]["annotations"]]
    sgd_title = next(t for t in titles if t.startswith("<b>SGD (L2)</b>"))
    assert coupling["sgd"].ridge_slope_ci is not None, "two seeds, rows whose optima lie inside the grid"
    assert f"ridge slope {slope_text(coupling['sgd'])}" in sgd_title and "[" in slope_text(coupling["sgd"])
    assert coupling["sgd"].verdict in sgd_title


def test_difference_maps(lands) -> None:
    fig = sweep_figure(lands)
    diffs = _heatmaps(fig, "diff")
    assert [d["meta"]["pair"] for d in diffs] == [["sgd", "sgdw"], ["adam", "adamw"], ["adamw", "adamw-torch"]]
    # Errors are drawn in percentage points (the colour bar says pp).
    assert lands["sgd"].metric == "test_error" and "(pp)" in fig["layout"]["coloraxis2"]["colorbar"]["title"]["text"]
    np.testing.assert_allclose(np.array(diffs[0]["z"], dtype=float),
                               100 * (lands["sgdw"].mean - lands["sgd"].mean), equal_nan=True)
    np.testing.assert_allclose(np.array(diffs[2]["z"], dtype=float),
                               100 * (lands["adamw-torch"].mean - lands["adamw"].mean), equal_nan=True)
    assert diffs[0]["meta"]["y"] == lands["sgd"].y.values.tolist()  # the page maps clicks back by value
    assert diffs[0]["coloraxis"] == "coloraxis2" and fig["layout"]["coloraxis2"]["cmin"] < 0
    assert "<b>AdamW (torch) − AdamW (paper)</b>" in diffs[2]["hovertext"][0][1]
    titles = [a["text"] for a in fig["layout"]["annotations"]]
    assert any(t.startswith("<b>SGDW − SGD (L2)</b>") and "blue: SGDW better" in t for t in titles)
    # Grids that share no cell give an empty difference, not an error.
    empty = difference(lands["sgd"], lands["adam"])
    assert empty["diff"].shape == (0, N_WD) and empty["y"].size == 0


def test_beta1_beta2_figure_has_linear_axes_and_no_zero_column(betas) -> None:
    assert list(betas) == ["adam", "adamw"] and betas["adam"].y.name == "beta1"
    fig = sweep_figure(betas)
    layout = fig["layout"]
    assert _axis_titles(fig, "x") == ["beta2 β₂"] * 3 and _axis_titles(fig, "y") == ["beta1 β₁", "", ""]
    assert layout["yaxis"]["ticktext"] == ["0.5", "0.8", "0.9", "0.95"]
    assert layout["xaxis"]["ticktext"] == ["0.9", "0.99", "0.999"]
    assert layout["shapes"] == []  # linear axes: no 0 column to set off
    panel = _heatmaps(fig, "panel")[0]
    assert panel["hovertext"][2][2].startswith("<b>Adam (L2)</b>  beta1 0.9 · beta2 0.999")
    best = coupling_metrics(betas["adamw"]).best
    assert best["params"] == {"beta1": 0.9, "beta2": 0.999}


def test_faceted_figure_titles_say_the_facet_value(faceted) -> None:
    fig = sweep_figure(faceted)
    panels = _heatmaps(fig, "panel")
    assert [p["meta"]["facet"] for p in panels] == ["schedule=constant"] * 2 + ["schedule=step"] * 2
    titles = [a["text"] for a in fig["layout"]["annotations"]]
    assert titles[0].startswith("<b>SGD (L2)</b> · schedule=constant")
    assert (titles[3].startswith("<b>SGD (L2)</b> · schedule=step")
            and titles[4].startswith("<b>SGDW</b> · schedule=step"))
    assert titles[5].startswith("<b>SGDW − SGD (L2)</b> · schedule=step")
    assert panels[2]["hovertext"][0][1].startswith("<b>SGD (L2) · schedule=step</b>  lr 2⁻⁴")
    # The step block is drawn below the constant one.
    assert fig["layout"]["yaxis4"]["domain"][1] < fig["layout"]["yaxis"]["domain"][0]


def test_small_grids_mark_a_quarter_of_their_cells_best(betas) -> None:
    best = [t for t in sweep_figure(betas)["data"] if t["type"] == "scatter" and t["meta"]["role"] == "best"]
    assert [len(t["x"]) for t in best] == [3, 3], "12 cells: 3 marked, not 10 of 12"
    assert best[0]["name"] == "3 best cells" and best[0]["showlegend"] and not best[1]["showlegend"]


def test_payload_has_keys_rows_coupling_progress_and_figure(lands, faceted) -> None:
    body = landscape_payload(lands, sweep={"id": "x", "dataset": "cifar10"}, metric="test_error", epoch=None,
                             figure=True)
    assert body["clip"] == list(FIG2_CLIP) and body["axes"] == ["lr", "weight_decay"] and body["facets"] == []
    assert body["keys"] == body["variants"] == ["sgd", "sgdw", "adam", "adamw", "adamw-torch"]
    assert body["rows"][2] == {"facet": None, "left": None, "right": "adamw-torch", "pair": ["adamw", "adamw-torch"]}
    progress = body["progress"]
    assert progress["total"] == 5 * N_LR * N_WD * 2
    assert progress["diverged"] == 2 * 2 * len(DIVERGED) and progress["running"] == 5 and progress["queued"] == 15
    assert progress["finished"] == progress["total"] - 20
    sgd = body["landscapes"]["sgd"]
    assert sgd["label"] == "SGD (L2)" and sgd["x"]["title"] == "weight decay λ′" and sgd["y"]["name"] == "lr"
    coupling = {k: body["landscapes"][k]["coupling"] for k in body["keys"]}
    assert coupling["sgd"]["ridge_slope"] < -0.5 and abs(coupling["sgdw"]["ridge_slope"]) < 0.2
    assert coupling["sgdw"]["separability"] > coupling["sgd"]["separability"]
    assert set(coupling["sgd"]["best"]["params"]) == {"lr", "weight_decay"}
    assert "figure" in body
    json.dumps(body, allow_nan=False)

    body = landscape_payload(faceted, sweep={"id": "f"}, metric="test_error", epoch=None)
    assert body["variants"] == ["sgd", "sgdw"] and body["facets"] == ["schedule=constant", "schedule=step"]
    assert body["landscapes"]["sgdw/schedule=step"]["title"] == "SGDW · schedule=step"
    assert [r["facet"] for r in body["rows"]] == ["schedule=constant", "schedule=step"]


# ---------------------------------------------------------------------------------------------
# Exports


def test_grid_csv_names_the_axis_columns(lands, betas, faceted) -> None:
    rows = list(csv.DictReader(io.StringIO(grid_csv(lands))))
    assert tuple(rows[0]) == csv_columns("lr", "weight_decay") == (
        "variant", "facet", "metric", "epoch", "lr", "weight_decay", "mean", "std", "n", "count", "n_diverged",
        "state", "budget", "trials")
    assert len(rows) == 5 * N_LR * N_WD
    land = lands["sgdw"]
    row = next(r for r in rows if r["variant"] == "sgdw" and float(r["lr"]) == land.y.values[2]
               and float(r["weight_decay"]) == land.x.values[3])
    assert float(row["mean"]) == land.mean[2, 3] and row["n"] == "2" and row["state"] == "done"
    assert row["trials"] == " ".join(map(str, land.trials[2][3])) and row["facet"] == ""
    diverged = next(r for r in rows if r["variant"] == "sgd" and r["state"] == "diverged")
    assert diverged["mean"] == "" and diverged["n_diverged"] == "2"

    text = grid_csv(betas)
    assert text.splitlines()[0] == (
        "variant,facet,metric,epoch,beta1,beta2,mean,std,n,count,n_diverged,state,budget,trials")
    beta_rows = list(csv.DictReader(io.StringIO(text)))
    assert len(beta_rows) == 2 * 12 and {float(r["beta2"]) for r in beta_rows} == {0.9, 0.99, 0.999}
    assert {r["facet"] for r in csv.DictReader(io.StringIO(grid_csv(faceted)))} == {"schedule=constant",
                                                                                   "schedule=step"}
    assert grid_csv({}, axes=("beta1", "beta2")).strip() == ",".join(csv_columns("beta1", "beta2"))
    with pytest.raises(ValueError, match="share their axes"):
        grid_csv({"sgd": lands["sgd"], "adamw": betas["adamw"]})

    body = json.loads(grid_json(lands))
    assert list(body) == list(lands) and "coupling" in body["sgd"]
    assert body["sgd"]["y"]["values"] == lands["sgd"].y.values.tolist() and "lr" not in body["sgd"]


def test_standalone_html_inlines_plotly(lands) -> None:
    html = standalone_html(sweep_figure(lands, clip=FIG2_CLIP), title="lrwd <test>")
    assert "lrwd &lt;test&gt;" in html
    plotly_src = plotly_js_path().read_text(encoding="utf-8")
    assert plotly_src[:2000] in html  # the library itself, inlined
    assert not re.search(r"<script[^>]+src=", html)  # nothing fetched: works offline
    assert "cdn" not in html.replace(plotly_src, "").lower()
    assert '"coloraxis"' in html and "circle-open" in html


# ---------------------------------------------------------------------------------------------
# Pages and static files


def test_pages_escape_and_load_the_shared_api_module_first() -> None:
    page = sweep_page_html("a</script><b>")
    assert "</script><b>" not in page.split("<body", 1)[1].split("</header>")[0]
    config = json.loads(re.search(r'id="hpscape-config" type="application/json">(.*?)</script>', page).group(1))
    assert config["sweep_id"] == "a</script><b>"
    assert '<script src="/static/plotly.min.js">' in page and "cdn" not in page.lower()
    # api.js, then sweep.js, then plotly.js: sweep's first request overlaps plotly's compilation.
    assert page.index("/static/api.js") < page.index("/static/sweep.js") < page.index("/static/plotly.min.js")
    listing = sweep_list_html()
    assert listing.index("/static/api.js") < listing.index("/static/sweeps.js")
    assert page.count('id="auth"') == listing.count('id="auth"') == 1
    assert 'id="curve-metric"' in page


def test_the_token_and_request_code_lives_in_api_js_only() -> None:
    assert STATIC_FILES["api.js"].startswith("text/javascript")
    shared = (STATIC_DIR / "api.js").read_text()
    for marker in ("localStorage", "fetch(", "Authorization", "function detailText", "token-save"):
        assert marker in shared
        for page in ("sweep.js", "sweeps.js"):
            assert marker not in (STATIC_DIR / page).read_text(), f"{page} keeps its own copy of {marker!r}"
    for page in ("sweep.js", "sweeps.js"):
        assert "window.hpscapeApi" in (STATIC_DIR / page).read_text()
    # The sweep page reads the axes as y / x, not the names of one sweep kind.
    sweep_js = (STATIC_DIR / "sweep.js").read_text()
    assert ".lr" not in sweep_js and ".weight_decay" not in sweep_js and "l.y.values" in sweep_js


def test_page_routes_and_static_files(service) -> None:
    client, sweeps = service
    sweep_id = sweeps["lrwd"].id
    assert client.get("/", follow_redirects=False).headers["location"] == "/sweeps"
    page = client.get(f"/sweeps/{sweep_id}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert sweep_id in page.text
    assert "Sweeps" in client.get("/sweeps").text
    for name in ("api.js", "sweep.js", "sweeps.js", "hpscape.css"):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and response.headers["content-type"] == STATIC_FILES[name]
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


def _url(sweeps, key: str, suffix: str = "") -> str:
    return f"/api/v1/sweeps/{sweeps[key].id}/landscape{suffix}"


def test_landscape_api_needs_a_token_when_reads_are_private(service) -> None:
    client, sweeps = service
    assert client.get(_url(sweeps, "lrwd")).status_code == 401
    assert client.get("/api/v1/sweeps/nope/landscape", headers=AUTH).status_code == 404


def test_landscape_api_body(service, lands) -> None:
    client, sweeps = service
    response = client.get(_url(sweeps, "lrwd"), headers=AUTH)
    assert response.status_code == 200 and "landscape;dur=" in response.headers["server-timing"]
    body = response.json()
    sweep = body["sweep"]
    assert sweep["id"] == sweeps["lrwd"].id and sweep["record_name"] == sweeps["lrwd"].record
    assert sweep["name"] == "lrwd" and sweep["status"] == "running" and sweep["epochs"] == 4
    assert sweep["axes"] == ["lr", "weight_decay"] and sweep["facet"] is None and sweep["max_epochs"] == 4
    assert "figure" not in body and body["keys"] == list(lands)
    sgd = body["landscapes"]["sgd"]
    assert sgd["mean"][2][3] == pytest.approx(lands["sgd"].mean[2, 3])
    assert sgd["trials"] == lands["sgd"].trials and sgd["coupling"]["ridge_slope"] < -0.5
    assert sgd["y"]["values"] == lands["sgd"].y.values.tolist() and sgd["x"]["title"] == "weight decay λ′"

    with_fig = client.get(_url(sweeps, "lrwd"), params={"figure": "true", "clip_lo": 0.035, "clip_hi": 0.06},
                          headers=AUTH).json()
    assert with_fig["figure"]["layout"]["coloraxis"]["cmax"] == 0.06 and with_fig["clip"] == [0.035, 0.06]

    epoch = client.get(_url(sweeps, "lrwd"), params={"epoch": 2}, headers=AUTH).json()
    assert epoch["epoch"] == 2
    assert epoch["landscapes"]["sgdw"]["mean"][2][3] == pytest.approx(lands["sgdw"].mean[2, 3] + 0.02)
    loss = client.get(_url(sweeps, "lrwd"), params={"metric": "test_loss"}, headers=AUTH).json()
    assert loss["landscapes"]["sgd"]["mean"][2][3] == pytest.approx(3 * sgd["mean"][2][3])


def test_any_metric_at_any_epoch_comes_from_the_histories(service, lands) -> None:
    client, sweeps = service
    body = client.get(_url(sweeps, "lrwd"), params={"metric": "test_loss", "epoch": 1}, headers=AUTH)
    assert body.status_code == 200, body.text
    mean = body.json()["landscapes"]["sgdw"]["mean"]
    assert mean[2][3] == pytest.approx(3 * (lands["sgdw"].mean[2, 3] + 0.03))
    train = client.get(_url(sweeps, "betas"), params={"metric": "train_loss", "epoch": 2}, headers=AUTH).json()
    assert train["landscapes"]["adamw"]["mean"][2][2] == pytest.approx(2 * (0.04 + 0.01), abs=1e-3)


@pytest.mark.parametrize(
    ("sweep", "params", "message"),
    [
        # hpscape 0.1 records keep only the objective per epoch: LandscapeError says so and what to choose.
        ("legacy", {"metric": "test_loss", "epoch": 2}, "test_loss is not recorded at epoch 2"),
        ("lrwd", {"epoch": 5}, "past this sweep's last epoch"),
        ("lrwd", {"clip_lo": 0.03}, "give both clip_lo and clip_hi"),
        ("lrwd", {"clip_lo": 0.05, "clip_hi": 0.04}, "clip_lo < clip_hi"),
        ("lrwd", {"metric": "accuracy"}, "test_error"),
    ],
)
def test_landscape_api_errors_say_how_to_fix(service, sweep: str, params: dict, message: str) -> None:
    client, sweeps = service
    response = client.get(_url(sweeps, sweep), params=params, headers=AUTH)
    assert response.status_code == 422
    assert message in json.dumps(response.json(), ensure_ascii=False)


def test_legacy_records_still_give_the_objective_per_epoch(service) -> None:
    client, sweeps = service
    body = client.get(_url(sweeps, "legacy"), params={"epoch": 2}, headers=AUTH).json()
    assert body["landscapes"]["sgd"]["n"] == [[1, 1], [1, 1]]
    items = client.get(_url(sweeps, "legacy", "/trials"), params={"variant": "sgd", "numbers": "0"},
                       headers=AUTH).json()["items"]
    assert items[0]["history"] is None and [p[0] for p in items[0]["curve"]] == [1, 2, 3]


def test_landscape_trials_api(service, lands) -> None:
    client, sweeps = service
    url = _url(sweeps, "lrwd", "/trials")
    numbers = lands["sgdw"].trials[2][3]
    body = client.get(url, params={"variant": "sgdw", "numbers": ",".join(map(str, numbers))}, headers=AUTH).json()
    assert [t["number"] for t in body["items"]] == numbers and body["facet"] is None
    first = body["items"][0]
    assert first["params"] == {"lr": lands["sgdw"].y.values[2], "weight_decay": lands["sgdw"].x.values[3]}
    assert len(first["curve"]) == 4 and [h["epoch"] for h in first["history"]] == [1, 2, 3, 4]
    assert first["history"][0]["test_loss"] == pytest.approx(3 * first["history"][0]["test_error"])
    best = client.get(url, params={"variant": "sgd", "limit": 5}, headers=AUTH).json()["items"]
    assert [t["value"] for t in best] == sorted(t["value"] for t in best) and len(best) == 5
    assert best[0]["value"] == pytest.approx(float(np.nanmin(lands["sgd"].mean)), abs=0.001)
    assert client.get(url, params={"variant": "sgd", "numbers": "1,x"}, headers=AUTH).status_code == 422
    # Variants come from the registry: one it knows that the sweep lacks is refused by the sweep, not the schema.
    other = client.get(url, params={"variant": "rmsprop"}, headers=AUTH)
    assert other.status_code == 422 and "not in this sweep" in other.text
    unknown = client.get(url, params={"variant": "lion"}, headers=AUTH)
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"] == ["query", "variant"]
    betas = client.get(_url(sweeps, "betas", "/trials"), params={"variant": "adamw", "limit": 3}, headers=AUTH)
    assert set(betas.json()["items"][0]["params"]) == {"beta1", "beta2"}


@pytest.mark.parametrize(
    ("sweep", "facet", "message"),
    [
        ("faceted", None, "this sweep has a facet (schedule): give facet= one of schedule=constant, schedule=step"),
        ("faceted", "schedule=cosine", "facet 'schedule=cosine' is not in this sweep"),
        ("faceted", "schedule", "expected AXIS=VALUE"),
        ("lrwd", "schedule=step", "it has no facet"),
    ],
)
def test_trials_api_refuses_a_facet_the_sweep_does_not_have(service, sweep: str, facet, message: str) -> None:
    client, sweeps = service
    params = {"variant": "sgd"} if facet is None else {"variant": "sgd", "facet": facet}
    response = client.get(_url(sweeps, sweep, "/trials"), params=params, headers=AUTH)
    assert response.status_code == 422
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["query", "facet"] and message in detail["msg"]


def test_trials_api_reads_one_facet_value(service, faceted) -> None:
    client, sweeps = service
    land = faceted["sgdw/schedule=step"]
    body = client.get(_url(sweeps, "faceted", "/trials"),
                      params={"variant": "sgdw", "facet": "schedule=step",
                              "numbers": ",".join(map(str, land.trials[1][2]))},
                      headers=AUTH).json()
    assert body["facet"] == "schedule=step" and len(body["items"]) == 1
    assert body["items"][0]["value"] == pytest.approx(land.mean[1, 2])
    assert body["items"][0]["params"] == {"lr": 2.0**-3, "weight_decay": 0.001}


def test_landscape_export_api(service, lands, betas) -> None:
    client, sweeps = service
    record = sweeps["lrwd"].record
    url = _url(sweeps, "lrwd", "/export")
    csv_response = client.get(url, params={"format": "csv"}, headers=AUTH)
    assert csv_response.headers["content-disposition"] == f'attachment; filename="{record}-test_error.csv"'
    assert csv_response.text == grid_csv(lands)
    assert client.get(_url(sweeps, "betas", "/export"), params={"format": "csv"},
                      headers=AUTH).text.startswith("variant,facet,metric,epoch,beta1,beta2,")
    json_response = client.get(url, params={"format": "json", "epoch": 3}, headers=AUTH)
    assert f"{record}-test_error-epoch3.json" in json_response.headers["content-disposition"]
    assert json_response.json()["sgd"]["epoch"] == 3 and json_response.json()["sgd"]["x"]["name"] == "weight_decay"
    html = client.get(url, params={"format": "html"}, headers=AUTH)
    assert html.headers["content-type"].startswith("text/html") and len(html.content) > 3_000_000
    assert "Plotly.newPlot" in html.text and "placeholder:adamw" in html.text


def _bayes_study(n: int) -> optuna.Study:
    """A Bayesian study (in memory) recorded as the driver records one: ask_bayes, then finish_trial."""
    spec = SweepSpec.model_validate({**_BASE, "name": "bo", "epochs": 4, "variants": ["adamw"],
                                     "bayes": {"n_trials": n, "lr": [2**-8, 2**-1], "weight_decay": [2**-14, 2**-6]}})
    study = optuna.create_study(study_name="bo/adamw", sampler=optuna.samplers.RandomSampler(seed=0))
    study.set_user_attr(SPEC_ATTR, spec.model_dump(mode="json"))
    for _ in range(n):
        number = ask_bayes(study, ranges=spec.bayes.ranges, seed=0, epochs_budget=4)
        params = study.trials[number].params
        error = 0.05 + 0.001 * (math.log2(params["weight_decay"]) + 10) ** 2
        finish_trial(study, number, _metrics(error), objective="test_error")
    return study


def test_binned_figure_shows_counts_and_labels_the_model() -> None:
    land = build_landscape(_bayes_study(150), model=True)
    assert land.kind == "binned"
    measured = sweep_figure({"adamw": land})
    panel = _heatmaps(measured, "panel")[0]
    # Each bin shows its count of trials; an empty bin stays blank.
    assert panel["text"] == [[str(c) if c else "" for c in row] for row in land.count.tolist()]
    assert panel["texttemplate"] == "%{text}" and (land.count == 0).any()
    assert not any("MODEL" in a["text"] for a in measured["layout"]["annotations"])
    modelled = sweep_figure({"adamw": land}, show_model=True)
    panel = _heatmaps(modelled, "panel")[0]
    np.testing.assert_allclose(np.array(panel["z"], dtype=float), land.model.mean, equal_nan=True)
    assert any("MODEL surface, not measured" in a["text"] for a in modelled["layout"]["annotations"])
    row, col = np.argwhere(np.isfinite(land.model.mean))[0]
    assert "MODEL estimate" in panel["hovertext"][row][col] and "(not measured)" in panel["hovertext"][row][col]


def test_a_sweep_that_has_not_started_has_an_empty_landscape(tmp_path: Path) -> None:
    settings = Settings(storage=f"sqlite:///{tmp_path / 'q.db'}", public_read=True)
    app = create_app(settings, dispatch=False)
    with TestClient(app) as client:
        with app.state.hpscape.sessions() as session:
            row, _ = submit_sweep(session, get_preset("adam-betas"), owner="bob")
            sweep_id = row.id
        body = client.get(f"/api/v1/sweeps/{sweep_id}/landscape", params={"figure": "true"}).json()
        assert body["landscapes"] == {} and body["progress"]["total"] == 0 and body["clip"] is None
        assert body["figure"]["data"] == [] and body["sweep"]["status"] == "queued"
        assert body["sweep"]["axes"] == ["beta1", "beta2"]
        csv_text = client.get(f"/api/v1/sweeps/{sweep_id}/landscape/export", params={"format": "csv"}).text
        assert csv_text.strip() == ",".join(csv_columns("beta1", "beta2"))
        trials = client.get(f"/api/v1/sweeps/{sweep_id}/landscape/trials", params={"variant": "adam"})
        assert trials.status_code == 404 and "has not started" in trials.json()["detail"]

"""The mechanism view: cells' final metric against their equilibrium angle, and the collapse score of a variant pair.

Records are written from formulas (tests/recorded.py), telemetry included, so the score each case should get is
known: a metric that depends on the predicted angle alone collapses (score near 1, a tight interval); one that also
depends on the variant does not. Then the view through the API (JSON, exports), the notebook and the CLI line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from recorded import record_sweep

from hpscape.dashboards.views import available_views, mechanism_view, view_unavailable
from hpscape.landscapes import SweepSpec, get_preset, sweep_mechanism
from hpscape.landscapes.mechanism import MechanismCell, collapse

CHROMIUM = Path("/usr/bin/chromium")
MOMENTUM = 0.9
EPOCHS = 3
LRS = [2.0**k for k in range(-6, -2)]  # 4 x 4 cells per variant: recording is what these tests spend time on
DECAYS = [2.0**k for k in range(-9, -5)]
BEST_ANGLE = 0.03  # where the synthetic metric is lowest
NOISE = 0.02  # per seed, on the final loss: enough that the score has noise to see through
OFFSET = 0.1  # the decoupled variant's extra loss in the case that does not collapse


def _spec(name: str, *, lrs: list[float], decays: list[float], seeds: list[int]) -> SweepSpec:
    body = get_preset("quick").model_dump(mode="json", exclude_none=True)
    body.update(name=name, epochs=EPOCHS, seeds=seeds, variants=["sgd", "sgdw"],
                grid={"lr": lrs, "weight_decay": decays})
    return SweepSpec.model_validate(body)


def predicted_angle(variant: str, lr: float, decay: float, epoch: int) -> float:
    # docs/science.md ("the effective step"), at a schedule multiplier that falls with the epoch (alike for every
    # cell): SGD + L2 turns by sqrt(2 lr lambda' / (1 + mu)), SGDW by sqrt(2 lambda (1 - mu) / (1 + mu)), whatever
    # lr is.
    eta = 1.0 / epoch
    if variant == "sgd":
        return math.sqrt(2 * lr * eta * decay / (1 + MOMENTUM))
    return math.sqrt(2 * eta * decay * (1 - MOMENTUM) / (1 + MOMENTUM))


def _metrics(offset: float, *, telemetry: bool = True):
    def metrics(variant: str, facet: Any, params: dict[str, Any], seed: int, epoch: int) -> dict[str, float]:
        theory = predicted_angle(variant, params["lr"], params["weight_decay"], epoch)
        rng = np.random.default_rng([seed, epoch, int(1e9 * params["lr"]), int(1e9 * params["weight_decay"])])
        final = predicted_angle(variant, params["lr"], params["weight_decay"], EPOCHS)
        loss = (0.2 + 0.05 * math.log(final / BEST_ANGLE) ** 2 + (offset if variant == "sgdw" else 0.0)
                + 0.3 / epoch + NOISE * rng.standard_normal())
        out = {"test_loss": loss, "test_error": loss / 3, "train_loss": loss / 2, "train_error": loss / 4}
        if telemetry:
            out.update(angular_update_theory=theory, angular_update=theory * (1 + 0.02 * rng.standard_normal()),
                       weight_norm=1.0 / math.sqrt(theory), grad_norm=0.5, decay_share=0.1)
        return out

    return metrics


# key -> (offset, telemetry, seeds, grid): a collapse, a variant offset, and a record written before telemetry
SWEEPS: dict[str, tuple[float, bool, list[int], dict[str, list[float]]]] = {
    "collapse": (0.0, True, [0, 1], {"lr": LRS, "weight_decay": DECAYS}),
    "offset": (OFFSET, True, [0], {"lr": LRS, "weight_decay": DECAYS}),
    "old": (0.0, False, [0], {"lr": LRS[:2], "weight_decay": DECAYS[:3]}),
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One controller (dispatch off) with the sweeps of SWEEPS submitted and recorded from their formulas; the unit
    tests read the same records."""
    from conftest import _api_factory

    tmp = tmp_path_factory.mktemp("mechanism")
    url = f"sqlite:///{tmp / 'optuna.db'}"
    with _api_factory(tmp) as factory:
        api = factory(url)
        sweeps, specs = {}, {}
        for key, (offset, telemetry, seeds, grid) in SWEEPS.items():
            body = {"preset": "quick", "name": f"mech-{key}", "epochs": EPOCHS, "seeds": seeds,
                    "variants": ["sgd", "sgdw"], "grid": grid}
            response = api.client.post("/api/v1/sweeps", json=body, headers=api.auth("alice"))
            assert response.status_code == 202, response.text
            row = response.json()
            spec = SweepSpec.model_validate(api.client.get(f"/api/v1/sweeps/{row['id']}",
                                                           headers=api.auth("alice")).json()["spec"])
            specs[key] = spec.model_copy(update={"name": row["record_name"]})
            record_sweep(url, specs[key], _metrics(offset, telemetry=telemetry))
            sweeps[key] = row
        yield {"api": api, "sweeps": sweeps, "url": url, "specs": specs}


@pytest.fixture(scope="module")
def records(served) -> dict[str, Any]:
    return {"url": served["url"], "specs": served["specs"]}


def _pair(records: dict[str, Any], key: str, **kwargs: Any):
    spec = records["specs"][key]
    (pair,) = sweep_mechanism(records["url"], spec.name, spec, **kwargs)
    return pair


def test_a_metric_of_the_angle_alone_collapses_onto_one_curve(records) -> None:
    pair = _pair(records, "collapse")
    assert pair.variants == ("sgd", "sgdw") and pair.used == {"sgd": 16, "sgdw": 16}
    print(f"collapse case: score {pair.score:.4f} {pair.score_ci}, R² joint {pair.r2_joint:.3f}, "
          f"separate {pair.r2_separate:.3f}")
    assert pair.score > 0.97 and pair.score_ci[1] - pair.score_ci[0] < 0.05, (pair.score, pair.score_ci)
    assert pair.score_ci[0] <= pair.score <= pair.score_ci[1] <= 1.0
    assert pair.r2_separate > 0.9 and pair.notes == ()
    # The cells carry what the trainer recorded at the last epoch; SGDW's angle does not depend on lr.
    sgdw = {c.params["weight_decay"]: c.angle("theory") for c in pair.cells if c.variant == "sgdw"}
    assert sgdw[DECAYS[0]] == pytest.approx(predicted_angle("sgdw", 1.0, DECAYS[0], EPOCHS))
    assert len({round(c.angle("theory"), 12) for c in pair.cells if c.variant == "sgdw"}) == len(DECAYS)
    # The measured angle (2 % noise per seed) tells the same story.
    measured = _pair(records, "collapse", angle="measured")
    assert measured.score > 0.95, measured.score


def test_a_metric_that_depends_on_the_variant_scores_clearly_lower(records) -> None:
    collapsed, offset = _pair(records, "collapse"), _pair(records, "offset")
    print(f"offset case: score {offset.score:.4f} {offset.score_ci}, R² joint {offset.r2_joint:.3f}, "
          f"separate {offset.r2_separate:.3f}")
    assert offset.score < 0.8 and offset.score_ci[1] < collapsed.score_ci[0], (offset.score, offset.score_ci)
    # Each variant alone still follows the angle: it is the one curve for both that fails.
    assert offset.r2_separate > 0.9


def test_a_record_without_telemetry_says_so(records) -> None:
    pair = _pair(records, "old")
    assert pair.score is None and pair.score_ci is None and not pair.telemetry
    assert any(n.startswith("this record has no telemetry") for n in pair.notes), pair.notes
    body = mechanism_view([pair])
    assert body["notes"] and body["notes"][0].startswith("this record has no telemetry")
    assert body["table"]["rows"][0][3] == "— (no telemetry)"


def test_too_few_cells_get_no_score(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'few.db'}"
    spec = _spec("few", lrs=LRS[:2], decays=DECAYS[:2], seeds=[0])
    record_sweep(url, spec, _metrics(0.0))
    (pair,) = sweep_mechanism(url, spec.name, spec)
    assert pair.score is None and pair.used == {"sgd": 4, "sgdw": 4}
    assert any("too few cells for a collapse score" in n for n in pair.notes), pair.notes
    assert mechanism_view([pair])["table"]["rows"][0][3] == "— (too few cells)"


def _cell(variant: str, angle: float | None, value: float, theory: float | None = None) -> MechanismCell:
    nan = math.nan
    return MechanismCell(variant, {"weight_decay": angle}, (0,), (0,), (value,),
                         (nan if theory is None else theory,), (nan if angle is None else angle,), (nan,))


def test_zero_angles_and_missing_predictions_are_named() -> None:
    # Adam + L2 records a measured angle but no prediction (no closed form); a zero measured angle has no log.
    cells = [_cell("adam", 0.01 * (k + 1), 0.5) for k in range(6)] + [_cell("adamw", 0.0, 0.5)]
    cells += [_cell("adamw", 0.01 * (k + 1), 0.4, theory=0.01 * (k + 1)) for k in range(6)]
    pair = collapse(cells, ("adam", "adamw"), metric="test_loss", angle="theory")
    assert pair.score is None and pair.used == {"adam": 0, "adamw": 6}
    assert any("no closed-form equilibrium angle" in n and "angle=measured" in n for n in pair.notes), pair.notes
    measured = collapse(cells, ("adam", "adamw"), metric="test_loss", angle="measured")
    assert any("1 cell(s) with a zero angle" in n for n in measured.notes), measured.notes


def test_the_view_applies_to_sweeps_with_a_variant_pair() -> None:
    assert "mechanism" in available_views(get_preset("quick"))
    why = view_unavailable("mechanism", get_preset("quick-adam").model_copy(update={"variants": ["adamw-torch"]}))
    assert why is not None and "compares a variant with its partner" in why


def test_the_cli_prints_one_line_per_pair(records, capsys: pytest.CaptureFixture[str]) -> None:
    from hpscape.service.cli.mechanism import print_collapse_scores

    spec = records["specs"]["collapse"]
    print_collapse_scores(spec, records["url"])
    print_collapse_scores(records["specs"]["old"], records["url"])
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"mechanism SGD \(L2\) vs SGDW: collapse score (0\.9\d|1\.00) \[(0\.9\d|1\.00), 1\.00\] "
                        r"\(predicted angle; cells 16 \+ 16\)", lines[0]), lines
    assert lines[1].startswith("mechanism SGD (L2) vs SGDW: no collapse score (predicted angle; cells 0 + 0): "
                               "this record has no telemetry"), lines


# ---------------------------------------------------------------------------------------------
# Through the API


def _get(served, path: str, **params: Any):
    api = served["api"]
    return api.client.get(path, params=params, headers=api.auth("alice"))


def test_the_api_serves_the_mechanism_view(served) -> None:
    sid = served["sweeps"]["collapse"]["id"]
    assert "mechanism" in _get(served, f"/api/v1/sweeps/{sid}/views").json()["available"]
    response = _get(served, f"/api/v1/sweeps/{sid}/views/mechanism")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["view"] == "mechanism" and body["metric"] == "test_loss" and body["angle"] == "theory"
    (pair,) = body["collapse"]
    assert pair["score"] > 0.97 and pair["score_ci"][0] > 0.9 and len(pair["cells"]) == 32
    row = body["table"]["rows"][0]
    assert row[0] == "SGD (L2) vs SGDW" and re.fullmatch(r"(0\.9\d|1\.00) \[(0\.9\d|1\.00), 1\.00\]", row[3]), row
    # The figure: both variants' cells as points on a log angle axis, the joint fit and each variant's own.
    roles = [t["meta"]["role"] for t in body["figure"]["data"]]
    assert roles.count("cells") == 2 and roles.count("joint") == 1 and roles.count("separate") == 2
    assert body["figure"]["layout"]["xaxis"]["type"] == "log"
    assert len([t for t in body["figure"]["data"] if t["meta"]["role"] == "cells"][0]["x"]) == 16
    measured = _get(served, f"/api/v1/sweeps/{sid}/views/mechanism", angle="measured").json()
    assert measured["angle"] == "measured" and measured["collapse"][0]["field"] == "angular_update"
    error = _get(served, f"/api/v1/sweeps/{sid}/views/mechanism", metric="test_error").json()
    assert error["collapse"][0]["metric"] == "test_error" and error["collapse"][0]["score"] > 0.97
    bad = _get(served, f"/api/v1/sweeps/{sid}/views/mechanism", angle="sideways")
    assert bad.status_code == 422 and "angle" in bad.text
    epoch = _get(served, f"/api/v1/sweeps/{sid}/views/mechanism", epoch=2)
    assert epoch.status_code == 422 and "reads the final epoch" in epoch.text


def test_the_api_says_when_a_record_has_no_telemetry(served) -> None:
    sid = served["sweeps"]["old"]["id"]
    body = _get(served, f"/api/v1/sweeps/{sid}/views/mechanism").json()
    assert body["collapse"][0]["score"] is None and body["collapse"][0]["telemetry"] is False
    assert any(n.startswith("this record has no telemetry") for n in body["notes"]), body["notes"]
    texts = [a["text"] for a in body["figure"]["layout"]["annotations"]]
    assert any("no telemetry" in t for t in texts), texts


def test_the_mechanism_view_exports_as_html_and_json(served) -> None:
    sid = served["sweeps"]["collapse"]["id"]
    html = _get(served, f"/api/v1/sweeps/{sid}/views/mechanism/export", format="html")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "mechanism" in html.headers["content-disposition"] and "Plotly" in html.text
    exported = _get(served, f"/api/v1/sweeps/{sid}/views/mechanism/export", format="json")
    assert exported.status_code == 200 and "figure" not in exported.json()
    assert exported.json()["collapse"][0]["score"] > 0.97


def test_the_mechanism_page_is_served(served) -> None:
    api, sid = served["api"], served["sweeps"]["collapse"]["id"]
    response = api.client.get(f"/sweeps/{sid}/mechanism")
    assert response.status_code == 200 and 'data-view="mechanism"' in response.text and "view.js" in response.text


@pytest.mark.slow
def test_the_mechanism_view_exports_as_png(served) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: image export needs Debian's chromium (run `make chromium`)")
    sid = served["sweeps"]["collapse"]["id"]
    png = _get(served, f"/api/v1/sweeps/{sid}/views/mechanism/export", format="png")
    assert png.status_code == 200, png.text
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n" and len(png.content) > 20_000


def test_the_notebook_view_has_the_mechanism(records) -> None:
    import hpscape

    spec = records["specs"]["collapse"]
    sweep = hpscape.load(records["url"], spec.name, metric="test_loss")
    body = sweep.view("mechanism")
    assert body["collapse"][0]["score"] > 0.97 and body["table"]["rows"][0][0] == "SGD (L2) vs SGDW"
    assert sweep.mechanism(angle="measured")[0].angle == "measured"

"""A real browser on the facet, curves and budget pages (headless Chromium driven by playwright), as for the sweep
page: each view draws, its tables fill, the links between views work, and no console error appears.

Needs /usr/bin/chromium (`make chromium`); never `playwright install`. Screenshots go to docs/view-*.png.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from recorded import record_sweep
from test_api_views import _loss
from test_dashboard_browser import browser, serving, token_page  # noqa: F401 (browser: a fixture)

from hpscape.landscapes import SweepSpec, get_preset

DOCS = Path(__file__).resolve().parents[1] / "docs"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The controller on a free port, holding one fully recorded sweep with an `epochs` facet (all views apply)."""
    from conftest import _api_factory

    tmp = tmp_path_factory.mktemp("views_browser")
    url = f"sqlite:///{tmp / 'optuna.db'}"
    with _api_factory(tmp) as factory:
        api = factory(url)
        body = get_preset("quick-budget").model_dump(mode="json", exclude_none=True)
        body.update(name="budget-demo", seeds=[0, 1], facet={"epochs": [5, 10, 20]},
                    grid={"lr": body["grid"]["lr"], "weight_decay": [2.0**k for k in range(-7, -2)]})
        row = api.client.post("/api/v1/sweeps", json=body, headers=api.auth("alice")).json()
        spec = SweepSpec.model_validate(body).model_copy(update={"name": row["record_name"]})
        record_sweep(url, spec, _loss)
        with serving(api.app) as base:
            yield {"base": base, "id": row["id"], "token": api.tokens["alice"]}


@pytest.fixture
def page(browser: Any, live: dict[str, Any]) -> Iterator[Any]:  # noqa: F811 (the imported fixture)
    with token_page(browser, live["token"]) as opened:
        yield opened


def _open(page: Any, live: dict[str, Any], view: str) -> None:
    page.goto(f"{live['base']}/sweeps/{live['id']}/{view}")
    page.wait_for_function("window.hpscape && window.hpscape.renders > 0", timeout=30_000)


@pytest.mark.parametrize("view, traces, rows", [("facets", "heatmap", 6), ("curves", "scatter", None),
                                                ("budget", "scatter", 6)])
def test_each_view_draws_its_figure_and_numbers(page: Any, live: dict[str, Any], view: str, traces: str,
                                                rows: int | None) -> None:
    _open(page, live, view)
    drawn = page.evaluate(f"document.getElementById('figure').data.filter(t => t.type === '{traces}').length")
    assert drawn > 0, f"the {view} figure has no {traces} traces"
    table_rows = page.locator("#table tbody tr").count()
    assert table_rows > 0 and (rows is None or table_rows == rows), table_rows
    links = page.locator("#views a").all_inner_texts()
    assert links == ["landscape", "facets", "curves", "budget"]
    assert page.locator("#views a.current").inner_text() == view
    page.screenshot(path=str(DOCS / f"view-{view}.png"), full_page=True)


def test_the_curves_view_also_draws_error_against_training_loss(page: Any, live: dict[str, Any]) -> None:
    _open(page, live, "curves")
    assert not page.locator("#figure2").is_hidden()
    assert page.evaluate("document.getElementById('figure2').data.length") > 0


def test_the_sweep_page_links_to_its_views(page: Any, live: dict[str, Any]) -> None:
    page.goto(f"{live['base']}/sweeps/{live['id']}")
    page.wait_for_function("document.querySelectorAll('#views a').length === 4", timeout=30_000)
    # Leaving while the page still loads its trials table would abort that request (reported as an error).
    page.wait_for_load_state("networkidle")
    page.locator("#views a", has_text="budget").click()
    page.wait_for_function("window.hpscape && window.hpscape.renders > 0", timeout=30_000)
    assert page.url.endswith(f"/sweeps/{live['id']}/budget")


def test_changing_the_metric_redraws(page: Any, live: dict[str, Any]) -> None:
    _open(page, live, "facets")
    before = page.evaluate("window.hpscape.renders")
    page.select_option("#metric", "train_loss")
    page.wait_for_function(f"window.hpscape.renders > {before}", timeout=30_000)
    assert page.evaluate("window.hpscape.state.metric") == "train_loss"


def _cli(live: dict[str, Any], *args: str):
    from typer.testing import CliRunner

    from hpscape.service.cli import app as cli

    env = {"HPSCAPE_URL": live["base"], "HPSCAPE_TOKEN": live["token"]}
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_hpscape_export_writes_figures_as_images(live: dict[str, Any], tmp_path: Path) -> None:
    svg = tmp_path / "budget.svg"
    result = _cli(live, "export", live["id"], "--format", "svg", "--view", "budget", "-o", str(svg))
    assert result.exit_code == 0, result.output
    assert svg.read_bytes().lstrip().startswith((b"<svg", b"<?xml")) and b"optimal" in svg.read_bytes()
    png = tmp_path / "landscape.png"
    result = _cli(live, "export", live["id"], "--format", "png", "--metric", "test_loss", "-o", str(png))
    assert result.exit_code == 0 and png.read_bytes()[:4] == b"\x89PNG", result.output
    html = _cli(live, "export", live["id"], "--format", "html", "--view", "facets")
    assert html.exit_code == 0 and "Plotly" in html.output


def test_hpscape_export_refuses_bad_choices_with_exit_2(live: dict[str, Any]) -> None:
    result = _cli(live, "export", live["id"], "--format", "gif")
    assert result.exit_code == 2 and "--format must be one of csv, json, html, svg, png, pdf" in result.output
    result = _cli(live, "export", live["id"], "--format", "csv", "--view", "budget")
    assert result.exit_code == 2 and "give --format html, svg, png or pdf" in result.output
    result = _cli(live, "export", live["id"], "--format", "svg", "--view", "nope")
    assert result.exit_code == 2 and "--view must be one of landscape, facets, curves, budget" in result.output

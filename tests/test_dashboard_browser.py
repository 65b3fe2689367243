"""A real browser on the pages: headless Chromium (Debian's, driven by playwright) against the controller.

Needs /usr/bin/chromium (`make chromium`); never `playwright install`. Fails on any console error.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hpscape.landscapes import build_sweep_landscapes, finish_trial, open_study, running_trials
from test_dashboard import ADMIN, FIG2_TEST, N_LR, N_WD, seeded_service


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ROOT = Path(__file__).resolve().parents[1]
FIRST_RENDER_LIMIT_S = 10.0  # a sanity bound for a loaded CI machine; the target (1 s) is measured by the bench


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The controller on a free port, serving one seeded sweep."""
    import uvicorn

    with seeded_service(tmp_path_factory.mktemp("browser")) as (app, sweep_id, record):
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                pytest.fail("the controller did not start within 30 s")
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            yield {"base": f"http://127.0.0.1:{port}", "sweep_id": sweep_id, "record": record, "app": app}
        finally:
            server.should_exit = True
            thread.join(timeout=15)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: the browser tests need Debian's chromium (run `make chromium`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A page whose localStorage holds the admin token, collecting every console error."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    context.add_init_script(f"window.localStorage.setItem('hpscape.token', '{ADMIN}');")
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url} {r.failure}"))
    page.errors = errors
    try:
        yield page
    finally:
        context.close()
    assert errors == [], "the browser reported errors:\n" + "\n".join(errors)


def test_sweep_list_shows_status_and_progress(live: dict[str, Any], page: Any) -> None:
    page.goto(f"{live['base']}/sweeps?poll=0.5")
    row = page.locator(f"tr[data-id='{live['sweep_id']}']")
    row.wait_for(timeout=15_000)
    assert "running" in row.locator(".badge").inner_text()
    # The progress comes from GET /api/v1/sweeps/{id}: 24 of 968 trials are still running or queued.
    page.wait_for_function(
        f"document.querySelector(\"tr[data-id='{live['sweep_id']}']\").innerText.includes('944 / 968')",
        timeout=15_000,
    )
    width = row.locator(".bar").evaluate("e => parseFloat(e.style.width)")
    assert width == pytest.approx(100 * 944 / 968, abs=0.1)
    row.locator("a").click()
    page.wait_for_url(f"**/sweeps/{live['sweep_id']}")


def _cell_point(page: Any, subplot: int, row: int, col: int) -> tuple[float, float]:
    """Page coordinates of the centre of cell (row, col) of subplot `subplot` (1-based)."""
    suffix = "" if subplot == 1 else str(subplot)
    return page.evaluate(
        """([suffix, row, col]) => {
            const gd = document.getElementById('figure');
            const xa = gd._fullLayout['xaxis' + suffix], ya = gd._fullLayout['yaxis' + suffix];
            const box = gd.getBoundingClientRect();
            return [box.left + xa._offset + xa.l2p(col), box.top + ya._offset + ya.l2p(row)];
        }""",
        [suffix, row, col],
    )


def test_sweep_page_panels_hover_click_refresh_and_exports(
    live: dict[str, Any], page: Any, tmp_path: Path
) -> None:
    app = live["app"]
    storage = app.state.hpscape.optuna()
    lands = build_sweep_landscapes(storage, live["record"])
    started = time.monotonic()
    page.goto(f"{live['base']}/sweeps/{live['sweep_id']}?poll=0.5")
    page.wait_for_function("window.hpscape && window.hpscape.firstRenderMs !== null", timeout=30_000)
    first_render_ms = page.evaluate("window.hpscape.firstRenderMs")
    print(f"first render: {first_render_ms:.0f} ms after navigation start "
          f"({time.monotonic() - started:.2f} s wall)")
    assert first_render_ms < FIRST_RENDER_LIMIT_S * 1000

    # Each panel rendered, with the right number of cells and of coloured cells.
    traces = page.evaluate(
        """() => document.getElementById('figure').data.filter(t => t.type === 'heatmap').map(t => ({
            role: t.meta.role, variant: t.meta.variant, rows: t.z.length, cols: t.z[0].length,
            coloured: t.z.flat().filter(v => v !== null).length }))"""
    )
    panels = [t for t in traces if t["role"] == "panel"]
    assert [p["variant"] for p in panels] == FIG2_TEST.variants
    for panel in panels:
        assert (panel["rows"], panel["cols"]) == (N_LR, N_WD)
        assert panel["coloured"] == int(np.isfinite(lands[panel["variant"]].mean).sum())
    assert [t["role"] for t in traces].count("diff") == 2
    assert page.locator("#figure .hm image").count() == len(traces)  # every heatmap was drawn
    assert page.locator("#coupling tr").count() == 1 + len(FIG2_TEST.variants)

    # Hover over SGD's cell (5, 6): mean ± std, n, state and trial numbers.
    land = lands["sgd"]
    x, y = _cell_point(page, 1, 5, 6)
    page.mouse.move(x, y)
    hover = page.locator(".hoverlayer .hovertext")
    hover.wait_for(timeout=10_000)
    text = hover.text_content()
    assert f"{100 * land.mean[5, 6]:.2f} ± {100 * land.std[5, 6]:.2f} %" in text
    assert "(n=2)" in text and "state: done" in text
    assert all(f"#{n}" in text for n in land.trials[5][6])

    # Clicking the cell draws its learning curves (one per seed) and lists its trials.
    page.mouse.click(x, y)
    page.wait_for_function("document.getElementById('curves').data && "
                           "document.getElementById('curves').data.length === 2", timeout=15_000)
    assert page.locator("#trials tr").count() == 1 + 2
    assert "Trials of sgd" in page.locator("#table-title").inner_text()

    # The screenshot (also the README's): default colour range, a hover and a cell's curves.
    shot = tmp_path / "dashboard.png"
    page.mouse.move(x, y)
    hover.wait_for(timeout=10_000)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 50_000
    (ROOT / "docs").mkdir(exist_ok=True)
    shutil.copyfile(shot, ROOT / "docs" / "dashboard.png")

    # The colour range is adjustable without a reload.
    page.fill("#clip-lo", "3.5")
    page.fill("#clip-hi", "6")
    page.locator("#clip-hi").dispatch_event("change")
    page.wait_for_function("document.getElementById('figure').layout.coloraxis.cmax === 0.06")

    # Live refresh: finishing the running SGD trials shows up by polling, without a page load.
    page.evaluate("window.__noReload = true")
    renders = page.evaluate("window.hpscape.renders")
    study = open_study(storage, live["record"], "sgd", create=False)
    for number in running_trials(study):
        finish_trial(study, number, {"test_error": 0.06, "test_loss": 0.2, "train_loss": 0.1},
                     objective="test_error")
    page.wait_for_function("document.getElementById('progress-text').innerText.startsWith('947 / 968')",
                           timeout=20_000)
    assert page.evaluate("window.__noReload === true && window.hpscape.renders") > renders
    assert page.evaluate("document.getElementById('figure').layout.coloraxis.cmax") == 0.06  # kept

    # Exports: CSV and JSON of the grid, PNG of the figure, and an HTML file that works offline.
    with page.expect_download() as csv_download:
        page.click("button[data-export=csv]")
    lines = Path(csv_download.value.path()).read_text().splitlines()
    assert lines[0].startswith("variant,metric,epoch,lr,weight_decay,mean,std,n") and len(lines) == 1 + 4 * 121
    with page.expect_download() as png_download:
        page.click("#export-png")
    assert Path(png_download.value.path()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with page.expect_download() as html_download:
        page.click("button[data-export=html]")
    exported = tmp_path / "figure.html"
    html_download.value.save_as(exported)

    offline = page.context.browser.new_context()
    offline.set_offline(True)
    requests: list[str] = []
    viewer = offline.new_page()
    viewer.on("request", lambda r: requests.append(r.url))
    viewer.goto(exported.as_uri())
    viewer.wait_for_function("document.querySelector('.js-plotly-plot') && "
                             "document.querySelector('.js-plotly-plot').data.length > 0", timeout=30_000)
    assert viewer.locator(".hm image").count() == len(traces)
    assert [u for u in requests if not u.startswith("file:")] == []
    offline.close()


def test_metric_and_epoch_selectors(live: dict[str, Any], page: Any) -> None:
    page.goto(f"{live['base']}/sweeps/{live['sweep_id']}")
    page.wait_for_function("window.hpscape && window.hpscape.firstRenderMs !== null", timeout=30_000)
    loads = page.evaluate("window.hpscape.loads")
    page.select_option("#epoch", "3")
    page.wait_for_function(f"window.hpscape.loads > {loads} && window.hpscape.state.payload.epoch === 3",
                           timeout=15_000)
    # Other metrics exist at the final epoch only: their per-epoch options are disabled, and
    # switching metric goes back to the final epoch with a message that says why.
    page.select_option("#metric", "test_loss")
    page.wait_for_function("window.hpscape.state.payload.metric === 'test_loss'", timeout=15_000)
    assert page.evaluate("window.hpscape.state.payload.epoch") is None
    assert "recorded at the final epoch only" in page.locator("#message").inner_text()
    assert page.locator("#epoch option[value='3']").is_disabled()
    cbar = page.evaluate("document.getElementById('figure').layout.coloraxis.colorbar.title.text")
    assert cbar == "test loss"


def test_private_server_asks_for_a_token(live: dict[str, Any], browser: Any) -> None:
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    try:
        page.goto(f"{live['base']}/sweeps/{live['sweep_id']}")
        page.locator("#auth").wait_for(state="visible", timeout=15_000)
        assert "needs a token" in page.locator("#message").inner_text()
        page.fill("#token", ADMIN)
        page.click("#token-save")
        page.wait_for_function("window.hpscape.firstRenderMs !== null", timeout=30_000)
        assert page.locator("#auth").is_hidden()
        assert page.evaluate("window.localStorage.getItem('hpscape.token')") == ADMIN
    finally:
        context.close()
    # The only errors are the browser's own notes on the refused (401) requests.
    assert errors and all("401" in e for e in errors), errors

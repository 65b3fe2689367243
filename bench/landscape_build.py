"""How fast the landscape JSON of a big sweep is built, and how fast the sweep page first renders.

    .venv/bin/python bench/landscape_build.py                   # SQLite, 4 studies x 10 000 trials
    .venv/bin/python bench/landscape_build.py --storage postgresql+psycopg://postgres@127.0.0.1:5432/bench
    .venv/bin/python bench/landscape_build.py --browser         # also time the page in headless Chromium
    .venv/bin/python bench/landscape_build.py --cprofile 10     # and where a cold build's time goes

Two sweeps are seeded with synthetic trials (no training; written in bulk, once, and reused): a grid
of 20 lr x 20 weight decays x 25 seeds per variant and a Bayesian sweep of 10 000 scattered points
per variant, both with 4 variants and 10 epochs of intermediate values per trial. Targets: the
landscape JSON in <= 300 ms of server time on the first request (cold: nothing cached), the sweep
page's first render in <= 1 s.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the synthetic-sweep helpers live with the landscape tests

import numpy as np  # noqa: E402
import optuna  # noqa: E402
from optuna.distributions import FloatDistribution  # noqa: E402
from sqlalchemy import select  # noqa: E402
from test_landscape import bulk_add_trials, make_trial, synthetic_error  # noqa: E402

from hpscape.dashboards import landscape_payload  # noqa: E402
from hpscape.landscapes import (  # noqa: E402
    SPEC_ATTR,
    Cell,
    build_sweep_landscapes,
    clear_coupling_cache,
    clear_landscape_cache,
    coupling_metrics,
    coupling_metrics_by_key,
    get_preset,
    list_sweep_studies,
    lr_by_family,
    make_storage,
    open_study,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

VARIANTS = list(get_preset("fig2").variants)  # Figure 2's four panels
EPOCHS = 10
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _grid_spec(name: str, trials: int) -> dict[str, Any]:
    side = 20
    seeds = max(1, trials // (side * side))
    lrs = [2.0**k for k in range(-12, 8)]
    return {
        "name": name, "dataset": "synthetic", "model": "shake_shake_8_2x16d", "variants": VARIANTS,
        "epochs": EPOCHS, "batch_size": 64, "metric": "test_error", "seeds": list(range(seeds)),
        "grid": {"lr": lr_by_family(VARIANTS, lrs),
                 "weight_decay": [0.0] + [0.001 * 2.0**k for k in range(-10, 9)]},
    }


def _bayes_spec(name: str, trials: int) -> dict[str, Any]:
    return {
        "name": name, "dataset": "synthetic", "model": "shake_shake_8_2x16d", "variants": VARIANTS,
        "epochs": EPOCHS, "batch_size": 64, "metric": "test_error", "seeds": [0],
        "bayes": {"sampler": "tpe", "n_trials": trials, "lr": [2**-12, 2**0], "weight_decay": [2**-20, 2**-4]},
    }


def _trials_for(spec: dict[str, Any], variant: str, count: int, rng: np.random.Generator) -> list:
    # The spec dict is used as is (40 000 trials exceed a validated spec's limit; the landscape reads raw JSON).
    if "grid" in spec:
        lrs, wds = spec["grid"]["lr"][variant], spec["grid"]["weight_decay"]
        cells = [Cell(lr, wd, s) for lr in lrs for wd in wds for s in spec["seeds"]][:count]  # (lr, weight_decay)
        dists = {"lr": FloatDistribution(min(lrs), max(lrs), log=True),
                 "weight_decay": FloatDistribution(0.0, max(wds))}
    else:
        lo, hi = spec["bayes"]["lr"], spec["bayes"]["weight_decay"]
        cells = [Cell(float(2 ** rng.uniform(math.log2(lo[0]), math.log2(lo[1]))),
                      float(2 ** rng.uniform(math.log2(hi[0]), math.log2(hi[1]))), k) for k in range(count)]
        dists = {"lr": FloatDistribution(*lo, log=True), "weight_decay": FloatDistribution(*hi, log=True)}
    states = rng.choice(["done", "running", "diverged"], size=len(cells), p=[0.97, 0.02, 0.01])
    return [
        make_trial(variant, cell, state=str(state), epochs=EPOCHS, distributions=dists,
                   value=synthetic_error(variant, cell.y, cell.x) + 0.001 * float(rng.standard_normal()))
        for cell, state in zip(cells, states)
    ]


def seed(storage: Any, name: str, spec: dict[str, Any], trials: int) -> None:
    """Create the sweep's studies once; a rerun finds them complete and reuses them."""
    existing = list_sweep_studies(storage, name)
    if len(existing) == len(VARIANTS) and all(len(s.get_trials(deepcopy=False)) == trials for s in existing.values()):
        return
    if existing:
        sys.exit(f"storage holds an incomplete sweep {name!r}: use a fresh --storage or --workdir")
    rng = np.random.default_rng(0)
    for variant in VARIANTS:
        study = open_study(storage, name, variant)
        study.set_user_attr(SPEC_ATTR, spec)
        started = time.perf_counter()
        bulk_add_trials(study, _trials_for(spec, variant, trials, rng))
        print(f"  seeded {name}/{variant}: {trials} trials in {time.perf_counter() - started:.1f} s", flush=True)


def _time(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - started) * 1000)
    return times, result


def measure_server(storage: Any, name: str, repeats: int) -> dict[str, list[float]]:
    def cold(fn: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            clear_landscape_cache()
            clear_coupling_cache()
            return fn()
        return run

    def payload(figure: bool) -> str:
        body = landscape_payload(build_sweep_landscapes(storage, name), sweep={"id": name}, metric="test_error",
                                 epoch=None, figure=figure)
        return json.dumps(body, allow_nan=False, separators=(",", ":"))

    rows: dict[str, list[float]] = {}
    rows["read + aggregate, cold (every trial)"], lands = _time(cold(lambda: build_sweep_landscapes(storage, name)),
                                                                repeats)
    rows["read + aggregate, warm (changes only)"], _ = _time(lambda: build_sweep_landscapes(storage, name), repeats)
    rows["coupling metrics, cold"], _ = _time(cold(lambda: coupling_metrics_by_key(lands)), repeats)
    rows["coupling metrics, one at a time, cold"], _ = _time(
        cold(lambda: {v: coupling_metrics(land) for v, land in lands.items()}), repeats)
    rows["landscape JSON, cold (target <= 300)"], _ = _time(cold(lambda: payload(False)), repeats)
    rows["landscape JSON, warm"], text = _time(lambda: payload(False), repeats)
    rows["  ... JSON size (kB)"] = [len(text) / 1000]
    rows["landscape JSON + figure, warm"], text = _time(lambda: payload(True), repeats)
    rows["  ... JSON size with figure (kB)"] = [len(text) / 1000]
    rows["epoch 5 (intermediate values), cold"], _ = _time(
        cold(lambda: build_sweep_landscapes(storage, name, epoch=5)), repeats)
    return rows


def _app_with_sweeps(url: str, sweeps: list[tuple[str, dict[str, Any]]]) -> tuple[Any, dict[str, str]]:
    """A controller app (no dispatcher, public reads) with a sweep row for each seeded sweep."""
    from hpscape.service.api.app import create_app
    from hpscape.service.db.models import SweepRow, utcnow
    from hpscape.service.settings import Settings

    app = create_app(Settings(storage=url, public_read=True), dispatch=False)
    state = app.state.hpscape
    state.ensure_ready()
    ids = {}
    with state.sessions() as session:
        for name, spec in sweeps:
            row = session.scalars(select(SweepRow).where(SweepRow.record_name == name)).first()
            if row is None:
                total = sum(len(s.get_trials(deepcopy=False))
                            for s in list_sweep_studies(state.optuna(), name).values())
                row = SweepRow(id=f"bench-{zlib.crc32(name.encode()):08x}", name=name, record_name=name, spec=spec,
                               total_trials=total, status="running", owner="bench", created_at=utcnow(), launches=0)
                session.add(row)
                session.flush()
            ids[name] = row.id
        session.commit()
    return app, ids


def measure_http(app: Any, sweep_id: str, repeats: int) -> dict[str, list[float]]:
    from fastapi.testclient import TestClient

    rows: dict[str, list[float]] = {}
    clear_landscape_cache()
    clear_coupling_cache()
    with TestClient(app) as client:
        for label, params in (("GET /landscape (first: cold, then warm)", {}),
                              ("GET /landscape?figure=true", {"figure": "true"})):
            server: list[float] = []

            def get(params: dict[str, str] = params) -> None:
                response = client.get(f"/api/v1/sweeps/{sweep_id}/landscape", params=params)
                response.raise_for_status()
                server.append(response.json()["server_ms"])

            rows[label], _ = _time(get, repeats)
            rows["  ... server_ms reported" + (" (figure)" if params else "")] = server
    return rows


def measure_browser(app: Any, sweep_id: str, repeats: int) -> dict[str, list[float]]:
    import uvicorn
    from playwright.sync_api import sync_playwright

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}/sweeps/{sweep_id}?poll=3600"
    rows: dict[str, list[float]] = {"first render, cold (new browser profile)": [],
                                    "first render, warm (plotly.js cached)": [], "  ... Plotly.react": []}
    try:
        with sync_playwright() as playwright:
            for _ in range(repeats):
                with tempfile.TemporaryDirectory() as profile:
                    context = playwright.chromium.launch_persistent_context(
                        profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000})
                    for visit in range(3):
                        page = context.new_page()
                        page.goto(url)
                        page.wait_for_function("window.hpscape && window.hpscape.firstRenderMs !== null",
                                               timeout=60_000)
                        first = page.evaluate("window.hpscape.firstRenderMs")
                        rows["  ... Plotly.react"].append(page.evaluate("window.hpscape.lastRenderMs"))
                        # Visit 1 compiles plotly.js; Chromium caches the compiled code for visit 3.
                        key = "first render, cold (new browser profile)" if visit == 0 else (
                            "first render, warm (plotly.js cached)" if visit == 2 else None)
                        if key:
                            rows[key].append(first)
                        page.close()
                    context.close()
    finally:
        server.should_exit = True
        thread.join(timeout=15)
    return rows


def profile_cold(storage: Any, name: str, top: int) -> None:
    """cProfile of one cold landscape JSON (nothing cached): the `top` functions by own time."""
    import cProfile
    import pstats

    clear_landscape_cache()
    clear_coupling_cache()
    profiler = cProfile.Profile()
    profiler.enable()
    json.dumps(landscape_payload(build_sweep_landscapes(storage, name), sweep={"id": name}, metric="test_error",
                                 epoch=None, figure=False), allow_nan=False, separators=(",", ":"))
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = sum(entry[2] for entry in stats.stats.values())  # type: ignore[attr-defined]
    print(f"\n{name}: cold landscape JSON under cProfile, {total * 1000:.0f} ms of own time in all; top {top}:")
    print(f"{'own ms':>9s} {'cum ms':>9s} {'calls':>7s}  function")
    ranked = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)[:top]  # type: ignore[attr-defined]
    for (filename, line, function), (_cc, calls, own, cumulative, _callers) in ranked:
        where = filename.replace(str(ROOT) + "/", "").split("site-packages/")[-1]
        print(f"{own * 1000:9.1f} {cumulative * 1000:9.1f} {calls:7d}  {where}:{line}({function})", flush=True)


def _print(title: str, rows: dict[str, list[float]]) -> None:
    print(f"\n{title}", flush=True)
    print(f"{'step':44s} {'median':>10s} {'min':>10s} {'max':>10s}  n")
    for label, values in rows.items():
        unit = "" if "kB" in label else " ms"
        print(f"{label:44s} {statistics.median(values):10.1f} {min(values):10.1f} {max(values):10.1f}  "
              f"{len(values)}{unit}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--storage", help="SQLAlchemy URL (default: a SQLite file under --workdir)")
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "hpscape-bench"),
                        help="where the default SQLite database is kept between runs")
    parser.add_argument("--trials", type=int, default=10_000, help="trials per study (default 10000)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--browser", action="store_true", help="also time the sweep page in headless Chromium")
    parser.add_argument("--sweeps", default="grid,bayes", help="which seeded sweeps to measure (comma-separated)")
    parser.add_argument("--cprofile", type=int, default=0, metavar="N",
                        help="also profile one cold landscape JSON per sweep and print its N busiest functions")
    args = parser.parse_args()

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    url = args.storage or f"sqlite:///{workdir / f'landscape-{args.trials}.db'}"
    storage = make_storage(url)
    sweeps = [(f"bench-grid-{args.trials}", _grid_spec("bench-grid", args.trials)),
              (f"bench-bayes-{args.trials}", _bayes_spec("bench-bayes", args.trials))]
    print(f"storage: {url.split('@')[-1]}")
    for name, spec in sweeps:
        seed(storage, name, spec, args.trials)
    wanted = set(args.sweeps.split(","))
    sweeps = [(name, spec) for name, spec in sweeps if name.split("-")[1] in wanted]

    for name, _ in sweeps:
        _print(f"{name}: {len(VARIANTS)} studies x {args.trials} trials (server side, in-process)",
               measure_server(storage, name, args.repeats))
    if args.cprofile:
        for name, _ in sweeps:
            profile_cold(storage, name, args.cprofile)
    app, ids = _app_with_sweeps(url, sweeps)
    for name, _ in sweeps:
        _print(f"{name}: through the controller", measure_http(app, ids[name], args.repeats))
    if args.browser:
        from test_dashboard import fig2_state
        from test_landscape import seed_sweep

        from hpscape.landscapes import get_preset

        fig2 = get_preset("fig2", seeds=[0, 1], epochs=20, name="bench-fig2")
        if not list_sweep_studies(storage, "bench-fig2"):
            seed_sweep(storage, fig2, state_for=fig2_state)
        app, ids = _app_with_sweeps(url, [("bench-fig2", fig2.model_dump(mode="json")), *sweeps])
        _print("sweep page, fig2 grid (4 x 11 x 11 cells, 968 trials), headless Chromium",
               measure_browser(app, ids["bench-fig2"], max(1, args.repeats // 2)))
        _print(f"sweep page, {sweeps[0][0]} (4 x 20 x 20 cells, {4 * args.trials} trials)",
               measure_browser(app, ids[sweeps[0][0]], max(1, args.repeats // 2)))


if __name__ == "__main__":
    main()

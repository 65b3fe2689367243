"""REST API under load at scale: a 5 000-trial x 100-epoch sweep, 50 concurrent clients, beside a trivial endpoint.

    python bench/api_load.py                                   # SQLite under --workdir (seeded once, reused)
    python bench/api_load.py --storage postgresql+psycopg://postgres@127.0.0.1:5432/scratch
    python bench/api_load.py --trials 1000 --epochs 20 --duration 5          # a smaller, quicker run
    python bench/api_load.py --profile /tmp/hpscape-profile    # py-spy top functions of the server per phase
    python bench/api_load.py --cprofile 10                     # and cProfile's top 10 of each endpoint's work
    python bench/api_load.py --clients 200 --phases 1,2        # many clients: status keeps flowing, /healthz < 1 s

Seeds a sweep the way workers record one (per-epoch intermediate values, every metric as attrs, the per-epoch
`history` attr of 16 fields, the `hyperparameters` attr; 96 % finished, 1 % diverged, 2 % running, 1 % queued),
written in bulk (`bulk_add_trials` of tests/test_landscape.py), plus `--sweeps` queued ones. Starts `hpscape serve
--no-dispatch` on a free loopback port in its own process, then runs one phase per row, each `--duration` seconds
of `--clients` closed-loop clients (a minimal keep-alive HTTP/1.1 client on asyncio, so the clients cost the
machine less than the server does):

- ``GET /`` (a redirect: no database, no auth) is the baseline; every row's requests/s is also given as a ratio
  of it, measured in the same run;
- sweep status, sweep list, ``/trials?limit=50`` at random offsets (the default, without the per-epoch histories,
  about 33 kB a page; and ``history=true``, about 2.8 MB);
- sweep status again while `--exporters` clients stream ``export.csv`` / ``export.json`` in a loop.

In every phase a tokenless ``/healthz`` on a new connection every 0.25 s (what a load balancer sends) is timed too.

The clients share the machine with the server (and, on a shared machine, with whatever else runs: the load average
is printed before and after). Targets from the "service at scale" issue are printed beside the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # bulk_add_trials lives with the landscape tests
sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_load_tools import profile_reads, profile_top, quantile, run_phase  # noqa: E402

from hpscape.landscapes import get_preset, lr_by_family  # noqa: E402

VARIANTS = get_preset("fig2").variants  # Figure 2's four, from the preset (the registry's only list)


# ---------------------------------------------------------------------------------------------
# The record


def scale_spec(trials: int, epochs: int) -> dict[str, Any]:
    """A grid of 10 lr x 5 weight decays per variant and as many seeds as `trials` needs (4 variants)."""
    seeds = max(1, round(trials / (len(VARIANTS) * 50)))
    lrs = lr_by_family(VARIANTS, [2.0**k for k in range(-9, 1)])  # the adaptive families' 0.1x scale
    return {
        "name": f"scale{trials}x{epochs}", "dataset": "synthetic", "model": "shake_shake_8_2x16d",
        "variants": VARIANTS, "epochs": epochs, "batch_size": 64, "metric": "test_error", "seeds": list(range(seeds)),
        "grid": {"lr": lrs,
                 "weight_decay": [0.0] + [2.0**k for k in range(-12, -8)]},
    }


def worker_trial(spec: Any, variant: str, cell: Any, state: str, rng: random.Random, dists: dict) -> Any:
    """A trial as the Ray workers leave it: `record_epoch` every epoch (intermediate value, metric attrs, history),
    then `finish_trial`; `state` running stops half-way, queued is only enqueued."""
    from optuna.trial import TrialState, create_trial

    from hpscape.landscapes.record import Attr

    params = cell.params
    attrs: dict[str, Any] = {Attr.VARIANT: variant, Attr.SEED: cell.seed, Attr.CELL: cell.key,
                             Attr.HYPERPARAMETERS: spec.trial_values(variant, params),
                             Attr.EPOCHS_BUDGET: spec.epochs}
    if state == "queued":
        return create_trial(state=TrialState.WAITING, params=params, distributions=dists, user_attrs=attrs,
                            system_attrs={"fixed_params": params})
    epochs = spec.epochs
    done = {"running": epochs // 2, "diverged": max(1, epochs // 3)}.get(state, epochs)
    final = 0.04 + 0.3 * rng.random()
    history = []
    for epoch in range(1, done + 1):
        decay = math.exp(-5.0 * epoch / epochs)
        error = final + (0.9 - final) * decay + 0.002 * rng.random()
        history.append({
            "epoch": epoch, "test_error": error, "test_loss": 3.1 * error, "train_loss": 2.2 * error,
            "train_error": 0.6 * error, "lr_t": params["lr"] * 0.5 * (1 + math.cos(math.pi * epoch / epochs)),
            "epoch_seconds": 1.9 + 0.2 * rng.random(), "images_per_s": 5200.0 + 300 * rng.random(),
            "diverged": False, "weight_norm": 11.0 + rng.random(),
            "weight_norm_stages": [3.0 + rng.random(), 4.0 + rng.random(), 5.0 + rng.random()],
            "weight_norm_last": 1.3 + rng.random(), "angular_update": 0.01 * rng.random(),
            "angular_update_theory": 0.01, "grad_norm": 0.4 + rng.random(), "decay_share": 0.3 * rng.random(),
        })
    if state == "diverged":
        history[-1].update({"test_error": None, "test_loss": None, "train_loss": None, "train_error": None,
                            "diverged": True})
    curve = {entry["epoch"]: entry["test_error"] if entry["test_error"] is not None else 1.0 for entry in history}
    last = history[-1]
    attrs.update({Attr.EPOCHS_DONE: done, Attr.HISTORY: history, Attr.WALL_S: 2.0 * done,
                  Attr.IMAGES_PER_S: 5300.0, Attr.WORKER: "bench:1"})
    attrs.update({name: last[name] for name in (Attr.TEST_ERROR, Attr.TEST_LOSS, Attr.TRAIN_LOSS, Attr.TRAIN_ERROR)})
    if state == "running":
        return create_trial(state=TrialState.RUNNING, params=params, distributions=dists, user_attrs=attrs,
                            intermediate_values=curve)
    attrs[Attr.DIVERGED] = state == "diverged"
    return create_trial(state=TrialState.COMPLETE, value=curve[done], params=params, distributions=dists,
                        user_attrs=attrs, intermediate_values=curve)


def seed(storage_url: str, trials: int, epochs: int, sweeps: int) -> tuple[str, str, int]:
    """A token, the id of the big sweep (seeded once per database, then reused) and its number of trials."""
    import optuna
    from optuna.distributions import FloatDistribution
    from sqlalchemy import select
    from test_landscape import bulk_add_trials

    from hpscape.landscapes import SPEC_ATTR, SweepSpec, get_preset
    from hpscape.landscapes.record import make_storage, open_study
    from hpscape.service.auth import create_token
    from hpscape.service.db import SweepRow, make_engine, make_session_factory, upgrade, utcnow
    from hpscape.service.sweeps import submit_sweep

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    engine = make_engine(storage_url)
    upgrade(engine)
    sessions = make_session_factory(engine)
    spec = SweepSpec.model_validate(scale_spec(trials, epochs))
    with sessions() as session:
        token = create_token(session, f"bench-{os.getpid()}-{int(time.time())}", admin=True)
        row = session.scalars(select(SweepRow).where(SweepRow.name == spec.name, SweepRow.status == "running")
                              ).first()
        queued = session.query(SweepRow).filter(SweepRow.status == "queued").count()
        for _ in range(max(0, sweeps - queued)):
            submit_sweep(session, get_preset("quick", name="queued"), owner="bench")
        if row is not None:
            sweep_id = row.id
            session.commit()
            engine.dispose()
            print(f"reusing sweep {sweep_id} ({spec.total_trials()} trials x {epochs} epochs)", flush=True)
            return token, sweep_id, spec.total_trials()
        row, _ = submit_sweep(session, spec, owner="bench")
        row.status, row.started_at, row.launches, row.host = "running", utcnow(), 1, "bench"
        sweep_id, record_name = row.id, row.record_name
        session.commit()
    optuna_storage = make_storage(storage_url)
    rng = random.Random(0)
    for variant in spec.variants:
        started = time.perf_counter()
        study = open_study(optuna_storage, record_name, variant)
        study.set_user_attr(SPEC_ATTR, spec.model_dump(mode="json"))
        cells = spec.cells(variant)
        lrs = spec.axis_values("lr", variant)
        dists = {"lr": FloatDistribution(min(lrs), max(lrs), log=True),
                 "weight_decay": FloatDistribution(0.0, max(spec.axis_values("weight_decay", variant)))}
        states = rng.choices(["done", "diverged", "running", "queued"], weights=[96, 1, 2, 1], k=len(cells))
        for start in range(0, len(cells), 250):  # bounded memory: 250 trials of 100-epoch histories at a time
            bulk_add_trials(study, [worker_trial(spec, variant, cell, state, rng, dists)
                                    for cell, state in zip(cells[start:start + 250], states[start:start + 250])])
        print(f"  seeded {record_name}/{variant}: {len(cells)} trials in {time.perf_counter() - started:.1f} s",
              flush=True)
    optuna_storage.engine.dispose()
    engine.dispose()
    return token, sweep_id, spec.total_trials()


# ---------------------------------------------------------------------------------------------
# The server


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(storage: str, port: int, status_cache_s: float, workdir: Path) -> subprocess.Popen:
    import httpx

    env = {k: v for k, v in os.environ.items() if not k.startswith("HPSCAPE_")}
    env.update(HPSCAPE_STORAGE=storage, HPSCAPE_RUNS_DIR=str(workdir / "runs"),
               HPSCAPE_STATUS_CACHE_S=str(status_cache_s), PYTHONPATH=str(ROOT))
    server = subprocess.Popen(
        [sys.executable, "-m", "hpscape.service.cli", "serve", "--no-dispatch", "--port", str(port),
         "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(workdir / "server.log", "wb"),
        start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {(workdir / 'server.log').read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit("the server did not answer /healthz within 60 s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", help="database URL to seed and serve (default: SQLite under --workdir); use a "
                        "scratch database: the benchmark adds sweeps and a token to it")
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "hpscape-bench-api"),
                        help="where the default SQLite database is kept between runs")
    parser.add_argument("--trials", type=int, default=5000, help="trials of the big sweep (4 variants)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--exporters", type=int, default=8, help="clients streaming exports in the last phase")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per phase")
    parser.add_argument("--warmup", type=float, default=0.0,
                        help="seconds of the same load before each phase's measured seconds, not counted (0: the "
                             "phase starts on a cold server, and its first requests fill the caches)")
    parser.add_argument("--sweeps", type=int, default=200, help="queued sweeps besides the one with a record")
    parser.add_argument("--status-cache-s", type=float, default=1.0,
                        help="the server's HPSCAPE_STATUS_CACHE_S (0: every status request reads Optuna)")
    parser.add_argument("--profile", metavar="DIR", help="record the server with py-spy (on PATH) in each phase and "
                        "print its busiest functions (samples of the thread holding the GIL: where its CPU goes)")
    parser.add_argument("--phases", default="0,1,2,3,4,5", help="which phases to run (comma-separated row numbers)")
    parser.add_argument("--cprofile", type=int, default=0, metavar="N", help="after the load, cProfile each endpoint's "
                        "work past HTTP in this process and print its N busiest functions (own time per request)")
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 130))
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    storage = args.storage or f"sqlite:///{workdir / f'api-{args.trials}x{args.epochs}.db'}"
    load_before = os.getloadavg()
    console.print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f} "
                  f"on {os.cpu_count()} CPU(s); seeding {storage.split('@')[-1]} ...")
    token, sweep_id, total = seed(storage, args.trials, args.epochs, args.sweeps)
    base = f"/api/v1/sweeps/{sweep_id}"
    phases: list[tuple[str, Callable[[random.Random], str], int, str]] = [
        ("GET / (trivial: a redirect)", lambda rng: "/", 0, "baseline"),
        (f"GET sweep status ({total} trials)", lambda rng: base, 0, "p99 <= 50 ms, >= 50 % of trivial"),
        ("GET /api/v1/sweeps?limit=50", lambda rng: "/api/v1/sweeps?limit=50", 0, ""),
        ("GET /trials?limit=50 (random offset)",
         lambda rng: f"{base}/trials?limit=50&offset={rng.randrange(0, total, 50)}", 0, "p99 <= 100 ms"),
        ("GET /trials?limit=50&history=true",
         lambda rng: f"{base}/trials?limit=50&history=true&offset={rng.randrange(0, total, 50)}", 0, ""),
        (f"GET sweep status, {args.exporters} exports streaming", lambda rng: base, args.exporters,
         "p99 <= 200 ms"),
    ]
    spy = shutil.which("py-spy") if args.profile else None
    if args.profile and spy is None:
        console.print("[yellow]py-spy is not on PATH: no profiles[/]")
    chosen = sorted({0, *(int(k) for k in args.phases.split(","))})  # the baseline always runs
    if chosen[-1] >= len(phases):
        parser.error(f"--phases: rows 0 to {len(phases) - 1}")
    phases = [phases[k] for k in chosen]
    results = []
    port = free_port()
    server = start_server(storage, port, args.status_cache_s, workdir)
    try:
        for k, (label, path_of, exporters, _) in enumerate(phases):
            console.print(f"{label}: {args.clients} clients for {args.duration:g} s ...")
            recorder = None
            if spy is not None:
                Path(args.profile).mkdir(parents=True, exist_ok=True)
                recorder = subprocess.Popen(
                    [spy, "record", "-p", str(server.pid), "-d", str(int(args.duration) + 1), "-r", "100",
                     "--nonblocking", "--gil", "-f", "raw", "-o", str(Path(args.profile) / f"phase{k}.raw")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            main_result, export_result = asyncio.run(run_phase(
                port, token, args.clients, args.duration, path_of, exporters,
                (f"{base}/export.csv", f"{base}/export.json"), args.warmup,
                lambda: cpu_seconds(server.pid)))
            if recorder is not None:
                recorder.wait(60)
            results.append((main_result, export_result))
    finally:
        os.killpg(server.pid, 15)
        server.wait(30)
    load_after = os.getloadavg()

    table = Table(title=f"hpscape API: {args.clients} closed-loop clients per phase, {args.duration:g} s each, "
                        f"{storage.split(':', 1)[0].split('+')[0]}, a {total}-trial x {args.epochs}-epoch sweep, "
                        f"status cache {args.status_cache_s:g} s, {os.cpu_count()} CPU(s) shared by server and clients")
    for column in ("phase", "requests", "errors", "req/s", "x trivial", "p50 ms", "p99 ms", "server CPU ms/req",
                   "healthz max ms", "target"):
        table.add_column(column, justify="left" if column in ("phase", "target") else "right")
    trivial_rate = len(results[0][0].latencies) / results[0][0].elapsed
    for (label, _, _, target), (result, _) in zip(phases, results):
        rate = len(result.latencies) / result.elapsed
        served = len(result.latencies) + result.errors
        table.add_row(label, str(len(result.latencies)), str(result.errors), f"{rate:.0f}",
                      f"{rate / trivial_rate:.2f}", f"{quantile(result.latencies, 0.5) * 1000:.1f}",
                      f"{quantile(result.latencies, 0.99) * 1000:.1f}",
                      f"{result.server_cpu / max(1, served) * 1000:.2f}",
                      f"{max(result.health, default=math.nan) * 1000:.0f} ({len(result.health)})", target)
    console.print(table)
    exports = results[-1][1]
    if phases[-1][2]:
        console.print(f"exports meanwhile: {len(exports.latencies)} finished, {exports.errors} errors, "
                      f"{exports.bytes / 1e6 / max(exports.elapsed, 1e-9):.1f} MB/s streamed by {args.exporters} "
                      "clients "
                      f"(server CPU in that phase: {results[-1][0].server_cpu:.1f} s)")
    console.print("healthz max: the slowest tokenless /healthz (a new connection each, every 0.25 s) during the "
                  "phase, and how many were sent; inf: one failed. Target: under 1000 ms throughout.")
    console.print(f"load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f} "
                  f"on {os.cpu_count()} CPU(s)")
    if args.cprofile:
        for label, per_call, calls, lines in profile_reads(storage, sweep_id, args.cprofile):
            console.print(f"\n[bold]{label}[/]: {per_call * 1000:.1f} ms per request in-process ({calls} timed); "
                          f"cProfile top {args.cprofile} by own time, per request:")
            console.print(f"{'own ms':>8s} {'cum ms':>8s} {'calls':>8s}  function", highlight=False)
            for line in lines:
                console.print(line, highlight=False, markup=False)
    if spy is not None:
        for k, (label, *_rest) in enumerate(phases):
            raw = Path(args.profile) / f"phase{k}.raw"
            if not raw.exists():
                continue
            console.print(f"\n[bold]{label}[/]: the server's busiest functions (py-spy samples: own, under it)")
            for own, under, frame in profile_top(raw):
                console.print(f"  {own:6d} {under:6d}  {frame[:150]}")


if __name__ == "__main__":
    main()

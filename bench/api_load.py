"""REST API under load: requests/s and p50/p99 latency of sweep status and sweep list, 50 concurrent clients.

    python bench/api_load.py                                   # SQLite in a temporary directory, 10 s
    python bench/api_load.py --storage postgresql+psycopg://postgres@127.0.0.1:5432/scratch --duration 20
    python bench/api_load.py --status-cache-s 0                # every status request reads the Optuna record

Seeds a database (a finished `quick`-sized sweep with 125 trials x 15 epochs recorded, plus `--sweeps` queued ones),
starts `hpscape serve --no-dispatch` on a free loopback port in its own process, then runs `--clients` asyncio clients
(httpx) that each alternate at random between GET /api/v1/sweeps/{id} and GET /api/v1/sweeps?limit=50 for
`--duration` seconds. The clients share the machine with the server: on a small machine they compete for the CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

ENDPOINTS = ("status", "list")


def seed(storage: str, sweeps: int) -> tuple[str, str]:
    """A token and the id of a sweep whose record holds the `quick` preset's 125 trials with 15 epochs each."""
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from hpscape.landscapes import get_preset
    from hpscape.landscapes.record import Attr, make_storage, open_study
    from hpscape.service.auth import create_token
    from hpscape.service.db import SweepRow, make_engine, make_session_factory, upgrade, utcnow
    from hpscape.service.sweeps import submit_sweep

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    engine = make_engine(storage)
    upgrade(engine)
    sessions = make_session_factory(engine)
    spec = get_preset("quick", name="bench")
    with sessions() as session:
        token = create_token(session, f"bench-{os.getpid()}-{int(time.time())}", admin=True)
        row, _ = submit_sweep(session, spec, owner="bench")
        for _ in range(sweeps):
            submit_sweep(session, get_preset("quick", name="queued"), owner="bench")
        finished = session.get(SweepRow, row.id)
        finished.status, finished.started_at, finished.finished_at = "succeeded", utcnow(), utcnow()
        session.commit()
    optuna_storage = make_storage(storage)
    rng = random.Random(0)
    for variant in spec.variants:
        study = open_study(optuna_storage, row.record_name, variant)
        cells = spec.cells(variant)
        distributions = {"lr": FloatDistribution(min(c.y for c in cells), max(c.y for c in cells), log=True),
                         "weight_decay": FloatDistribution(min(c.x for c in cells), max(c.x for c in cells), log=True)}
        for cell in cells:
            curve = {epoch: 2.3 / epoch + rng.random() * 0.1 for epoch in range(1, spec.epochs + 1)}
            final = curve[spec.epochs]
            study.add_trial(create_trial(
                state=TrialState.COMPLETE, value=final, params=cell.params,
                distributions=distributions, intermediate_values=curve,
                user_attrs={Attr.VARIANT: variant, Attr.SEED: cell.seed, Attr.CELL: cell.key,
                            Attr.EPOCHS_BUDGET: spec.epochs, Attr.EPOCHS_DONE: spec.epochs, Attr.DIVERGED: False,
                            Attr.TEST_LOSS: final, Attr.TEST_ERROR: 0.1, Attr.TRAIN_LOSS: final,
                            Attr.WALL_S: 10.0, Attr.IMAGES_PER_S: 5000.0},
            ))
    engine.dispose()
    return token, row.id


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(storage: str, port: int, status_cache_s: float, workdir: Path) -> subprocess.Popen:
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


async def load(base: str, token: str, sweep_id: str, clients: int, duration: float) -> dict[str, dict]:
    paths = {"status": f"/api/v1/sweeps/{sweep_id}", "list": "/api/v1/sweeps?limit=50"}
    latencies: dict[str, list[float]] = {name: [] for name in ENDPOINTS}
    errors: dict[str, int] = {name: 0 for name in ENDPOINTS}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, limits=limits,
                                 timeout=30) as http:
        for name in ENDPOINTS:  # warm-up: imports, caches, connection pool
            for _ in range(3):
                (await http.get(paths[name])).raise_for_status()
        stop_at = time.perf_counter() + duration

        async def client(seed: int) -> None:
            rng = random.Random(seed)
            while time.perf_counter() < stop_at:
                name = rng.choice(ENDPOINTS)
                started = time.perf_counter()
                try:
                    response = await http.get(paths[name])
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies[name].append(time.perf_counter() - started)
                else:
                    errors[name] += 1

        started = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(clients)))
        elapsed = time.perf_counter() - started
    return {name: {"latencies": latencies[name], "errors": errors[name], "elapsed": elapsed} for name in ENDPOINTS}


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", help="database URL to seed and serve (default: SQLite in a temporary dir); "
                        "use a scratch database: the benchmark adds sweeps and a token to it")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load")
    parser.add_argument("--sweeps", type=int, default=200, help="queued sweeps besides the one with a record")
    parser.add_argument("--status-cache-s", type=float, default=1.0,
                        help="the server's HPSCAPE_STATUS_CACHE_S (0: every status request reads Optuna)")
    args = parser.parse_args()

    console = Console(width=max(Console().width, 110))
    with tempfile.TemporaryDirectory(prefix="hpscape-bench-") as tmp:
        workdir = Path(tmp)
        storage = args.storage or f"sqlite:///{workdir / 'bench.db'}"
        console.print(f"seeding {storage.split('@')[-1]} ...")
        token, sweep_id = seed(storage, args.sweeps)
        port = free_port()
        server = start_server(storage, port, args.status_cache_s, workdir)
        try:
            console.print(f"{args.clients} clients for {args.duration:.0f} s against http://127.0.0.1:{port} ...")
            cpu_before = cpu_seconds(server.pid)
            results = asyncio.run(load(f"http://127.0.0.1:{port}", token, sweep_id, args.clients, args.duration))
            server_cpu = cpu_seconds(server.pid) - cpu_before
        finally:
            os.killpg(server.pid, 15)
            server.wait(30)

    backend = storage.split(":", 1)[0].split("+")[0]
    table = Table(title=f"hpscape API, {args.clients} concurrent clients, {args.duration:.0f} s, {backend}, "
                        f"status cache {args.status_cache_s:g} s, {os.cpu_count()} CPU(s) shared by server and clients")
    for column in ("endpoint", "requests", "errors", "requests/s", "p50 ms", "p99 ms", "mean ms"):
        table.add_column(column, justify="right" if column != "endpoint" else "left")
    labels = {"status": "GET /api/v1/sweeps/{id} (125 trials)", "list": "GET /api/v1/sweeps?limit=50"}
    for name in ENDPOINTS:
        result = results[name]
        values = result["latencies"]
        table.add_row(labels[name], str(len(values)), str(result["errors"]), f"{len(values) / result['elapsed']:.0f}",
                      f"{quantile(values, 0.50) * 1000:.1f}", f"{quantile(values, 0.99) * 1000:.1f}",
                      f"{statistics.fmean(values) * 1000 if values else float('nan'):.1f}")
    console.print(table)
    served = sum(len(r["latencies"]) + r["errors"] for r in results.values())
    console.print(f"server process CPU: {server_cpu:.1f} s for {served} requests (incl. 6 warm-up) = "
                  f"{server_cpu / max(1, served) * 1000:.1f} ms per request; load average "
                  f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPU(s)")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()

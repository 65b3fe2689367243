"""Many clients at once against a real `hpscape serve` on a loopback port: every request is answered (no 5xx, no
timeout) and /healthz answers throughout.

Before the fix each request's session held a pooled connection from authentication until its response was sent,
and the 40 worker threads equalled the pool's 40 connections: at 80-100 clients threads waited for connections held
by requests waiting for threads, until the pool's 30 s timeout. This is a functional check (it does not hang, it
does not fail); the speed is measured by bench/api_load.py.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ADMIN_TOKEN = "concurrency-test-admin-token-0123456789"
TINY = {"name": "tiny", "dataset": "synthetic", "model": "shake_shake_8_2x16d", "variants": ["sgd", "sgdw"],
        "epochs": 2, "batch_size": 32, "grid": {"lr": [0.01, 0.1], "weight_decay": [0.0, 0.001]}}
REQUEST_TIMEOUT_S = 30.0  # generous: an answer later than this counts as none
HEALTH_BOUND_S = 25.0  # under the request pool's 30 s timeout, which the old /healthz waited on (16-24 s, 100 clients)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def serve(tmp_path):
    """serve(storage_url, **HPSCAPE_settings) -> base URL of a started `hpscape serve --no-dispatch`."""
    started: list[subprocess.Popen] = []

    def start(storage_url: str, **settings: str) -> str:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HPSCAPE_", "RAY_ADDRESS"))}
        env.update(HPSCAPE_STORAGE=storage_url, HPSCAPE_RUNS_DIR=str(tmp_path / "runs"),
                   HPSCAPE_DATA_DIR=str(tmp_path / "data"), HPSCAPE_ADMIN_TOKEN=ADMIN_TOKEN,
                   **{f"HPSCAPE_{k.upper()}": v for k, v in settings.items()})
        log = open(tmp_path / f"serve-{port}.log", "wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "hpscape.service.cli", "serve", "--no-dispatch", "--port", str(port),
             "--log-level", "warning"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        started.append(process)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / f"serve-{port}.log").read_text()
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    return base
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError("the controller did not answer /healthz within 60 s")

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@dataclass
class Load:
    elapsed_s: float = 0.0
    answers: dict[str, list[float]] = field(default_factory=dict)  # endpoint -> latencies of 200s
    failures: Counter = field(default_factory=Counter)  # (endpoint, status or exception) -> count
    answered_clients: int = 0
    probes: list[tuple[float, int | str]] = field(default_factory=list)  # tokenless /healthz every 0.25 s

    def summary(self, clients: int) -> str:
        def q(values: list[float], p: float) -> float:
            ordered = sorted(values)
            return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000 if ordered else float("nan")

        total = sum(len(v) for v in self.answers.values())
        parts = [f"{clients} clients, {self.elapsed_s:.1f} s: {total / self.elapsed_s:.0f} answers/s"]
        for name, values in self.answers.items():
            parts.append(f"{name} {len(values) / self.elapsed_s:.0f}/s p50 {q(values, .5):.0f} ms "
                         f"p99 {q(values, .99):.0f} ms")
        probe_s = [t for t, _ in self.probes]
        parts.append(f"tokenless healthz probes {len(self.probes)}: p50 {q(probe_s, .5):.0f} ms, "
                     f"max {max(probe_s, default=float('nan')) * 1000:.0f} ms")
        return "; ".join(parts)


async def _load(base: str, token: str, sweep_id: str, clients: int, duration_s: float) -> Load:
    paths = {"status": f"/api/v1/sweeps/{sweep_id}", "list": "/api/v1/sweeps?limit=50", "healthz": "/healthz"}
    load = Load(answers={name: [] for name in paths})
    stop_at = time.perf_counter() + duration_s
    answered: set[int] = set()
    # One TLS context for all (the URL is plain http): httpx builds one per client otherwise, 200 of them costing
    # seconds of the clients' CPU.
    tls = ssl.create_default_context()

    async def client(number: int) -> None:
        rng = random.Random(number)
        # One connection per client, as separate programs would have (a shared pool would queue in the client).
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"},
                                     timeout=REQUEST_TIMEOUT_S, verify=tls) as http:
            while time.perf_counter() < stop_at:
                name = rng.choice(list(paths))
                started = time.perf_counter()
                try:
                    response = await http.get(paths[name])
                except httpx.HTTPError as exc:
                    load.failures[(name, type(exc).__name__)] += 1
                    continue
                if response.status_code == 200:
                    load.answers[name].append(time.perf_counter() - started)
                    answered.add(number)
                else:
                    load.failures[(name, response.status_code)] += 1

    async def prober() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=REQUEST_TIMEOUT_S, verify=tls) as http:
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                try:
                    outcome: int | str = (await http.get("/healthz")).status_code
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                load.probes.append((time.perf_counter() - started, outcome))
                await asyncio.sleep(0.25)

    started = time.perf_counter()
    await asyncio.gather(prober(), *(client(i) for i in range(clients)))
    load.elapsed_s = time.perf_counter() - started
    load.answered_clients = len(answered)
    return load


def seeded_sweep(base: str, storage_url: str, fake_progress) -> str:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for _ in range(20):  # a page of sweeps to list
        response = httpx.post(f"{base}/api/v1/sweeps", json=TINY, headers=headers, timeout=30)
        assert response.status_code == 202, response.text
    sweep = response.json()
    fake_progress(storage_url, sweep["record_name"], TINY, complete=2, running=1)
    return sweep["id"]


def check(load: Load, clients: int) -> None:
    print(load.summary(clients))
    assert not load.failures, f"requests without a 200 answer: {dict(load.failures)}; {load.summary(clients)}"
    assert load.answered_clients == clients, f"only {load.answered_clients} of {clients} clients got an answer"
    assert load.probes and all(outcome == 200 for _, outcome in load.probes), load.probes
    slowest = max(t for t, _ in load.probes)
    assert slowest < HEALTH_BOUND_S, f"/healthz took {slowest:.1f} s under load; {load.summary(clients)}"


def test_two_hundred_concurrent_clients_all_get_answers_and_health_answers_throughout(serve, storage_url,
                                                                                      fake_progress):
    base = serve(storage_url, status_cache_s="1")
    sweep_id = seeded_sweep(base, storage_url, fake_progress)
    check(asyncio.run(_load(base, ADMIN_TOKEN, sweep_id, clients=200, duration_s=8.0)), 200)


@pytest.mark.postgres
def test_a_pool_far_smaller_than_the_clients_queues_them_instead_of_deadlocking(serve, postgres_url, fake_progress):
    # Two request slots and connections for 80 clients: requests wait for a slot, none for a connection.
    base = serve(postgres_url, db_pool_size="2", status_cache_s="0", auth_cache_s="0")
    sweep_id = seeded_sweep(base, postgres_url, fake_progress)
    check(asyncio.run(_load(base, ADMIN_TOKEN, sweep_id, clients=80, duration_s=6.0)), 80)

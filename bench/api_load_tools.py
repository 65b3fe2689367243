"""The clients, timings and profiles of bench/api_load.py: a minimal keep-alive HTTP/1.1 client on asyncio (so the
clients cost the machine less than the server does), closed-loop phases, py-spy and cProfile summaries."""

from __future__ import annotations

import asyncio
import collections
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# The clients


class Connection:
    """One keep-alive HTTP/1.1 connection: GET only, Content-Length or chunked bodies, read and dropped."""

    def __init__(self, port: int, token: str | None) -> None:
        self.port = port
        self.auth = f"Authorization: Bearer {token}\r\n" if token else ""
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.received = 0  # body bytes read so far, over every response (a stream's progress while it runs)

    async def get(self, path: str) -> tuple[int, int]:
        """(status, body bytes); reconnects once if the server closed an idle connection."""
        for attempt in range(2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            try:
                return await self._get(path)
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _get(self, path: str) -> tuple[int, int]:
        assert self.reader is not None and self.writer is not None
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{self.auth}\r\n".encode())
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
        size = 0
        if headers.get("transfer-encoding") == "chunked":
            while True:
                length = int((await self.reader.readline()).split(b";")[0], 16)
                await self.reader.readexactly(length + 2)
                size += length
                self.received += length
                if length == 0:
                    break
        else:
            size = int(headers.get("content-length", "0"))
            await self.reader.readexactly(size)
            self.received += size
        if headers.get("connection") == "close":
            self.close()
        return status, size

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    bytes: int = 0
    elapsed: float = 0.0
    server_cpu: float = 0.0
    health: list[float] = field(default_factory=list)  # tokenless /healthz every 0.25 s meanwhile (failures: inf)


async def run_phase(port: int, token: str, clients: int, duration: float, path_of: Callable[[random.Random], str],
                    exporters: int = 0, export_paths: tuple[str, ...] = (), warmup: float = 0.0,
                    server_cpu: Callable[[], float] | None = None) -> tuple[Result, Result]:
    """`clients` closed-loop clients on `path_of(rng)` for `duration` s (and `exporters` streaming exports), after
    `warmup` s of the same load that are not counted (the server's caches fill from cold there); `server_cpu()`
    (the server's CPU seconds so far) is read when the counted seconds start and end."""
    main, exports = Result(), Result()
    warm = Connection(port, token)
    for _ in range(5):
        await warm.get(path_of(random.Random(0)))
    warm.close()
    measure_from = time.perf_counter() + warmup
    stop_at = measure_from + duration

    async def client(seed: int) -> None:
        rng, connection = random.Random(seed), Connection(port, token)
        try:
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                try:
                    status, _ = await connection.get(path_of(rng))
                except (OSError, asyncio.IncompleteReadError):
                    status = 0
                if started < measure_from:
                    continue
                if status in (200, 307):
                    main.latencies.append(time.perf_counter() - started)
                else:
                    main.errors += 1
        finally:
            connection.close()

    streams: list[Connection] = []

    async def exporter(k: int) -> None:
        connection = Connection(port, token)
        streams.append(connection)
        try:
            while True:
                started = time.perf_counter()
                status, _size = await connection.get(export_paths[k % len(export_paths)])
                if status == 200:
                    exports.latencies.append(time.perf_counter() - started)
                else:
                    exports.errors += 1
        finally:
            connection.close()

    async def prober() -> None:
        # What a load balancer sees: a fresh connection, no token, a 200 wanted.
        while time.perf_counter() < stop_at:
            connection = Connection(port, None)
            started = time.perf_counter()
            try:
                status, _ = await asyncio.wait_for(connection.get("/healthz"), timeout=30)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
                status = 0
            finally:
                connection.close()
            if started >= measure_from:
                main.health.append(time.perf_counter() - started if status == 200 else math.inf)
            await asyncio.sleep(0.25)

    background = [asyncio.create_task(exporter(k)) for k in range(exporters)]
    if background:
        await asyncio.sleep(1.0)  # let the streams start
    received_before = [connection.received for connection in streams]
    started = time.perf_counter()
    cpu_at_start: list[float] = []

    async def cpu_mark() -> None:
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        if server_cpu is not None:
            cpu_at_start.append(server_cpu())

    await asyncio.gather(prober(), cpu_mark(), *(client(i) for i in range(clients)))
    if server_cpu is not None:
        main.server_cpu = server_cpu() - cpu_at_start[0]
    main.elapsed = exports.elapsed = time.perf_counter() - max(started, measure_from)
    exports.bytes = sum(c.received for c in streams) - sum(received_before)  # what streamed while the clients ran
    for task in background:
        task.cancel()
    await asyncio.gather(*background, return_exceptions=True)
    return main, exports


# ---------------------------------------------------------------------------------------------
# Profiles (optional): py-spy's samples of the server, summed per function


_IDLE = ("select (", "wait (", "Condition.wait", "Queue.get", "_worker (", "Event.wait", "sleep (")


def profile_top(raw: Path, top: int = 12) -> list[tuple[int, int, str]]:
    """(own samples, samples under it, function) for the busiest functions of a py-spy raw profile (idle waits
    left out)."""
    own: collections.Counter[str] = collections.Counter()
    under: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not frames or any(idle in frames[-1] for idle in _IDLE):
            continue
        own[frames[-1]] += int(count)
        for frame in set(frames):
            under[frame] += int(count)
    hpscape = [(n, f) for f, n in under.items() if ("service/" in f or "landscapes/" in f) and "cli/" not in f]
    rows = [(n, under[f], f) for f, n in own.most_common(top)]
    rows += [(own[f], n, f) for n, f in sorted(hpscape, reverse=True)[:top]]
    return rows


def profile_reads(storage_url: str, sweep_id: str, top: int) -> list[tuple[str, float, int, list[str]]]:
    """(label, seconds, calls, top-`top` lines by own time) of cProfile over what each endpoint does past HTTP: the
    same functions the handlers call, in this process, one thread (the server's threads are not profiled)."""
    import cProfile
    import pstats

    from hpscape.landscapes.record import make_storage
    from hpscape.service.api.views import (
        json_export_chunks,
        row_spec,
        sweep_detail,
        sweep_out,
        sweep_summary_of,
        trial_list_json,
    )
    from hpscape.service.db import SweepRow, make_engine, make_session_factory
    from hpscape.service.progress import csv_chunks, trial_page
    from hpscape.service.sweeps import list_sweeps

    engine = make_engine(storage_url)
    sessions = make_session_factory(engine)
    storage = make_storage(storage_url)
    with sessions() as session:
        row = session.get(SweepRow, sweep_id)
        assert row is not None
        session.expunge(row)
    spec = row_spec(row)
    rng = random.Random(1)

    def status() -> Any:
        return sweep_detail(row, sweep_summary_of(storage, row)).model_dump_json()

    def listing() -> Any:
        with sessions() as session:
            rows, total = list_sweeps(session, limit=50)
            return [sweep_out(r).model_dump_json() for r in rows], total

    def trials(history: bool = True) -> Any:
        offset = rng.randrange(0, row.total_trials, 50)
        items, total = trial_page(storage, row.record_name, spec, offset=offset, limit=50, history=history)
        return trial_list_json(items, total=total, limit=50, offset=offset)

    def export_csv() -> int:
        return sum(len(chunk) for chunk in csv_chunks(storage, row.record_name, spec))

    def export_json() -> int:
        return sum(len(chunk) for chunk in json_export_chunks(storage, row))

    status()  # the summary of finished trials is kept between polls: profile the steady state
    cases = [("GET sweep status (no status cache)", status, 50), ("GET /api/v1/sweeps?limit=50", listing, 50),
             ("GET /trials?limit=50 (history=false, the default)", lambda: trials(history=False), 50),
             ("GET /trials?limit=50&history=true", trials, 50),
             ("GET export.csv (whole sweep)", export_csv, 1),
             ("GET export.json (whole sweep)", export_json, 1)]
    out = []
    for label, fn, calls in cases:
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        for _ in range(calls):
            fn()
        profiler.disable()
        elapsed = time.perf_counter() - started
        stats = pstats.Stats(profiler)
        ranked = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)[:top]  # type: ignore[attr-defined]
        lines = []
        for (filename, line, name), (_cc, ncalls, own, cumulative, _callers) in ranked:
            where = filename.replace(str(ROOT) + "/", "").split("site-packages/")[-1]
            lines.append(f"{own / calls * 1000:8.2f} {cumulative / calls * 1000:8.2f} {ncalls // calls:8d}  "
                         f"{where}:{line}({name})")
        out.append((label, elapsed / calls, calls, lines))
    storage.engine.dispose()
    engine.dispose()
    return out


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

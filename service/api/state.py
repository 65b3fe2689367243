"""What one app instance holds: settings, the database engines, the Optuna storage, the dispatcher, a small cache.

Connections and threads cannot wait on each other: a request takes one of `settings.db_pool_size` database slots
(an async semaphore: waiting for one holds neither a thread nor a connection) before it authenticates or opens its
session, uses at most one connection at a time while it holds the slot, and the request engine's pool has a
connection for every slot (plus a few for start-up). So a request that holds a slot finds a connection at once;
the dispatcher and `/healthz` use engines of their own, and `/healthz` threads of its own too.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

import anyio
from anyio.lowlevel import RunVar
from optuna.storages import BaseStorage
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from hpscape.landscapes.lru import LRU
from hpscape.service.auth import seed_admin_token
from hpscape.service.db import make_engine, make_session_factory, upgrade
from hpscape.service.queue import Dispatcher, Launcher, SubprocessLauncher
from hpscape.service.recorded import import_recorded_sweeps
from hpscape.service.settings import Settings

__all__ = ["RECORDED_SCAN_S", "ServiceState"]

T = TypeVar("T")

# Connections beyond the request slots: start-up (migrations, the admin token), `ServiceState.sessions()` users
# outside requests. The dispatcher and /healthz have engines of their own.
RESERVED_CONNECTIONS = 4
HEALTH_THREADS = 2
# How often listing sweeps looks for sweeps recorded outside the server (`hpscape run`): a scan is two small queries,
# and a sweep someone just started by hand shows up in the list within this many seconds.
RECORDED_SCAN_S = 10.0
# Per event loop (anyio's primitives belong to one): each app's request slots and health threads.
_SLOTS: RunVar[WeakKeyDictionary[ServiceState, anyio.Semaphore]] = RunVar("hpscape_db_slots")
_HEALTH_LIMITERS: RunVar[WeakKeyDictionary[ServiceState, anyio.CapacityLimiter]] = RunVar("hpscape_health_threads")


def loop_local(var: RunVar[WeakKeyDictionary[ServiceState, T]], state: ServiceState, make: Callable[[], T]) -> T:
    """`state`'s value in `var` for the running event loop, made by `make()` the first time there (anyio's
    primitives belong to one loop, and tests serve an app from more than one)."""
    by_state = var.get(None)
    if by_state is None:
        by_state = WeakKeyDictionary()
        var.set(by_state)
    value = by_state.get(state)
    if value is None:
        value = by_state[state] = make()
    return value


class _TTLCache:
    """A second of memory for reads that many clients poll (sweep progress); one computation per key at a time."""

    def __init__(self, max_entries: int = 1024) -> None:
        self._entries: dict[Any, tuple[float, Any]] = {}
        self._computing: dict[Any, threading.Lock] = {}
        self._lock = threading.Lock()
        self._max = max_entries

    def _fresh(self, key: Any) -> tuple[bool, Any]:
        with self._lock:
            hit = self._entries.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return True, hit[1]
        return False, None

    def get_or_compute(self, key: Any, ttl_s: float, compute: Callable[[], T]) -> T:
        if ttl_s <= 0:
            return compute()
        found, value = self._fresh(key)
        if found:
            return value
        with self._lock:
            gate = self._computing.setdefault(key, threading.Lock())
        # Fifty clients polling one sweep must not run fifty identical queries when the entry expires.
        with gate:
            found, value = self._fresh(key)
            if found:
                return value
            value = compute()
            now = time.monotonic()
            with self._lock:
                if len(self._entries) >= self._max:
                    self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
                    if len(self._entries) >= self._max:
                        self._entries.clear()
                self._entries[key] = (now + ttl_s, value)
                self._computing.pop(key, None)
        return value


class ServiceState:
    """Created by `create_app`; made ready (migrations, admin token) once, at start-up or on the first request."""

    def __init__(self, settings: Settings, *, dispatch: bool, launcher: Launcher | None = None) -> None:
        settings.check_controller()
        self.settings = settings
        self.engine = make_engine(settings.storage, pool_size=settings.db_pool_size, max_overflow=RESERVED_CONNECTIONS,
                                  pool_timeout_s=30.0)
        # /healthz's own: two connections that fail fast, so health never queues behind requests.
        self.health_engine: Engine = make_engine(
            settings.storage, pool_size=1, max_overflow=HEALTH_THREADS - 1, pool_timeout_s=2.0, connect_timeout_s=3.0,
            statement_timeout_s=3.0, sqlite_lock_timeout_s=2.0,
        )
        self.database_key = self.engine.url.render_as_string(hide_password=True)
        self.sessions: sessionmaker[Session] = make_session_factory(self.engine)
        self.cache = _TTLCache()
        # Finished trials' TrialOut text (without history) for /trials, by (record, study key, number, finished at):
        # Optuna never changes a finished trial, and validating and writing it was most of a page's cost.
        self.trial_json: LRU[Hashable, bytes] = LRU(200_000, max_weight=32 * 2**20, weight=len)
        self._optuna: BaseStorage | None = None
        self._lock = threading.Lock()
        self._ready = False
        self._recorded_lock = threading.Lock()
        self._recorded_scanned_at = -math.inf
        self.dispatcher: Dispatcher | None = None
        self.dispatch_engine: Engine | None = None
        if dispatch:
            # Its own pool: its thread and the cancel threads it starts never take a request's connection.
            self.dispatch_engine = make_engine(settings.storage, pool_size=2, max_overflow=8)
            self.dispatcher = Dispatcher(
                self.dispatch_engine,
                launcher or SubprocessLauncher(
                    storage=settings.storage, runs_dir=settings.runs_dir, data_dir=settings.data_dir,
                    ray_address=settings.ray_address,
                ),
                self.optuna,
                max_running=settings.max_running_sweeps,
                interval_s=settings.dispatch_interval_s,
                cancel_grace_s=settings.cancel_grace_s,
                max_launches=settings.max_launches,
                stale_after_s=settings.stale_after_s,
            )

    @property
    def ready(self) -> bool:
        return self._ready

    @asynccontextmanager
    async def db_slot(self) -> AsyncIterator[None]:
        """One of the `db_pool_size` slots of requests that use the database; waits (asynchronously) for one."""
        async with loop_local(_SLOTS, self, lambda: anyio.Semaphore(self.settings.db_pool_size)):
            yield

    def health_limiter(self) -> anyio.CapacityLimiter:
        """The threads /healthz probes in (not the request threads, which may all be busy)."""
        return loop_local(_HEALTH_LIMITERS, self, lambda: anyio.CapacityLimiter(HEALTH_THREADS))

    def ensure_ready(self) -> None:
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            upgrade(self.engine)
            self._optuna_storage()
            if self.settings.admin_token:
                with self.sessions() as session:
                    seed_admin_token(session, self.settings.admin_token)
            self.scan_recorded(force=True)
            self._ready = True

    def scan_recorded(self, session: Session | None = None, *, force: bool = False) -> int:
        """Import the sweeps recorded outside the server (`import_recorded_sweeps`), at most once per
        RECORDED_SCAN_S unless `force`; in `session` (the request's) or a session of its own. Returns how many."""
        if not force and time.monotonic() - self._recorded_scanned_at < RECORDED_SCAN_S:
            return 0
        # A request that finds another one scanning lists what is there rather than waiting for it.
        if not self._recorded_lock.acquire(blocking=force):
            return 0
        try:
            self._recorded_scanned_at = time.monotonic()  # before the scan: one that fails is not retried at once
            if session is not None:
                return len(import_recorded_sweeps(session))
            with self.sessions() as own:
                return len(import_recorded_sweeps(own))
        finally:
            self._recorded_lock.release()

    def _optuna_storage(self) -> BaseStorage:
        if self._optuna is None:
            from hpscape.landscapes.record import make_storage

            # Creates Optuna's tables on a fresh database, so the first request does not race to do it. A
            # connection for every request slot, as the request engine has, and some for the dispatcher's threads.
            self._optuna = make_storage(self.settings.storage, pool_size=self.settings.db_pool_size,
                                        max_overflow=RESERVED_CONNECTIONS + 8)
        return self._optuna

    def optuna(self) -> BaseStorage:
        if self._optuna is None:
            with self._lock:
                return self._optuna_storage()
        return self._optuna

    def start(self) -> None:
        self.ensure_ready()
        if self.dispatcher is not None:
            self.dispatcher.start()

    def stop(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.stop()

    def close(self) -> None:
        self.stop()
        self.engine.dispose()
        self.health_engine.dispose()
        if self.dispatch_engine is not None:
            self.dispatch_engine.dispose()
        if self._optuna is not None:
            engine = getattr(self._optuna, "engine", None)
            if engine is not None:
                engine.dispose()

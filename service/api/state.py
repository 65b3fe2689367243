"""What one app instance holds: settings, the database engine, the Optuna storage, the dispatcher, a small cache."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from optuna.storages import BaseStorage
from sqlalchemy.orm import Session, sessionmaker

from hpscape.service.auth import seed_admin_token
from hpscape.service.db import make_engine, make_session_factory, upgrade
from hpscape.service.queue import Dispatcher, Launcher, SubprocessLauncher
from hpscape.service.settings import Settings

__all__ = ["ServiceState"]

T = TypeVar("T")


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
        self.settings = settings
        self.engine = make_engine(settings.storage)
        self.sessions: sessionmaker[Session] = make_session_factory(self.engine)
        self.cache = _TTLCache()
        self._optuna: BaseStorage | None = None
        self._lock = threading.Lock()
        self._ready = False
        self.dispatcher: Dispatcher | None = None
        if dispatch:
            self.dispatcher = Dispatcher(
                self.engine,
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
            self._ready = True

    def _optuna_storage(self) -> BaseStorage:
        if self._optuna is None:
            from hpscape.landscapes.record import make_storage

            # Creates Optuna's tables on a fresh database, so the first request does not race to do it.
            self._optuna = make_storage(self.settings.storage)
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
        if self._optuna is not None:
            engine = getattr(self._optuna, "engine", None)
            if engine is not None:
                engine.dispose()

"""Starting sweep drivers as detached processes: they outlive the controller that started them."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from hpscape.service.queue.processes import is_alive, stop_session

__all__ = ["DRIVER_MODULE", "WITHHELD_VARIABLES", "Launched", "Launcher", "SubprocessLauncher"]

DRIVER_MODULE = "hpscape.service.queue.driver"
# Secrets of the controller and of CLI users that drivers (and the Ray workers they start, which inherit their
# environment) never need: a driver talks to the database, not to the REST API.
WITHHELD_VARIABLES = ("HPSCAPE_ADMIN_TOKEN", "HPSCAPE_TOKEN")


@dataclass(frozen=True)
class Launched:
    pid: int
    log_path: str | None = None


class Launcher(Protocol):
    """The seam between the dispatcher and processes: tests substitute one that only records launches."""

    def launch(self, sweep_id: str, *, launch: int, resume: bool) -> Launched: ...

    def is_alive(self, pid: int, sweep_id: str) -> bool: ...

    def stop(self, pid: int, sweep_id: str, *, grace_s: float) -> bool: ...


class SubprocessLauncher:
    """``python -m hpscape.service.queue.driver SWEEP_ID --launch N [--resume]`` in a new session, logging to a file.

    Configuration reaches the driver through ``HPSCAPE_*`` variables in its environment, never on its command
    line, where `ps` would show a database password. API tokens (WITHHELD_VARIABLES) are not passed on.
    """

    def __init__(
        self,
        *,
        storage: str,
        runs_dir: Path,
        data_dir: Path,
        ray_address: str | None,
        driver_command: Sequence[str] | None = None,
    ) -> None:
        """`driver_command` replaces ``[sys.executable, "-m", DRIVER_MODULE]`` (the sweep id and options follow)."""
        self._storage = storage
        self._runs_dir = Path(runs_dir)
        self._data_dir = Path(data_dir)
        self._ray_address = ray_address
        self._driver_command = list(driver_command or [sys.executable, "-m", DRIVER_MODULE])
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    @property
    def log_dir(self) -> Path:
        return self._runs_dir / "drivers"

    def _environment(self) -> dict[str, str]:
        env = {name: value for name, value in os.environ.items() if name not in WITHHELD_VARIABLES}
        env["HPSCAPE_STORAGE"] = self._storage
        env["HPSCAPE_RUNS_DIR"] = str(self._runs_dir)
        env["HPSCAPE_DATA_DIR"] = str(self._data_dir)
        if self._ray_address:
            env["HPSCAPE_RAY_ADDRESS"] = self._ray_address
        else:
            # An inherited RAY_ADDRESS would make ray.init() join that cluster instead of starting a local one.
            env.pop("HPSCAPE_RAY_ADDRESS", None)
            env.pop("RAY_ADDRESS", None)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def launch(self, sweep_id: str, *, launch: int, resume: bool) -> Launched:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{sweep_id}.log"
        command = [*self._driver_command, sweep_id, "--launch", str(launch)]
        if resume:
            command.append("--resume")
        with open(log_path, "ab") as log:
            log.write(f"--- launch {launch}{' (resume)' if resume else ''}: {' '.join(command)}\n".encode())
            log.flush()
            child = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self._environment(), cwd=str(self._runs_dir), start_new_session=True, close_fds=True,
            )
        with self._lock:
            self._children[child.pid] = child
        return Launched(child.pid, str(log_path))

    def reap(self) -> None:
        """Collect exit statuses of drivers this controller started (or they stay zombies until it exits)."""
        with self._lock:
            for pid, child in list(self._children.items()):
                if child.poll() is not None:
                    del self._children[pid]

    def is_alive(self, pid: int, sweep_id: str) -> bool:
        self.reap()
        return is_alive(pid, marker=sweep_id)

    def stop(self, pid: int, sweep_id: str, *, grace_s: float) -> bool:
        if not is_alive(pid, marker=sweep_id):
            self.reap()
            return True  # gone already; the pid may belong to someone else by now
        stopped = stop_session(pid, grace_s=grace_s)
        self.reap()
        return stopped

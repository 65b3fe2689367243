"""The controller's background thread: claims queued sweeps, launches drivers, reconciles, carries out cancels."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from optuna.storages import BaseStorage
from sqlalchemy import Engine, select
from sqlalchemy.orm import sessionmaker

from hpscape.service.db.models import SweepRow, utcnow
from hpscape.service.queue.launcher import Launcher
from hpscape.service.queue.states import Claim, claim_next, finalize_cancel, finish, is_stale, mark_launched, take_over
from hpscape.workers.sweep.retry import RetryPolicy, call_with_retries, is_transient

__all__ = ["Dispatcher", "TickReport"]

log = logging.getLogger("hpscape.dispatcher")

# A claimed row has no pid until Popen returns; give a launch this long before calling it lost.
_LAUNCH_WINDOW_S = 60.0
# A round's other writes are retried by the next round; the pid of a driver just started is not (without it the
# driver would look lost after _LAUNCH_WINDOW_S and be launched twice): retry it within that window.
_LAUNCH_RETRY = RetryPolicy(deadline_s=_LAUNCH_WINDOW_S / 2, max_s=4.0)


@dataclass
class TickReport:
    """What one round did (for logs and tests)."""

    launched: list[str] = field(default_factory=list)
    relaunched: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    cancelling: list[str] = field(default_factory=list)


class Dispatcher:
    """One per controller. `tick()` is one synchronous round; `start()` runs rounds on a thread until `stop()`."""

    def __init__(
        self,
        engine: Engine,
        launcher: Launcher,
        storage: Callable[[], BaseStorage],
        *,
        max_running: int,
        interval_s: float = 1.0,
        cancel_grace_s: float = 10.0,
        max_launches: int = 3,
        stale_after_s: float = 300.0,
        host: str | None = None,
    ) -> None:
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._launcher = launcher
        self._storage = storage
        self._max_running = max_running
        self._interval_s = interval_s
        self._grace_s = cancel_grace_s
        self._max_launches = max_launches
        self._stale_after_s = stale_after_s
        self.host = host or socket.gethostname()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._cancels: dict[str, threading.Thread] = {}

    # --- the loop ----------------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="hpscape-dispatcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop dispatching; the drivers keep running (they are detached on purpose)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.wait_for_cancels(timeout)

    def wake(self) -> None:
        """Look for work now (called after a submission or a cancel request) rather than at the next interval."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - e.g. the database is briefly unreachable: try again next round
                if is_transient(exc):
                    # A database outage: one line a round, not a traceback a round for as long as it lasts.
                    log.warning("dispatcher round failed, the database is unreachable (%s); retrying in %.1f s",
                                str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__,
                                self._interval_s)
                else:
                    log.exception("dispatcher round failed; retrying in %.1f s", self._interval_s)
            self._wake.wait(self._interval_s)
            self._wake.clear()

    def wait_for_cancels(self, timeout: float = 30.0) -> None:
        for thread in list(self._cancels.values()):
            thread.join(timeout)

    # --- one round ---------------------------------------------------------------------------------------------------
    def tick(self) -> TickReport:
        report = TickReport()
        now = utcnow()
        with self._sessions() as session:
            running = list(session.scalars(select(SweepRow).where(SweepRow.status == "running")))
        for row in running:
            if row.cancel_requested_at is not None:
                if row.host == self.host or is_stale(row, now, self._stale_after_s):
                    self._cancel(row, report)
            elif row.host == self.host:
                self._reconcile_local(row, now, report)
            elif is_stale(row, now, self._stale_after_s):
                log.warning("sweep %s on host %s sent no heartbeat for %.0f s: taking it over", row.id, row.host,
                            self._stale_after_s)
                self._relaunch(row, report)
        while not self._stopping.is_set():
            claim = claim_next(self._engine, host=self.host, limit=self._max_running)
            if claim is None:
                break
            self._launch(claim, resume=False, report=report)
            report.launched.append(claim.sweep_id)
        return report

    def _reconcile_local(self, row: SweepRow, now, report: TickReport) -> None:  # noqa: ANN001
        if row.pid is None:
            launched = row.launched_at or row.started_at or now
            if now - launched < timedelta(seconds=_LAUNCH_WINDOW_S):
                return  # a launch in progress (perhaps by another controller on this host)
        elif self._launcher.is_alive(row.pid, row.id):
            return
        log.warning("the driver of sweep %s (pid %s, launch %d) is gone", row.id, row.pid, row.launches)
        self._relaunch(row, report)

    def _relaunch(self, row: SweepRow, report: TickReport) -> None:
        if row.launches >= self._max_launches:
            error = (f"the sweep's driver stopped {row.launches} time(s) without finishing (limit "
                     f"HPSCAPE_MAX_LAUNCHES={self._max_launches}); its log: {row.log_path or 'unknown'}")
            if finish(self._engine, row.id, launch=row.launches, status="failed", error=error):
                report.failed.append(row.id)
            return
        claim = take_over(self._engine, row, host=self.host)
        if claim is None:
            return  # another controller got there first
        self._launch(claim, resume=True, report=report)
        report.relaunched.append(row.id)

    def _launch(self, claim: Claim, *, resume: bool, report: TickReport) -> None:
        try:
            launched = self._launcher.launch(claim.sweep_id, launch=claim.launch, resume=resume)
        except Exception as exc:  # noqa: BLE001 - e.g. the runs directory is not writable
            log.exception("could not start the driver of sweep %s", claim.sweep_id)
            call_with_retries(finish, self._engine, claim.sweep_id, launch=claim.launch, status="failed",
                              error=f"could not start the sweep's driver process: {exc}", policy=_LAUNCH_RETRY,
                              what=f"recording that sweep {claim.sweep_id}'s driver did not start", logger=log)
            report.failed.append(claim.sweep_id)
            return
        marked = call_with_retries(mark_launched, self._engine, claim, pid=launched.pid, log_path=launched.log_path,
                                   policy=_LAUNCH_RETRY, what=f"recording the driver of sweep {claim.sweep_id}",
                                   logger=log)
        if not marked:
            # Cancelled or taken over in the meantime: this driver must not run.
            self._launcher.stop(launched.pid, claim.sweep_id, grace_s=self._grace_s)
            return
        log.info("sweep %s: driver pid %d (launch %d%s), log %s", claim.sweep_id, launched.pid, claim.launch,
                 ", resume" if resume else "", launched.log_path)

    def _cancel(self, row: SweepRow, report: TickReport) -> None:
        previous = self._cancels.get(row.id)
        if previous is not None and previous.is_alive():
            return
        report.cancelling.append(row.id)
        # SIGTERM, a grace period, SIGKILL: seconds that must not hold up other sweeps' dispatch.
        thread = threading.Thread(target=self._cancel_now, args=(row,), name=f"hpscape-cancel-{row.id}",
                                  daemon=True)
        self._cancels[row.id] = thread
        thread.start()

    def _cancel_now(self, row: SweepRow) -> None:
        try:
            if row.pid is not None and row.host == self.host:
                self._launcher.stop(row.pid, row.id, grace_s=self._grace_s)
            if finalize_cancel(self._engine, self._storage(), row):
                log.info("sweep %s cancelled by %s", row.id, row.cancelled_by)
        except Exception:  # noqa: BLE001 - retried next round (the row is still running)
            log.exception("cancelling sweep %s failed; retrying", row.id)

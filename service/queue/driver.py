"""The detached process that runs one queued sweep: ``python -m hpscape.service.queue.driver SWEEP_ID --launch N``.

Started by a controller's dispatcher in its own session, so it outlives the controller. It runs the sweep with
`hpscape.workers.sweep.run_sweep` under the sweep's record name, sends a heartbeat to its row, stops itself when the
sweep is cancelled or another launch took over, and records the outcome on the row. Configuration comes from the
``HPSCAPE_*`` environment variables the launcher sets, read as `Settings` (``HPSCAPE_PENDING_TIMEOUT_S``: the
engine's `pending_timeout_s`).

The database may blip while a sweep runs (a PostgreSQL restart): every read and write of the row goes through
`hpscape.workers.sweep.retry.call_with_retries` (bounded backoff, a total deadline, each retry logged), as every
write of the engine and its workers does, so a sweep rides out an outage shorter than the deadline.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
import traceback

from sqlalchemy import Engine

from hpscape.service.db import SweepRow, make_engine, make_session_factory
from hpscape.service.queue.processes import stop_descendants, stop_session
from hpscape.service.queue.states import finalize_cancel, finish, heartbeat
from hpscape.workers.sweep.retry import RetryPolicy, call_with_retries

__all__ = ["HEARTBEAT_S", "main"]

log = logging.getLogger("hpscape.driver")

HEARTBEAT_S = 5.0
_EXIT_INTERRUPTED = 143  # what a shell reports for SIGTERM: the row stays running and a controller relaunches it


def _read(engine: Engine, sweep_id: str) -> SweepRow | None:
    with make_session_factory(engine)() as session:
        return session.get(SweepRow, sweep_id)


def _load(engine: Engine, sweep_id: str) -> SweepRow | None:
    return call_with_retries(_read, engine, sweep_id, what=f"reading the row of sweep {sweep_id}", logger=log)


def _finish(engine: Engine, sweep_id: str, *, launch: int, status: str, error: str | None) -> bool:
    """`finish`, riding out a database outage; True if this launch recorded the outcome (also when an earlier
    attempt did and only its acknowledgement was lost)."""
    if call_with_retries(finish, engine, sweep_id, launch=launch, status=status, error=error,
                         what=f"recording that sweep {sweep_id} {status}", logger=log):
        return True
    row = _load(engine, sweep_id)
    return row is not None and row.status == status and row.launches == launch


def _stop_own_ray(grace_s: float) -> None:
    """Stop the processes this driver started (Ray's), before touching the record."""
    if os.getsid(0) == os.getpid():
        # Launched by a controller: this driver leads its own session, which holds all of Ray's processes.
        stop_session(os.getpid(), grace_s=grace_s, exclude=frozenset({os.getpid()}))
    else:
        # Started by hand from a shell: the session is the shell's; stop only what descends from this process.
        stop_descendants(os.getpid(), grace_s=grace_s)


class _Heartbeat(threading.Thread):
    """Stamps the row every few seconds; ends the whole driver if the sweep was cancelled or taken over."""

    def __init__(self, engine: Engine, storage_url: str, sweep_id: str, launch: int, *, grace_s: float,
                 interval_s: float) -> None:
        super().__init__(name="hpscape-heartbeat", daemon=True)
        self._engine, self._storage_url = engine, storage_url
        self._sweep_id, self._launch, self._grace_s, self._interval_s = sweep_id, launch, grace_s, interval_s
        self.stopping = threading.Event()

    def run(self) -> None:
        # A heartbeat retries for a few intervals, then gives up; the next one starts its retries afresh.
        policy = RetryPolicy(deadline_s=max(1.0, 3 * self._interval_s), max_s=max(0.25, self._interval_s))
        while not self.stopping.wait(self._interval_s):
            try:
                state = call_with_retries(heartbeat, self._engine, self._sweep_id, launch=self._launch,
                                          what=f"heartbeat of sweep {self._sweep_id}", policy=policy, logger=log)
            except Exception as exc:  # noqa: BLE001 - a database outage must not end the sweep
                log.warning("heartbeat failed: %s", exc)
                continue
            if self.stopping.is_set():
                return
            if state is None or state.status != "running" or state.launches != self._launch:
                log.warning("sweep %s is %s (launch %s) now, not running as launch %d: stopping this driver",
                            self._sweep_id, state.status if state else "deleted", state.launches if state else "-",
                            self._launch)
                self._exit(cancel=False)
            elif state.cancel_requested:
                log.warning("sweep %s was cancelled: stopping its trials", self._sweep_id)
                self._exit(cancel=True)

    def _exit(self, *, cancel: bool) -> None:
        _stop_own_ray(self._grace_s)
        if cancel:
            from hpscape.landscapes.record import make_storage

            row = _load(self._engine, self._sweep_id)
            if row is not None:
                call_with_retries(lambda: finalize_cancel(self._engine, make_storage(self._storage_url), row),
                                  what=f"recording the cancel of sweep {self._sweep_id}", logger=log)
        logging.shutdown()
        os._exit(0)


def _outcome(summary: dict, total: int) -> tuple[str, str | None]:
    """succeeded if every trial finished (COMPLETE or PRUNED), else failed with counts and the way to retry."""
    counts: dict[str, int] = {}
    for info in summary.values():
        for state, n in info["counts"].items():
            counts[state] = counts.get(state, 0) + n
    done = counts.get("COMPLETE", 0) + counts.get("PRUNED", 0)
    if done >= total:
        return "succeeded", None
    shown = ", ".join(f"{n} {state.lower()}" for state, n in counts.items() if n)
    return "failed", (f"{total - done} of {total} trials did not finish ({shown}); the errors are in the trials' "
                      "`error` column (GET /api/v1/sweeps/ID/trials?state=FAIL); submit the sweep again to retry")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__name__}", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_id")
    parser.add_argument("--launch", type=int, required=True, help="the row's `launches` value this driver owns")
    parser.add_argument("--resume", action="store_true", help="adopt trials an earlier launch left RUNNING")
    parser.add_argument("--heartbeat-s", type=float, default=HEARTBEAT_S,
                        help="seconds between heartbeats (and checks for a cancel)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from hpscape.landscapes import SweepSpec
    from hpscape.service.settings import load_settings

    settings = load_settings()
    engine = make_engine(settings.storage, pool_size=2)
    row = _load(engine, args.sweep_id)
    if row is None:
        log.error("no sweep %s in the database", args.sweep_id)
        return 2
    if row.status != "running" or row.launches != args.launch:
        log.warning("sweep %s is %s at launch %d; this is launch %d: nothing to do", row.id, row.status,
                    row.launches, args.launch)
        return 0
    log.info("sweep %s (%s) launch %d%s: %d trials", row.id, row.record_name, args.launch,
             " (resume)" if args.resume else "", row.total_trials)
    beat = _Heartbeat(engine, settings.storage, row.id, args.launch, grace_s=settings.cancel_grace_s,
                      interval_s=args.heartbeat_s)
    beat.start()
    started = time.monotonic()
    try:
        from hpscape.workers.sweep import run_sweep

        spec = SweepSpec.model_validate(row.spec).replace(name=row.record_name)
        pending = settings.pending_timeout_s
        outcome = run_sweep(
            spec, storage_url=settings.storage, runs_dir=settings.runs_dir, data_dir=settings.data_dir,
            ray_address=settings.ray_address, resume=args.resume,
            **({"pending_timeout_s": pending} if pending is not None else {}),
        )
    except (KeyboardInterrupt, SystemExit):
        # Terminated by a signal (Ray turns SIGTERM into SystemExit). A cancel is finished by whoever stopped us;
        # otherwise (a shutdown, say) the row stays running and a controller relaunches the sweep with --resume.
        beat.stopping.set()
        log.warning("driver interrupted after %.0f s; the row stays running for a relaunch unless cancelled",
                    time.monotonic() - started)
        return _EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - every failure must reach the row
        beat.stopping.set()
        log.error("sweep %s failed:\n%s", row.id, traceback.format_exc())
        current = _load(engine, row.id)
        where = f" ({current.log_path})" if current is not None and current.log_path else ""
        error = "".join(traceback.format_exception_only(exc)).strip() + f"\nthe traceback is in the driver's log{where}"
        _finish(engine, row.id, launch=args.launch, status="failed", error=error)
        return 1
    beat.stopping.set()
    status, error = _outcome(outcome.summary, row.total_trials)
    recorded = _finish(engine, row.id, launch=args.launch, status=status, error=error)
    log.info("sweep %s %s in %.0f s%s", row.id, status, outcome.wall_s, "" if recorded else
             " (not recorded: the row had moved on, e.g. cancelled)")
    return 0 if status == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())

"""The durable sweep queue: claims (also from two processes on one PostgreSQL), dispatchers, reconciliation, cancel."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from optuna.trial import TrialState
from sqlalchemy import func, select, update
from waiting import wait_until

from hpscape.landscapes import SweepSpec
from hpscape.landscapes.record import Attr, make_storage, open_study
from hpscape.service.db import SweepRow, make_engine, make_session_factory, upgrade, utcnow
from hpscape.service.queue import (
    Dispatcher,
    Launched,
    SubprocessLauncher,
    claim_next,
    finish,
    is_alive,
    session_members,
)
from hpscape.service.sweeps import submit_sweep

REPO = Path(__file__).resolve().parents[1]
TINY = {"name": "q", "dataset": "synthetic", "model": "shake_shake_8_2x16d", "variants": ["sgd"], "epochs": 1,
        "batch_size": 32, "grid": {"lr": [0.1, 0.01], "weight_decay": [0.0]}}


@pytest.fixture
def engine(storage_url):
    engine = make_engine(storage_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def queue(engine, n: int, owner: str = "alice") -> list[str]:
    ids = []
    with make_session_factory(engine)() as session:
        for _ in range(n):
            row, _ = submit_sweep(session, SweepSpec.model_validate(TINY), owner=owner)
            ids.append(row.id)
    return ids


def rows(engine) -> dict[str, SweepRow]:
    with make_session_factory(engine)() as session:
        return {r.id: r for r in session.scalars(select(SweepRow))}


def running_count(engine) -> int:
    with engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(SweepRow).where(SweepRow.status == "running"))


class RecordingLauncher:
    """Records launches; a launched 'driver' is alive until the test says it died."""

    def __init__(self) -> None:
        self.launches: list[tuple[str, int, bool]] = []
        self.alive: set[int] = set()
        self.stopped: list[int] = []
        self._next_pid = 10_000_000 + os.getpid() * 100
        self._lock = threading.Lock()

    def launch(self, sweep_id: str, *, launch: int, resume: bool) -> Launched:
        with self._lock:
            self._next_pid += 1
            self.launches.append((sweep_id, launch, resume))
            self.alive.add(self._next_pid)
            return Launched(self._next_pid, None)

    def is_alive(self, pid: int, sweep_id: str) -> bool:
        return pid in self.alive

    def stop(self, pid: int, sweep_id: str, *, grace_s: float) -> bool:
        self.stopped.append(pid)
        self.alive.discard(pid)
        return True


def dispatcher(engine, launcher, storage_url: str, **kwargs) -> Dispatcher:
    options = dict(max_running=1, cancel_grace_s=2.0, max_launches=3, stale_after_s=300.0, host="here")
    options.update(kwargs)
    return Dispatcher(engine, launcher, lambda: make_storage(storage_url), **options)


# --- claims -----------------------------------------------------------------------------------------------------------
def test_claims_take_the_oldest_first_and_respect_the_limit(engine):
    ids = queue(engine, 3)
    first = claim_next(engine, host="h1", limit=2)
    second = claim_next(engine, host="h1", limit=2)
    assert (first.sweep_id, second.sweep_id) == (ids[0], ids[1]) and first.launch == 1
    assert claim_next(engine, host="h1", limit=2) is None, "two sweeps run already"
    state = rows(engine)
    assert state[ids[0]].status == "running" and state[ids[0]].host == "h1" and state[ids[0]].launches == 1
    assert state[ids[0]].started_at is not None and state[ids[2]].status == "queued"
    assert finish(engine, ids[0], launch=1, status="succeeded")
    assert not finish(engine, ids[0], launch=1, status="failed"), "a finished sweep stays finished"
    assert claim_next(engine, host="h1", limit=2).sweep_id == ids[2]
    assert claim_next(engine, host="h1", limit=5) is None, "nothing queued"


_CLAIM_LOOP = textwrap.dedent("""
    import json, sys, time
    from hpscape.service.db import make_engine
    from hpscape.service.queue import claim_next
    url, host, limit, start_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    engine = make_engine(url)
    while time.time() < start_at:
        time.sleep(0.001)
    claimed = []
    while True:
        claim = claim_next(engine, host=host, limit=limit)
        if claim is None:
            break
        claimed.append(claim.sweep_id)
    print(json.dumps(claimed))
""")


def claim_from_two_processes(url: str, limit: int) -> list[list[str]]:
    start_at = time.time() + 3.0  # both import and connect first, then race
    procs = [subprocess.Popen([sys.executable, "-c", _CLAIM_LOOP, url, host, str(limit), str(start_at)],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for host in ("controller-a", "controller-b")]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    return results


@pytest.mark.postgres
def test_two_processes_on_postgres_claim_every_queued_sweep_exactly_once(postgres_url):
    engine = make_engine(postgres_url)
    upgrade(engine)
    ids = queue(engine, 40)
    a, b = claim_from_two_processes(postgres_url, limit=1000)
    assert sorted(a + b) == sorted(ids), "every sweep claimed, none twice"
    assert not set(a) & set(b)
    hosts = {r.id: r.host for r in rows(engine).values()}
    assert all(hosts[i] == "controller-a" for i in a) and all(hosts[i] == "controller-b" for i in b)
    engine.dispose()


@pytest.mark.postgres
def test_two_processes_on_postgres_never_exceed_the_running_limit(postgres_url):
    engine = make_engine(postgres_url)
    upgrade(engine)
    queue(engine, 10)
    a, b = claim_from_two_processes(postgres_url, limit=3)
    assert len(a) + len(b) == 3 and running_count(engine) == 3
    engine.dispose()


# --- dispatchers ------------------------------------------------------------------------------------------------------
@pytest.mark.postgres
def test_two_dispatchers_on_one_postgres_launch_every_sweep_exactly_once(postgres_url):
    engine_a, engine_b = make_engine(postgres_url), make_engine(postgres_url)
    upgrade(engine_a)
    ids = queue(engine_a, 12)
    launcher_a, launcher_b = RecordingLauncher(), RecordingLauncher()
    controllers = [dispatcher(engine_a, launcher_a, postgres_url, max_running=2, host="a"),
                   dispatcher(engine_b, launcher_b, postgres_url, max_running=2, host="b")]
    peak = 0
    for _ in range(40):
        barrier = threading.Barrier(2)
        errors = []

        def round_of(controller):
            try:
                barrier.wait()
                controller.tick()
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=round_of, args=(c,)) for c in controllers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors
        peak = max(peak, running_count(engine_a))
        # The drivers of this round finish; their controllers see them gone next round.
        for sweep_id, row in rows(engine_a).items():
            if row.status == "running" and row.pid is not None:
                finish(engine_a, sweep_id, launch=row.launches, status="succeeded")
        if all(r.status == "succeeded" for r in rows(engine_a).values()):
            break
    launched = [land[0] for land in launcher_a.launches + launcher_b.launches]
    assert sorted(launched) == sorted(ids), "every sweep launched exactly once"
    assert launcher_a.launches and launcher_b.launches, "both controllers took part"
    assert not any(resume for _, _, resume in launcher_a.launches + launcher_b.launches)
    assert peak <= 2, f"{peak} sweeps ran at once with max_running_sweeps = 2"
    engine_a.dispose()
    engine_b.dispose()


def test_the_dispatcher_launches_up_to_the_limit_and_records_the_pid(engine, storage_url):
    ids = queue(engine, 3)
    launcher = RecordingLauncher()
    controller = dispatcher(engine, launcher, storage_url, max_running=2)
    report = controller.tick()
    assert report.launched == ids[:2] and [land[0] for land in launcher.launches] == ids[:2]
    state = rows(engine)
    assert state[ids[0]].pid in launcher.alive and state[ids[0]].host == "here"
    assert controller.tick().launched == [], "the limit holds; live drivers are left alone"
    finish(engine, ids[0], launch=1, status="succeeded")
    assert controller.tick().launched == [ids[2]]


def test_reconcile_relaunches_dead_local_drivers_and_takes_over_stale_remote_ones(engine, storage_url):
    launcher = RecordingLauncher()
    names = ["dead", "alive", "launching", "lost", "remote-fresh", "remote-stale", "exhausted"]
    ids = dict(zip(names, queue(engine, len(names))))
    now = utcnow()
    live_pid, dead_pid = 4242, 4343
    launcher.alive.add(live_pid)
    setup = {
        "dead": dict(host="here", pid=dead_pid, launches=1, launched_at=now),
        "alive": dict(host="here", pid=live_pid, launches=1, launched_at=now),
        "launching": dict(host="here", pid=None, launches=1, launched_at=now),
        "lost": dict(host="here", pid=None, launches=1, launched_at=now - timedelta(minutes=5)),
        "remote-fresh": dict(host="elsewhere", pid=1, launches=1, launched_at=now - timedelta(hours=1),
                             heartbeat_at=now - timedelta(seconds=10)),
        "remote-stale": dict(host="elsewhere", pid=1, launches=2, launched_at=now - timedelta(hours=1),
                             heartbeat_at=now - timedelta(minutes=20)),
        "exhausted": dict(host="here", pid=dead_pid, launches=3, launched_at=now),
    }
    with engine.begin() as connection:
        for name, values in setup.items():
            connection.execute(update(SweepRow).where(SweepRow.id == ids[name]).values(
                status="running", started_at=now, **values))
    report = dispatcher(engine, launcher, storage_url, max_running=10).tick()
    assert sorted(report.relaunched) == sorted(ids[n] for n in ("dead", "lost", "remote-stale"))
    assert report.failed == [ids["exhausted"]] and report.launched == []
    state = rows(engine)
    assert {(land[0], land[1], land[2]) for land in launcher.launches} == {
        (ids["dead"], 2, True), (ids["lost"], 2, True), (ids["remote-stale"], 3, True)}
    assert state[ids["remote-stale"]].host == "here"
    for name in ("alive", "launching", "remote-fresh"):
        assert state[ids[name]].launches == 1 and state[ids[name]].status == "running", name
    assert state[ids["exhausted"]].status == "failed" and "3 time(s)" in state[ids["exhausted"]].error


# --- real processes ---------------------------------------------------------------------------------------------------
_FAKE_DRIVER = textwrap.dedent("""
    # Stands in for service.queue.driver: starts a grandchild (as Ray would), then waits to be stopped.
    import subprocess, sys, time
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    print("fake driver for", sys.argv[1:], flush=True)
    time.sleep(300)
""")


def test_cancel_stops_the_driver_with_everything_it_started_and_fails_its_running_trials(
        engine, storage_url, tmp_path, fake_progress):
    script = tmp_path / "fake_driver.py"
    script.write_text(_FAKE_DRIVER)
    launcher = SubprocessLauncher(storage=storage_url, runs_dir=tmp_path / "runs", data_dir=tmp_path / "data",
                                  ray_address=None, driver_command=[sys.executable, str(script)])
    (sweep_id,) = queue(engine, 1)
    controller = dispatcher(engine, launcher, storage_url)
    assert controller.tick().launched == [sweep_id]
    row = rows(engine)[sweep_id]
    fake_progress(storage_url, row.record_name, TINY, complete=1, running=1)
    wait_until("the fake driver and its grandchild start", lambda: len(session_members(row.pid)) == 2, 30)
    assert is_alive(row.pid, sweep_id)
    log = Path(row.log_path).read_text()
    assert "fake driver for" in log or "--launch 1" in log

    with engine.begin() as connection:
        connection.execute(update(SweepRow).where(SweepRow.id == sweep_id).values(
            cancel_requested_at=utcnow(), cancelled_by="alice"))
    assert controller.tick().cancelling == [sweep_id]
    controller.wait_for_cancels()
    assert session_members(row.pid) == [], "the driver's whole session is gone"
    assert rows(engine)[sweep_id].status == "cancelled"
    trials = open_study(make_storage(storage_url), row.record_name, "sgd", create=False).get_trials()
    states = sorted(t.state.name for t in trials)
    assert states == ["COMPLETE", "FAIL"], "the finished trial stays, the running one is failed"
    failed = next(t for t in trials if t.state == TrialState.FAIL)
    assert failed.user_attrs[Attr.ERROR] == "sweep cancelled by alice"


def test_is_alive_needs_the_marker_and_a_live_process(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "sweep-abc123"])
    try:
        wait_until("the child shows its command line", lambda: is_alive(child.pid, "sweep-abc123"), 30)
        assert not is_alive(child.pid, "sweep-other"), "a recycled pid running something else is not our driver"
        os.kill(child.pid, signal.SIGKILL)
        wait_until("a killed (zombie) child counts as gone", lambda: not is_alive(child.pid, "sweep-abc123"), 30)
    finally:
        child.kill()
        child.wait()
    assert not is_alive(child.pid)


def test_the_driver_refuses_unknown_and_superseded_sweeps(engine, storage_url, tmp_path):
    env = {**os.environ, "HPSCAPE_STORAGE": storage_url, "HPSCAPE_RUNS_DIR": str(tmp_path / "runs")}
    driver = [sys.executable, "-m", "hpscape.service.queue.driver"]
    missing = subprocess.run([*driver, "0000000000", "--launch", "1"], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=120)
    assert missing.returncode == 2 and "no sweep 0000000000" in missing.stderr
    (sweep_id,) = queue(engine, 1)
    assert claim_next(engine, host="h", limit=1).launch == 1
    stale = subprocess.run([*driver, sweep_id, "--launch", "2"], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=120)
    assert stale.returncode == 0 and "nothing to do" in stale.stderr
    row = rows(engine)[sweep_id]
    assert row.status == "running" and row.launches == 1 and row.heartbeat_at is None


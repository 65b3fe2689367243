"""The controller killed mid-sweep and restarted: real `hpscape serve` processes, a real (tiny) sweep on a local Ray."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from hpscape.landscapes.record import Attr, make_storage, open_study
from hpscape.service.db import SweepRow, make_engine, make_session_factory
from hpscape.service.queue import session_members, stop_session

pytestmark = [pytest.mark.slow, pytest.mark.ray]

REPO = Path(__file__).resolve().parents[1]
ADMIN_TOKEN = "restart-test-admin-token-0123456789"
SPEC = {
    "name": "restart", "dataset": "synthetic", "model": "shake_shake_8_2x16d", "variants": ["sgdw"], "epochs": 3,
    "batch_size": 64, "grid": {"lr": [0.01, 0.1], "weight_decay": [0.0, 0.001]},
    "resources": {"cpu": 1, "gpu": 0}, "max_concurrent_trials": 1,
}


class Controller:
    """`hpscape serve` as a subprocess on a free loopback port."""

    def __init__(self, storage_url: str, tmp_path: Path) -> None:
        self.storage_url, self.tmp_path = storage_url, tmp_path
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HPSCAPE_", "RAY_ADDRESS"))}
        env.update(HPSCAPE_STORAGE=self.storage_url, HPSCAPE_RUNS_DIR=str(self.tmp_path / "runs"),
                   HPSCAPE_DATA_DIR=str(self.tmp_path / "data"), HPSCAPE_ADMIN_TOKEN=ADMIN_TOKEN,
                   HPSCAPE_DISPATCH_INTERVAL_S="0.5", HPSCAPE_STATUS_CACHE_S="0")
        self.starts += 1
        log = open(self.tmp_path / f"controller-{self.starts}.log", "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hpscape.service.cli", "serve", "--port", str(self.port), "--log-level", "warning"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            assert self.process.poll() is None, (self.tmp_path / f"controller-{self.starts}.log").read_text()
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError("the controller did not answer /healthz within 60 s")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def api(self, method: str, path: str, **kwargs) -> dict:
        response = httpx.request(method, f"{self.url}{path}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                                 timeout=30, **kwargs)
        assert response.status_code < 300, response.text
        return response.json()

    def wait_for(self, sweep_id: str, predicate, what: str, timeout: float) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            sweep = self.api("GET", f"/api/v1/sweeps/{sweep_id}")
            if predicate(sweep):
                return sweep
            assert sweep["status"] not in ("failed", "cancelled"), sweep
            time.sleep(0.5)
        raise AssertionError(f"{what} within {timeout} s; last: {sweep}")


@pytest.fixture
def controller(tmp_path):
    made: list[Controller] = []

    def make(storage_url: str) -> Controller:
        made.append(Controller(storage_url, tmp_path))
        return made[-1]

    yield make
    for ctl in made:
        if ctl.process is not None and ctl.process.poll() is None:
            ctl.kill()
        # A failed test may leave a driver (and its Ray) running: stop what the rows point at.
        engine = make_engine(ctl.storage_url)
        with make_session_factory(engine)() as session:
            for row in session.query(SweepRow).all():
                if row.pid:
                    stop_session(row.pid, grace_s=5)
        engine.dispose()


def mid_sweep(sweep: dict) -> bool:
    counts = sweep["progress"]["counts"]
    return counts["COMPLETE"] >= 1 and counts["RUNNING"] >= 1


def assert_every_cell_once(storage_url: str, record_name: str) -> None:
    trials = open_study(make_storage(storage_url), record_name, "sgdw", create=False).get_trials()
    assert len(trials) == 4, f"{len(trials)} trials for 4 cells"
    assert all(t.state.name == "COMPLETE" for t in trials), [t.state.name for t in trials]
    cells = Counter(t.user_attrs[Attr.CELL] for t in trials)
    assert len(cells) == 4 and set(cells.values()) == {1}, cells


def row_of(storage_url: str, sweep_id: str) -> SweepRow:
    engine = make_engine(storage_url)
    with make_session_factory(engine)() as session:
        row = session.get(SweepRow, sweep_id)
    engine.dispose()
    return row


def test_a_killed_controller_leaves_the_driver_running_and_the_restarted_one_adopts_it(controller, tmp_path):
    storage_url = f"sqlite:///{tmp_path / 'restart.db'}"
    ctl = controller(storage_url)
    ctl.start()
    sweep_id = ctl.api("POST", "/api/v1/sweeps", json=SPEC)["id"]
    ctl.wait_for(sweep_id, mid_sweep, "one trial done and one running", timeout=240)
    driver_pid = row_of(storage_url, sweep_id).pid
    ctl.kill()
    assert session_members(driver_pid), "the driver outlives its controller (it has its own session)"

    ctl.start()
    done = ctl.wait_for(sweep_id, lambda s: s["status"] == "succeeded", "the sweep succeeds", timeout=300)
    assert done["progress"]["done"] == 4 and done["launches"] == 1
    row = row_of(storage_url, sweep_id)
    assert row.pid == driver_pid and row.launches == 1, "the restarted controller left the live driver alone"
    assert_every_cell_once(storage_url, done["record_name"])


@pytest.mark.postgres
def test_a_crash_of_controller_and_driver_resumes_the_sweep_without_duplicates(postgres_url, controller):
    ctl = controller(postgres_url)
    ctl.start()
    sweep_id = ctl.api("POST", "/api/v1/sweeps", json=SPEC)["id"]
    ctl.wait_for(sweep_id, mid_sweep, "one trial done and one running", timeout=240)
    driver_pid = row_of(postgres_url, sweep_id).pid
    ctl.kill()
    for pid in session_members(driver_pid):  # the machine "crashes": the driver and its Ray die too
        os.kill(pid, signal.SIGKILL)
    deadline = time.time() + 30
    while session_members(driver_pid) and time.time() < deadline:
        time.sleep(0.1)
    assert not session_members(driver_pid)
    assert row_of(postgres_url, sweep_id).status == "running"

    ctl.start()  # reconciles: the driver is gone, so it relaunches the sweep with --resume
    done = ctl.wait_for(sweep_id, lambda s: s["status"] == "succeeded", "the resumed sweep succeeds", timeout=300)
    assert done["launches"] == 2 and done["progress"]["done"] == 4
    row = row_of(postgres_url, sweep_id)
    assert row.pid != driver_pid
    assert "launch 2 (resume)" in Path(row.log_path).read_text()
    assert_every_cell_once(postgres_url, done["record_name"])

"""The detached driver process (service.queue.driver) with the sweep engine replaced by a stand-in: outcomes on the
row, heartbeats, and stopping itself on a cancel or when another launch took over."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import update
from waiting import wait_until

from hpscape.landscapes import SweepSpec
from hpscape.landscapes.record import Attr, make_storage, open_study
from hpscape.service.db import SweepRow, make_engine, make_session_factory, upgrade, utcnow
from hpscape.service.queue import claim_next, is_alive
from hpscape.service.sweeps import submit_sweep

REPO = Path(__file__).resolve().parents[1]
TINY = {"name": "drv", "dataset": "synthetic", "model": "shake_shake_8_2x16d", "variants": ["sgd"], "epochs": 1,
        "batch_size": 32, "grid": {"lr": [0.1, 0.01], "weight_decay": [0.0]}}

# Runs the real driver with workers.sweep.run_sweep replaced; argv: MODE MARKER_FILE then the driver's arguments.
_HARNESS = textwrap.dedent("""
    import subprocess, sys, time
    from dataclasses import dataclass

    # A stand-in for workers.sweep.run_sweep: the package is light (its engine, and Ray, load on first use of a
    # name), so the stand-in goes in before the driver asks for run_sweep, and Ray is never imported.
    @dataclass
    class SweepOutcome:
        name: str
        summary: dict
        wall_s: float
        dispatched: int

    import hpscape.workers.sweep as workers_sweep
    from hpscape.service.queue import driver

    mode, marker = sys.argv[1], sys.argv[2]

    def fake_run_sweep(spec, **kwargs):
        assert kwargs["resume"] == ("--resume" in sys.argv), kwargs
        if mode == "succeed":
            return SweepOutcome(spec.name, {"sgd": {"counts": {"COMPLETE": 2}}}, 0.1, 2)
        if mode == "incomplete":
            return SweepOutcome(spec.name, {"sgd": {"counts": {"COMPLETE": 1, "FAIL": 1}}}, 0.1, 2)
        if mode == "crash":
            raise RuntimeError("CUDA out of memory (a stand-in)")
        if mode == "terminated":
            raise SystemExit(15)  # what Ray's SIGTERM handler raises
        # "train": start a child, as ray.init does, and keep going until stopped from outside
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "ray-stand-in"])
        open(marker, "w").write(str(child.pid))
        time.sleep(120)

    workers_sweep.run_sweep = fake_run_sweep
    code = driver.main(sys.argv[3:])
    assert "ray" not in sys.modules, "the stand-in driver imported Ray"
    sys.exit(code)
""")


@pytest.fixture
def sweep(storage_url):
    """A sweep claimed by a controller (running, launch 1), and a way to read its row back."""
    engine = make_engine(storage_url)
    upgrade(engine)
    with make_session_factory(engine)() as session:
        submitted, _ = submit_sweep(session, SweepSpec.model_validate(TINY), owner="alice")
    sweep_id = submitted.id
    assert claim_next(engine, host="here", limit=1).sweep_id == sweep_id

    class Handle:
        id, record_name, url = sweep_id, submitted.record_name, storage_url

        @staticmethod
        def row() -> SweepRow:
            with make_session_factory(engine)() as session:
                return session.get(SweepRow, sweep_id)

        @staticmethod
        def set(**values) -> None:
            with engine.begin() as connection:
                connection.execute(update(SweepRow).where(SweepRow.id == sweep_id).values(**values))

    yield Handle
    engine.dispose()


def start_driver(sweep, tmp_path, mode: str, *extra: str) -> tuple[subprocess.Popen, Path]:
    marker = tmp_path / "child.pid"
    env = {**os.environ, "HPSCAPE_STORAGE": sweep.url, "HPSCAPE_RUNS_DIR": str(tmp_path / "runs"),
           "HPSCAPE_CANCEL_GRACE_S": "2"}
    process = subprocess.Popen(
        [sys.executable, "-c", _HARNESS, mode, str(marker), sweep.id, "--launch", "1", "--heartbeat-s", "0.2",
         *extra], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)  # as the launcher starts it
    return process, marker


def finish_driver(process: subprocess.Popen) -> tuple[int, str]:
    output, _ = process.communicate(timeout=120)
    return process.returncode, output


@pytest.mark.parametrize("mode,code,status,error", [
    ("succeed", 0, "succeeded", None),
    ("incomplete", 1, "failed", "1 of 2 trials did not finish"),
    ("crash", 1, "failed", "CUDA out of memory (a stand-in)"),
    ("terminated", 143, "running", None),  # a shutdown, not a cancel: a controller relaunches it
])
def test_the_driver_records_the_outcome_on_the_row(sweep, tmp_path, mode, code, status, error):
    returncode, output = finish_driver(start_driver(sweep, tmp_path, mode)[0])
    assert returncode == code, output
    row = sweep.row()
    assert row.status == status
    if error is None:
        assert row.error is None
    else:
        assert error in row.error
    assert (row.finished_at is not None) == (status != "running")


def test_a_resumed_launch_passes_resume_to_the_engine(sweep, tmp_path):
    returncode, output = finish_driver(start_driver(sweep, tmp_path, "succeed", "--resume")[0])
    assert returncode == 0, output


def test_a_cancel_stops_the_driver_and_what_it_started(sweep, tmp_path, fake_progress):
    fake_progress(sweep.url, sweep.record_name, TINY, complete=1, running=1)
    process, marker = start_driver(sweep, tmp_path, "train")
    wait_until("the stand-in for Ray starts", lambda: marker.exists() and marker.read_text(), 60)
    child = int(marker.read_text())
    wait_until("the first heartbeat", lambda: sweep.row().heartbeat_at is not None, 60)
    sweep.set(cancel_requested_at=utcnow(), cancelled_by="alice")
    returncode, output = finish_driver(process)
    assert returncode == 0, output
    assert not is_alive(child), "the driver stopped the processes it started"
    assert sweep.row().status == "cancelled"
    trials = open_study(make_storage(sweep.url), sweep.record_name, "sgd", create=False).get_trials()
    assert sorted(t.state.name for t in trials) == ["COMPLETE", "FAIL"]
    assert [t.user_attrs[Attr.ERROR] for t in trials if t.state.name == "FAIL"] == ["sweep cancelled by alice"]


def test_a_driver_whose_launch_was_superseded_stops_itself(sweep, tmp_path):
    process, marker = start_driver(sweep, tmp_path, "train")
    wait_until("the stand-in for Ray starts", lambda: marker.exists() and marker.read_text(), 60)
    sweep.set(launches=2, host="another-controller")  # another controller took the sweep over
    returncode, output = finish_driver(process)
    assert returncode == 0 and "stopping this driver" in output, output
    assert not is_alive(int(marker.read_text()))
    row = sweep.row()
    assert row.status == "running" and row.launches == 2, "the new launch's row is left alone"


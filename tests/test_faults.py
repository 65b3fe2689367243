"""The database, for real: a PostgreSQL server of the test's own is killed (SIGKILL, every process of it) in the
middle of a sweep and restarted seconds later. The controller (`hpscape serve`) answers 503 with Retry-After
meanwhile and serves again after; the driver, the searcher and the Ray workers ride it out through the one retry
policy (`hpscape.workers.sweep.retry`), and the sweep ends with every trial exactly once."""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from optuna.trial import TrialState
from pgserver import OwnPostgres
from processes import kill_session, log_tail
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError
from waiting import wait_until

from hpscape.landscapes import SweepSpec
from hpscape.landscapes.record import Attr, make_storage, open_study
from hpscape.service.db import SweepRow, make_engine, make_session_factory
from hpscape.workers.sweep.retry import DatabaseUnavailable, RetryPolicy, call_with_retries, is_transient

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 16
SPEC = {"name": "dbkill", "dataset": "synthetic", "model": "shake_shake_8_2x16d", "variants": ["sgd"],
        "epochs": EPOCHS, "batch_size": 128, "grid": {"lr": [0.01, 0.03, 0.1], "weight_decay": [0.0, 0.001]},
        "resources": {"cpu": 1, "gpu": 0}, "max_concurrent_trials": 2, "metric": "test_error"}


@pytest.fixture
def own_postgres():
    try:
        server = OwnPostgres.create()
    except AssertionError as exc:
        pytest.fail(f"cannot start a PostgreSQL server of the test's own: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.close()


def _select_one(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT 1")).scalar_one()


# --- the retry policy, against a real server --------------------------------------------------------------------------
def test_a_retried_call_rides_out_a_server_restart(own_postgres, caplog):
    engine = create_engine(own_postgres.url, pool_pre_ping=True)
    try:
        assert _select_one(engine) == 1  # a pooled connection, about to die with the server
        own_postgres.kill()
        restart = threading.Timer(2.0, own_postgres.start)
        restart.start()
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="hpscape.retry"):
            assert call_with_retries(_select_one, engine, what="selecting one",
                                     policy=RetryPolicy(first_s=0.1, max_s=0.5, deadline_s=60)) == 1
        restart.join()
        assert 1.5 < time.monotonic() - started < 30
        retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
        assert retries and all(m.startswith("selecting one failed (") for m in retries), caplog.text
        assert any("succeeded after" in r.getMessage() for r in caplog.records), caplog.text
    finally:
        engine.dispose()


def test_a_retried_call_gives_up_at_its_deadline(own_postgres):
    engine = create_engine(own_postgres.url, pool_pre_ping=True)
    try:
        own_postgres.kill()
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable, match=r"unreachable for \d+ s .* while selecting one: "
                                                      r"OperationalError: .*(refused|connect)"):
            call_with_retries(_select_one, engine, what="selecting one",
                              policy=RetryPolicy(first_s=0.1, max_s=0.4, deadline_s=2))
        assert 2 <= time.monotonic() - started < 10, "bounded: the deadline and at most one wait past it"
    finally:
        engine.dispose()


def test_a_statement_error_is_not_retried(own_postgres):
    engine = create_engine(own_postgres.url)
    calls = []

    def insert_twice() -> None:
        calls.append(1)
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO t VALUES (1)"))

    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE t (id int PRIMARY KEY)"))
            connection.execute(text("INSERT INTO t VALUES (1)"))
        with pytest.raises(IntegrityError, match="duplicate key"):
            call_with_retries(insert_twice, what="inserting", policy=RetryPolicy(first_s=0.1, deadline_s=30))
        assert calls == [1], "a duplicate key is the statement's fault: one attempt"
        assert not is_transient(KeyError("x")) and not is_transient(ValueError("database is locked"))
    finally:
        engine.dispose()


# --- a whole sweep, through the controller ---------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _driver_sessions(sweep_id: str) -> set[int]:
    sessions = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if "hpscape.service.queue.driver" in cmdline and sweep_id in cmdline:
                    sessions.add(os.getsid(int(entry.name)))
            except (OSError, ProcessLookupError):
                continue
    return sessions


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.timeout(600)
def test_a_sweep_and_its_controller_ride_out_their_database_being_killed(own_postgres, tmp_path):
    token = secrets.token_urlsafe(24)
    port = _free_port()
    runs = tmp_path / "runs"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "HPSCAPE_"))}
    env.update(HPSCAPE_STORAGE=own_postgres.url, HPSCAPE_RUNS_DIR=str(runs), HPSCAPE_DATA_DIR=str(tmp_path / "data"),
               HPSCAPE_ADMIN_TOKEN=token, HPSCAPE_DISPATCH_INTERVAL_S="0.5", HPSCAPE_STATUS_CACHE_S="0",
               RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1")
    controller_log = tmp_path / "controller.log"
    with open(controller_log, "wb") as out:
        controller = subprocess.Popen([sys.executable, "-m", "hpscape.service.cli", "serve", "--port", str(port)],
                                      cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"},
                          timeout=30)
    storage = make_storage(own_postgres.url)
    sweep_id = None

    def logs() -> str:
        driver_log = runs / "drivers" / f"{sweep_id}.log"
        return log_tail(controller_log, 60) + ("\n" + log_tail(driver_log, 120) if sweep_id else "")

    try:
        def healthy() -> bool:
            assert controller.poll() is None, f"the controller exited with {controller.returncode}\n{logs()}"
            try:
                return client.get("/healthz").status_code == 200
            except httpx.HTTPError:
                return False

        wait_until("the controller's /healthz", healthy, 90, interval=0.5, context=logs)
        response = client.post("/api/v1/sweeps", json=SPEC)
        assert response.status_code == 202, response.text
        sweep_id, record = response.json()["id"], response.json()["record_name"]
        spec = SweepSpec.model_validate(SPEC).replace(name=record)

        def trials() -> list:
            try:
                return open_study(storage, record, "sgd", create=False).get_trials(deepcopy=False)
            except KeyError:
                return []

        def training() -> list | None:
            assert controller.poll() is None, f"the controller exited with {controller.returncode}\n{logs()}"
            busy = [t for t in trials() if t.state == TrialState.RUNNING
                    and 2 <= (t.user_attrs.get(Attr.EPOCHS_DONE) or 0) <= EPOCHS - 6]
            return busy or None

        busy = wait_until("a trial a few epochs in", training, 240, interval=0.2, context=logs)
        own_postgres.kill()
        killed_at = time.monotonic()
        # Down long enough for every worker, the driver's heartbeat and the dispatcher to hit it (an epoch takes
        # about 0.2 s here): meanwhile the API says 503, with when to come back, and never a 500.
        answers: Counter = Counter()
        while time.monotonic() - killed_at < 6:
            for path in (f"/api/v1/sweeps/{sweep_id}", f"/api/v1/sweeps/{sweep_id}/trials", "/healthz"):
                answer = client.get(path)
                answers[answer.status_code] += 1
                assert answer.status_code == 503, f"{path} with the database down: {answer.status_code} {answer.text}"
                if path != "/healthz":
                    assert answer.headers.get("Retry-After") == "5", answer.headers
            time.sleep(0.5)
        own_postgres.start()
        down_s = time.monotonic() - killed_at
        storage.engine.dispose()  # its pooled connections died with the server
        back = wait_until("the API to answer again", lambda: client.get(f"/api/v1/sweeps/{sweep_id}").status_code
                          == 200, 60, interval=0.2, context=logs)
        assert back
        api_back_s = time.monotonic() - killed_at - down_s

        def finished() -> dict | None:
            assert controller.poll() is None, f"the controller exited with {controller.returncode}\n{logs()}"
            body = client.get(f"/api/v1/sweeps/{sweep_id}").json()
            return body if body["status"] in ("succeeded", "failed", "cancelled") else None

        detail = wait_until("the sweep to finish after the outage", finished, 400, interval=1.0, context=logs)
        assert detail["status"] == "succeeded" and detail["error"] is None, f"{detail}\n{logs()}"
        listed = client.get(f"/api/v1/sweeps/{sweep_id}/trials", params={"limit": 100}).json()
        assert listed["total"] == 6 and {t["state"] for t in listed["items"]} == {"COMPLETE"}, listed
        driver_log = (runs / "drivers" / f"{sweep_id}.log").read_text(errors="replace")
        assert "failed (OperationalError" in driver_log and "succeeded after" in driver_log, logs()
        assert controller.poll() is None, "the controller is still serving"
    finally:
        client.close()
        controller.send_signal(signal.SIGTERM)
        try:
            controller.wait(timeout=20)
        except subprocess.TimeoutExpired:
            kill_session(controller.pid)
            controller.wait(timeout=10)
        if sweep_id is not None:
            for session in _driver_sessions(sweep_id):  # the driver and the Ray it started, after a failure
                kill_session(session)
        storage.engine.dispose()

    engine = make_engine(own_postgres.url, pool_size=1)
    try:
        with make_session_factory(engine)() as session:
            assert session.get(SweepRow, sweep_id).launches == 1, "the driver rode it out: nobody relaunched it"
    finally:
        engine.dispose()
    storage = make_storage(own_postgres.url)
    try:
        recorded = open_study(storage, record, "sgd", create=False).get_trials(deepcopy=False)
    finally:
        storage.engine.dispose()
    cells = Counter(t.user_attrs[Attr.CELL] for t in recorded)
    assert set(cells) == {c.key for c in spec.cells("sgd")} and max(cells.values()) == 1, cells
    assert len(recorded) == spec.total_trials() == 6, "one trial per cell: none lost, none duplicated"
    assert [t.state for t in recorded] == [TrialState.COMPLETE] * 6, [(t.number, t.state.name) for t in recorded]
    for t in recorded:
        assert sorted(t.intermediate_values) == list(range(1, EPOCHS + 1)), (t.number, t.intermediate_values)
        assert [e["epoch"] for e in t.user_attrs[Attr.HISTORY]] == list(range(1, EPOCHS + 1))
    # The trials training through the outage waited for the database instead of failing their Ray trial: none was
    # retried from a checkpoint (a retry would record the epoch it resumed from).
    assert {t.user_attrs[Attr.RESUMED_FROM_EPOCH] for t in recorded} == {0}, [
        (t.number, t.user_attrs[Attr.RESUMED_FROM_EPOCH]) for t in recorded]
    through = sorted(t.number for t in busy)
    assert through, "some trial was training when the server died"
    print(f"\ndatabase killed while trial(s) {through} trained; down {down_s:.1f} s, {sum(answers.values())} API "
          f"answers meanwhile ({dict(answers)}); API back {api_back_s:.1f} s after the restart; sweep succeeded")

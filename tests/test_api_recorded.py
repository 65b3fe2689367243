"""Sweeps recorded outside the server (`hpscape run`, `make demo`) are listed read-only, with their landscapes; a
second start does not list them twice; the dispatcher never launches them; cancelling one is a 409."""

from __future__ import annotations

import math
import time
from typing import Any

import optuna
from fastapi.testclient import TestClient
from recorded import record_sweep
from sqlalchemy import func, select

from hpscape.landscapes import SweepSpec
from hpscape.landscapes.record import make_storage, open_study
from hpscape.service.api import create_app
from hpscape.service.api import state as state_module
from hpscape.service.db.models import SweepRow
from hpscape.service.queue import Launched
from hpscape.service.settings import Settings

optuna.logging.set_verbosity(optuna.logging.WARNING)

SWEEPS = "/api/v1/sweeps"
SPEC = {"name": "by-hand", "dataset": "synthetic", "model": "shake_shake_8_2x16d", "variants": ["sgd", "sgdw"],
        "epochs": 3, "batch_size": 32, "grid": {"lr": [0.01, 0.1], "weight_decay": [0.0, 0.001]}}
FACETED = {**SPEC, "name": "by-hand-faceted", "facet": {"schedule": ["constant", "step"]}}


def _loss(variant: str, facet: Any, params: dict[str, Any], seed: int, epoch: int) -> dict[str, float]:
    loss = 0.3 + 0.02 * (math.log2(params["lr"]) + 5) ** 2 + 0.5 / epoch + (0.01 if variant == "sgd" else 0.0)
    return {"test_loss": loss, "test_error": loss / 3, "train_loss": loss / 2, "train_error": loss / 4}


def record(url: str, body: dict[str, Any]) -> SweepSpec:
    spec = SweepSpec.model_validate(body)
    record_sweep(url, spec, _loss)
    return spec


def listed(api, **params: Any) -> list[dict[str, Any]]:
    response = api.client.get(SWEEPS, params={"limit": 500, **params}, headers=api.auth("alice"))
    assert response.status_code == 200, response.text
    return response.json()["items"]


def by_record_name(api, name: str) -> list[dict[str, Any]]:
    return [item for item in listed(api) if item["record_name"] == name]


class RecordingLauncher:
    """A launcher that records what the dispatcher asked of it; a launched 'driver' stays alive."""

    def __init__(self) -> None:
        self.launches: list[str] = []

    def launch(self, sweep_id: str, *, launch: int, resume: bool) -> Launched:
        self.launches.append(sweep_id)
        return Launched(4_000_000 + len(self.launches), None)

    def is_alive(self, pid: int, sweep_id: str) -> bool:
        return True

    def stop(self, pid: int, sweep_id: str, *, grace_s: float) -> bool:
        return True


def test_a_recorded_sweep_is_listed_read_only_with_its_status_and_landscape(storage_url, make_api):
    spec = record(storage_url, SPEC)
    api = make_api(storage_url)
    [sweep] = by_record_name(api, "by-hand")
    assert sweep["status"] == "recorded" and sweep["owner"] == "" and sweep["name"] == "by-hand"
    assert sweep["total_trials"] == spec.total_trials() == 8
    assert [item["id"] for item in listed(api, status="recorded")] == [sweep["id"]]

    detail = api.client.get(f"{SWEEPS}/{sweep['id']}", headers=api.auth("alice")).json()
    assert (detail["progress"]["done"], detail["progress"]["total"]) == (8, 8), detail["progress"]
    assert set(detail["variants"]) == {"sgd", "sgdw"} and detail["variants"]["sgd"]["best"]["params"]["lr"] == 0.01
    landscape = api.client.get(f"{SWEEPS}/{sweep['id']}/landscape", headers=api.auth("alice"))
    assert landscape.status_code == 200, landscape.text
    assert set(landscape.json()["variants"]) == {"sgd", "sgdw"}
    trials = api.client.get(f"{SWEEPS}/{sweep['id']}/trials", params={"limit": 3, "history": "true"},
                            headers=api.auth("alice")).json()
    assert trials["total"] == 8 and len(trials["items"]) == 3 and len(trials["items"][0]["history"]) == 3

    with api.state.sessions() as session:
        assert session.get(SweepRow, sweep["id"]).owner_id is None  # no token owns it: only an admin could act
    for who in ("alice", "root"):
        cancel = api.client.post(f"{SWEEPS}/{sweep['id']}/cancel", headers=api.auth(who))
        assert cancel.status_code == 409, cancel.text
        assert "outside the server" in cancel.json()["detail"]
    assert by_record_name(api, "by-hand")[0]["status"] == "recorded"


def test_a_faceted_record_is_listed_and_other_studies_are_not(storage_url, make_api):
    record(storage_url, FACETED)
    storage = make_storage(storage_url)
    optuna.create_study(storage=storage, study_name="not-hpscape")  # no NAME/VARIANT name
    open_study(storage, "no-spec", "sgd")  # named like hpscape's, but no spec to list it by
    storage.engine.dispose()
    api = make_api(storage_url)
    names = {item["record_name"] for item in listed(api)}
    assert names == {"by-hand-faceted"}, names
    [sweep] = by_record_name(api, "by-hand-faceted")
    assert sweep["total_trials"] == 16
    facets = api.client.get(f"{SWEEPS}/{sweep['id']}/trials", params={"facet": "schedule=step", "limit": 1},
                            headers=api.auth("alice")).json()
    assert facets["total"] == 8 and facets["items"][0]["facet"] == "schedule=step"


def test_a_second_start_and_repeated_lists_do_not_list_it_twice(storage_url, make_api, tmp_path):
    record(storage_url, SPEC)
    first = make_api(storage_url)
    assert len(by_record_name(first, "by-hand")) == 1
    # A second controller on the same database, started after the first (reads open: no tokens to seed).
    settings = Settings(storage=storage_url, runs_dir=tmp_path / "runs2", ray_address=None, public_read=True,
                        admin_token=None)
    second_app = create_app(settings, dispatch=False)
    with TestClient(second_app) as second:
        again = [item for item in second.get(SWEEPS, params={"limit": 500}).json()["items"]
                 if item["record_name"] == "by-hand"]
    second_app.state.hpscape.close()
    assert len(again) == 1
    assert len(by_record_name(first, "by-hand")) == 1
    with first.state.sessions() as session:
        rows = session.scalar(select(func.count()).select_from(SweepRow).where(SweepRow.record_name == "by-hand"))
    assert rows == 1
    assert first.state.scan_recorded(force=True) == 0  # nothing new to import


def test_a_sweep_recorded_while_the_server_runs_is_listed_once_the_scan_interval_passed(storage_url, make_api,
                                                                                         monkeypatch):
    api = make_api(storage_url)
    assert listed(api) == []
    record(storage_url, SPEC)
    assert by_record_name(api, "by-hand") == [], "scans are throttled: at most one per RECORDED_SCAN_S"
    monkeypatch.setattr(state_module, "RECORDED_SCAN_S", 0.0)
    assert len(by_record_name(api, "by-hand")) == 1


def test_the_dispatcher_never_launches_or_takes_over_a_recorded_sweep(storage_url, make_api):
    record(storage_url, SPEC)
    launcher = RecordingLauncher()
    api = make_api(storage_url, dispatch=True, launcher=launcher)
    [sweep] = by_record_name(api, "by-hand")
    time.sleep(1.0)  # five dispatch intervals
    assert launcher.launches == []
    assert by_record_name(api, "by-hand")[0]["status"] == "recorded"
    # A queued sweep beside it is launched: the dispatcher was running.
    queued = api.client.post(SWEEPS, json={**SPEC, "name": "queued"}, headers=api.auth("alice")).json()
    deadline = time.monotonic() + 10
    while not launcher.launches and time.monotonic() < deadline:
        time.sleep(0.1)
    assert launcher.launches == [queued["id"]] and sweep["id"] not in launcher.launches


def test_an_unknown_status_filter_is_a_422_that_lists_recorded(shared_api):
    response = shared_api.client.get(SWEEPS, params={"status": "imported"}, headers=shared_api.auth("alice"))
    assert response.status_code == 422 and "recorded" in response.text, response.text

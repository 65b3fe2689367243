"""The sweeps API on SQLite and PostgreSQL (dispatch off): submission, validation, listing, detail, trials, export."""

from __future__ import annotations

import csv
import io
import json
import threading
from datetime import timedelta

import pytest
from sqlalchemy import update

from hpscape.landscapes import get_preset
from hpscape.landscapes.record import make_storage, sweep_summary
from hpscape.service.db.models import SweepRow, utcnow

TINY = {
    "name": "tiny", "dataset": "synthetic", "model": "shake_shake_8_2x16d", "variants": ["sgd", "sgdw"],
    "epochs": 2, "batch_size": 32, "grid": {"lr": [0.01, 0.1], "weight_decay": [0.0, 0.001]},
}
SWEEPS = "/api/v1/sweeps"


def post_raw(api, body: bytes, who: str = "alice", **headers):
    return api.client.post(SWEEPS, content=body, headers={**api.auth(who), "Content-Type": "application/json",
                                                          **headers})


def count_sweeps(api) -> int:
    return api.client.get(SWEEPS, headers=api.auth("root")).json()["total"]


# --- submission -------------------------------------------------------------------------------------------------------
def test_preset_submission_is_queued_with_its_overrides(api):
    response = api.client.post(SWEEPS, json={"preset": "quick", "epochs": 3}, headers=api.auth("alice"))
    assert response.status_code == 202, response.text
    sweep = response.json()
    assert sweep["status"] == "queued" and sweep["owner"] == "alice" and sweep["name"] == "quick"
    assert response.headers["Location"] == f"{SWEEPS}/{sweep['id']}"
    assert sweep["record_name"] == f"quick-{sweep['id']}"
    assert sweep["total_trials"] == get_preset("quick", epochs=3).total_trials()
    detail = api.client.get(f"{SWEEPS}/{sweep['id']}", headers=api.auth("bob")).json()
    assert detail["spec"]["epochs"] == 3 and detail["spec"]["variants"] == list(get_preset("quick").variants)
    assert detail["progress"] == {"done": 0, "total": sweep["total_trials"],
                                  "counts": {"RUNNING": 0, "COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "WAITING": 0}}
    assert set(detail["variants"]) == set(get_preset("quick").variants)
    assert detail["timings"] == {"queued_s": None, "elapsed_s": None, "eta_s": None}


def test_the_same_spec_twice_gets_two_sweeps_with_separate_records(api):
    first = api.client.post(SWEEPS, json=TINY, headers=api.auth("alice")).json()
    second = api.client.post(SWEEPS, json=TINY, headers=api.auth("alice")).json()
    assert first["id"] != second["id"] and first["record_name"] != second["record_name"]
    assert first["total_trials"] == 8
    assert count_sweeps(api) == 2


def test_a_long_name_still_gives_a_valid_record_name(api):
    response = api.client.post(SWEEPS, json={**TINY, "name": "n" * 200}, headers=api.auth("alice"))
    assert response.status_code == 202, response.text
    record = response.json()["record_name"]
    assert len(record) <= 200 and record.endswith("-" + response.json()["id"])


_TOO_MANY_CELLS = {**TINY, "seeds": list(range(40)), "grid": {"lr": [0.1 * (i + 1) for i in range(40)],
                                                             "weight_decay": [0.001 * i for i in range(40)]}}
BAD_BODIES = [
    # (id, raw body, expected status, a location that must be named, a word the message must contain)
    ("nan-lr", '{"name":"t","dataset":"synthetic","model":"shake_shake_8_2x16d","variants":["sgd"],"epochs":1,'
               '"batch_size":8,"grid":{"lr":[NaN],"weight_decay":[0]}}', 422, ["body", "grid", "lr", 0], "finite"),
    ("infinite-decay", json.dumps({**TINY, "grid": {"lr": [0.1], "weight_decay": [0]}})
     .replace('"weight_decay": [0]', '"weight_decay": [Infinity]'), 422, ["body", "grid", "weight_decay", 0], "finite"),
    ("overflow-to-inf", json.dumps(TINY).replace("0.001", "1e999"), 422, ["body", "grid", "weight_decay", 1], "finite"),
    ("negative-lr", json.dumps({**TINY, "grid": {"lr": [-0.1], "weight_decay": [0]}}), 422,
     ["body", "grid", "lr", 0], "> 0"),
    ("zero-width-bayes-range", json.dumps({**{k: v for k, v in TINY.items() if k != "grid"},
                                           "bayes": {"n_trials": 4, "lr": [0.1, 0.1], "weight_decay": [1e-4, 1e-2]}}),
     422, ["body", "bayes", "lr"], "low < high"),
    ("non-positive-bayes-range", json.dumps({**{k: v for k, v in TINY.items() if k != "grid"},
                                             "bayes": {"n_trials": 4, "lr": [0, 0.1], "weight_decay": [1e-4, 1e-2]}}),
     422, ["body", "bayes", "lr", 0], "> 0"),
    ("unknown-field", json.dumps({**TINY, "learning_rate": 0.1}), 422, ["body", "learning_rate"], "unknown field"),
    ("preset-override-named-self", json.dumps({"preset": "quick", "self": 1}), 422, ["body", "self"],
     "unknown field"),
    ("name-with-trailing-newline", json.dumps({**TINY, "name": "nl\n"}), 422, ["body", "name"], "is not allowed"),
    ("model-the-registry-does-not-build", json.dumps({**TINY, "model": "shake_shake_38_2x8d"}), 422,
     ["body", "model"], "unknown model"),
    ("three-grid-axes", json.dumps({**TINY, "grid": {**TINY["grid"], "momentum": [0.9]}}), 422,
     ["body", "grid"], "must sweep exactly two axes"),
    ("axis-a-variant-does-not-read", json.dumps({**TINY, "grid": {"lr": [0.1], "beta1": [0.9]}}), 422,
     ["body", "grid", "beta1"], "beta1 does not apply to variant sgd"),
    ("unknown-nested-field", json.dumps({**TINY, "resources": {"tpu": 1}}), 422,
     ["body", "resources", "tpu"], "unknown field"),
    ("unknown-variant", json.dumps({**TINY, "variants": ["sgd", "lion"]}), 422, ["body", "variants", 1], "lion"),
    ("unknown-model", json.dumps({**TINY, "model": "resnet50"}), 422, ["body", "model"], "shake_shake"),
    ("too-many-cells", json.dumps(_TOO_MANY_CELLS), 422, ["body", "grid"], "MAX_TOTAL_TRIALS"),
    ("name-too-long", json.dumps({**TINY, "name": "x" * 201}), 422, ["body", "name"], "200"),
    ("name-with-slash", json.dumps({**TINY, "name": "a/b"}), 422, ["body", "name"], "not allowed"),
    ("name-with-space", json.dumps({**TINY, "name": "a b"}), 422, ["body", "name"], "not allowed"),
    ("name-with-unicode", json.dumps({**TINY, "name": "sweep\u00e9"}), 422, ["body", "name"], "not allowed"),
    ("unknown-preset", '{"preset": "fig9"}', 422, ["body", "preset"], "available presets"),
    ("preset-not-a-string", '{"preset": 7}', 422, ["body", "preset"], "string"),
    ("bad-preset-override", '{"preset": "quick", "epochs": 0}', 422, ["body", "epochs"], "greater than"),
    ("preset-unknown-override", '{"preset": "quick", "colour": "red"}', 422, ["body", "colour"], "unknown field"),
    ("not-an-object", "[1, 2]", 422, ["body"], "JSON object"),
    ("invalid-json", '{"name": ', 422, ["body"], "invalid JSON"),
    ("empty-body", "", 422, ["body"], "empty"),
    ("deeply-nested", "[" * 100_000 + "]" * 100_000, 422, ["body"], "nested too deeply"),
    ("not-utf8", b'{"name": "\xff"}', 422, ["body"], "invalid JSON"),
]


@pytest.mark.parametrize("body,status,loc,word", [b[1:] for b in BAD_BODIES], ids=[b[0] for b in BAD_BODIES])
def test_bad_input_is_a_4xx_naming_the_field_and_stores_nothing(shared_api, body, status, loc, word):
    api = shared_api
    before = count_sweeps(api)
    raw = body if isinstance(body, bytes) else body.encode()
    response = post_raw(api, raw)
    assert response.status_code == status, response.text
    problems = response.json()["detail"]
    assert isinstance(problems, list) and problems
    named = [p for p in problems if p["loc"] == loc]
    assert named, f"no problem at {loc}: {problems}"
    assert any(word in p["msg"] for p in named), problems
    assert count_sweeps(api) == before


def test_bodies_over_one_mebibyte_are_413_with_or_without_content_length(api):
    big = json.dumps({**TINY, "padding": "x" * (1 << 20)}).encode()
    response = post_raw(api, big)
    assert response.status_code == 413 and response.json()["detail"][0]["loc"] == ["body"]

    def chunks():  # streamed: no Content-Length header at all
        for start in range(0, len(big), 64 * 1024):
            yield big[start:start + 64 * 1024]

    response = api.client.post(SWEEPS, content=chunks(), headers={**api.auth("alice"),
                                                                  "Content-Type": "application/json"})
    assert response.status_code == 413
    # Just under the limit is parsed (and rejected for its unknown field, not its size).
    fits = json.dumps({**TINY, "padding": "x" * ((1 << 20) - 400)}).encode()
    assert len(fits) <= 1 << 20
    assert post_raw(api, fits).status_code == 422
    assert count_sweeps(api) == 0


def test_a_body_that_is_not_json_is_415(api):
    response = api.client.post(SWEEPS, content=b"name: x", headers={**api.auth("alice"),
                                                                    "Content-Type": "application/yaml"})
    assert response.status_code == 415 and "application/json" in response.json()["detail"]


# --- idempotency ------------------------------------------------------------------------------------------------------
def test_idempotency_key_returns_the_same_sweep_for_the_same_body(api):
    key = {"Idempotency-Key": "submit-7f3a"}
    first = post_raw(api, json.dumps(TINY).encode(), **key)
    # The same JSON with other whitespace and key order is the same request.
    again = post_raw(api, json.dumps(dict(reversed(list(TINY.items()))), indent=4).encode(), **key)
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers.get("Idempotent-Replayed") == "true" and "Idempotent-Replayed" not in first.headers
    assert count_sweeps(api) == 1

    other = post_raw(api, json.dumps({**TINY, "epochs": 3}).encode(), **key)
    assert other.status_code == 422
    assert other.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert first.json()["id"] in other.json()["detail"][0]["msg"]
    # Keys belong to their token: bob's use of the same key is a new sweep of his.
    bobs = post_raw(api, json.dumps(TINY).encode(), who="bob", **key)
    assert bobs.status_code == 202 and bobs.json()["id"] != first.json()["id"] and bobs.json()["owner"] == "bob"
    assert count_sweeps(api) == 2


def test_concurrent_requests_with_one_key_create_one_sweep(api):
    from hpscape.landscapes import SweepSpec
    from hpscape.service.sweeps import body_digest, submit_sweep

    spec, digest = SweepSpec.model_validate(TINY), body_digest(TINY)
    ids, errors, barrier = [], [], threading.Barrier(6)

    def submit() -> None:
        try:
            barrier.wait()
            with api.state.sessions() as session:
                row, _ = submit_sweep(session, spec, owner="alice", idempotency_key="race", body_sha256=digest)
                ids.append(row.id)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert len(ids) == 6 and len(set(ids)) == 1
    assert count_sweeps(api) == 1


def test_an_oversized_idempotency_key_is_rejected(api):
    response = post_raw(api, json.dumps(TINY).encode(), **{"Idempotency-Key": "k" * 256})
    assert response.status_code == 422 and "Idempotency-Key" in json.dumps(response.json())
    assert count_sweeps(api) == 0


# --- listing ----------------------------------------------------------------------------------------------------------
def test_list_filters_by_status_and_owner_and_paginates_newest_first(api):
    ids = []
    for who in ("alice", "bob", "alice", "bob", "alice"):
        ids.append(api.client.post(SWEEPS, json=TINY, headers=api.auth(who)).json()["id"])
    api.client.post(f"{SWEEPS}/{ids[0]}/cancel", headers=api.auth("alice"))
    everything = api.client.get(SWEEPS, headers=api.auth("bob")).json()
    assert everything["total"] == 5 and [s["id"] for s in everything["items"]] == ids[::-1]
    page = api.client.get(SWEEPS, params={"limit": 2, "offset": 1}, headers=api.auth("bob")).json()
    assert [s["id"] for s in page["items"]] == ids[::-1][1:3] and page["total"] == 5
    assert (page["limit"], page["offset"]) == (2, 1)
    alices = api.client.get(SWEEPS, params={"owner": "alice"}, headers=api.auth("bob")).json()
    assert alices["total"] == 3 and {s["owner"] for s in alices["items"]} == {"alice"}
    cancelled = api.client.get(SWEEPS, params={"status": "cancelled"}, headers=api.auth("bob")).json()
    assert [s["id"] for s in cancelled["items"]] == [ids[0]]
    both = api.client.get(SWEEPS, params={"status": "queued", "owner": "bob"}, headers=api.auth("bob")).json()
    assert both["total"] == 2
    for bad in ({"status": "done"}, {"limit": 0}, {"limit": 501}, {"offset": -1}):
        response = api.client.get(SWEEPS, params=bad, headers=api.auth("bob"))
        assert response.status_code == 422, bad
        assert response.json()["detail"][0]["loc"][-1] == next(iter(bad))


# --- detail, trials, export -------------------------------------------------------------------------------------------
def _running_sweep(api, fake_progress, **progress):
    sweep = api.client.post(SWEEPS, json=TINY, headers=api.auth("alice")).json()
    fake_progress(api.settings.storage, sweep["record_name"], TINY, **progress)
    with api.state.sessions() as session:
        session.execute(update(SweepRow).where(SweepRow.id == sweep["id"]).values(
            status="running", started_at=utcnow() - timedelta(seconds=100), host="somewhere", launches=1))
        session.commit()
    return sweep


def test_detail_counts_best_cell_timings_and_eta_match_the_record(api, fake_progress):
    sweep = _running_sweep(api, fake_progress, complete=1, diverged=1, running=1)
    detail = api.client.get(f"{SWEEPS}/{sweep['id']}", headers=api.auth("bob")).json()
    assert detail["status"] == "running" and detail["launches"] == 1
    # Exactly what the library's own summary of the record says.
    recorded = sweep_summary(make_storage(api.settings.storage), sweep["record_name"])
    assert {key: {k: v for k, v in info.items() if k != "total"}
            for key, info in detail["variants"].items()} == recorded
    assert all(info["total"] == 4 for info in detail["variants"].values()), "what the spec plans per study"
    for variant in ("sgd", "sgdw"):
        info = detail["variants"][variant]
        assert info["counts"]["COMPLETE"] == 2 and info["counts"]["RUNNING"] == 1 and info["counts"]["WAITING"] == 1
        assert info["diverged"] == 1
        assert info["best"]["number"] == 0 and info["best"]["value"] == pytest.approx(0.5)
    assert detail["progress"]["done"] == 4 and detail["progress"]["total"] == 8
    timings = detail["timings"]
    assert timings["elapsed_s"] == pytest.approx(100, abs=5)
    # 4 of 8 trials done in ~100 s: ~100 s to go.
    assert timings["eta_s"] == pytest.approx(timings["elapsed_s"], rel=0.01)
    assert timings["queued_s"] is not None


def test_trials_are_paginated_and_filtered(api, fake_progress):
    sweep = _running_sweep(api, fake_progress, complete=2, fail=1)
    url = f"{SWEEPS}/{sweep['id']}/trials"
    everything = api.client.get(url, headers=api.auth("bob")).json()
    assert everything["total"] == 8
    assert [(t["variant"], t["number"]) for t in everything["items"]] == [
        (v, n) for v in ("sgd", "sgdw") for n in range(4)]
    first = everything["items"][0]
    assert first["state"] == "COMPLETE" and first["params"] == {"lr": 0.01, "weight_decay": 0.0}
    assert first["facet"] is None and first["hyperparameters"]["momentum"] == 0.9
    assert first["value"] == pytest.approx(0.5) and first["seed"] == 0 and first["epochs_budget"] == 2
    page = api.client.get(url, params={"limit": 3, "offset": 2}, headers=api.auth("bob")).json()
    assert [(t["variant"], t["number"]) for t in page["items"]] == [("sgd", 2), ("sgd", 3), ("sgdw", 0)]
    failed = api.client.get(url, params={"state": "FAIL"}, headers=api.auth("bob")).json()
    assert failed["total"] == 2 and all(t["error"] == "boom" for t in failed["items"])
    sgdw = api.client.get(url, params={"variant": "sgdw", "state": "COMPLETE"}, headers=api.auth("bob")).json()
    assert sgdw["total"] == 2 and {t["variant"] for t in sgdw["items"]} == {"sgdw"}
    assert api.client.get(url, params={"state": "DONE"}, headers=api.auth("bob")).status_code == 422


def test_export_csv_and_json_hold_every_trial(api, fake_progress):
    sweep = _running_sweep(api, fake_progress, complete=3)
    response = api.client.get(f"{SWEEPS}/{sweep['id']}/export.csv", headers=api.auth("bob"))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert sweep["record_name"] in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 8 and {r["sweep_id"] for r in rows} == {sweep["id"]}
    done = [r for r in rows if r["state"] == "COMPLETE"]
    assert len(done) == 6 and float(done[1]["value"]) == pytest.approx(0.49)
    exported = api.client.get(f"{SWEEPS}/{sweep['id']}/export.json", headers=api.auth("bob")).json()
    assert exported["sweep"]["id"] == sweep["id"] and exported["spec"]["grid"] == TINY["grid"]
    assert len(exported["trials"]) == 8
    assert [t["value"] for t in exported["trials"] if t["state"] == "COMPLETE"] == [
        pytest.approx(float(r["value"])) for r in done]


def test_unknown_sweep_is_404(api):
    for path in ("", "/trials", "/export.csv", "/export.json"):
        response = api.client.get(f"{SWEEPS}/0123456789{path}", headers=api.auth("bob"))
        assert response.status_code == 404 and "hpscape list" in response.json()["detail"]
    assert api.client.post(f"{SWEEPS}/0123456789/cancel", headers=api.auth("bob")).status_code == 404


# --- cancel -----------------------------------------------------------------------------------------------------------
def test_cancel_a_queued_sweep_at_once_and_a_finished_one_is_a_conflict(api):
    sweep = api.client.post(SWEEPS, json=TINY, headers=api.auth("alice")).json()
    response = api.client.post(f"{SWEEPS}/{sweep['id']}/cancel", headers=api.auth("alice"))
    assert response.status_code == 202 and response.json()["status"] == "cancelled"
    assert response.json()["finished_at"] is not None
    again = api.client.post(f"{SWEEPS}/{sweep['id']}/cancel", headers=api.auth("alice"))
    assert again.status_code == 202 and again.json()["status"] == "cancelled"

    done = api.client.post(SWEEPS, json=TINY, headers=api.auth("alice")).json()
    with api.state.sessions() as session:
        session.execute(update(SweepRow).where(SweepRow.id == done["id"]).values(status="succeeded",
                                                                                  finished_at=utcnow()))
        session.commit()
    conflict = api.client.post(f"{SWEEPS}/{done['id']}/cancel", headers=api.auth("alice"))
    assert conflict.status_code == 409 and "already succeeded" in conflict.json()["detail"]


def test_cancel_of_a_running_sweep_is_requested_for_the_dispatcher(api, fake_progress):
    sweep = _running_sweep(api, fake_progress, complete=1)
    response = api.client.post(f"{SWEEPS}/{sweep['id']}/cancel", headers=api.auth("root"))
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "running" and body["cancel_requested"] is True
    with api.state.sessions() as session:
        row = session.get(SweepRow, sweep["id"])
        assert row.cancelled_by == "root" and row.cancel_requested_at is not None

"""Trial pages and streamed exports read the record in pages, and say exactly what the whole record says.

The reference ("the old all-trials result") is computed here the way the service did before pages: every trial of
every study through Optuna's `get_all_trials`, turned into `TrialOut` rows, filtered and sliced in Python.
"""

from __future__ import annotations

import csv
import io
import json
import math
import threading
from datetime import timezone
from typing import Any

import optuna
import pytest
from optuna.storages import InMemoryStorage
from optuna.trial import FrozenTrial

from hpscape.landscapes import SweepSpec, study_key, study_name
from hpscape.landscapes.record import (
    Attr,
    claim_next,
    enqueue_cells,
    fail_trial,
    finish_trial,
    make_storage,
    open_study,
    record_epoch,
)
from hpscape.landscapes.record._optuna import storage_of, study_id_of
from hpscape.landscapes.record.pages import count_sweep_trials, iter_sweep_trials, sweep_trial_page
from hpscape.service.api.schemas import SweepExport, TrialOut
from hpscape.service.api.views import json_export_chunks, sweep_out
from hpscape.service.db.models import SweepRow
from hpscape.service.progress import csv_chunks, trials_csv

optuna.logging.set_verbosity(optuna.logging.WARNING)

SWEEPS = "/api/v1/sweeps"
FACETED = {
    "name": "pages", "dataset": "synthetic", "model": "shake_shake_8_2x16d", "variants": ["sgd", "sgdw"],
    "epochs": 3, "batch_size": 32, "grid": {"lr": [0.01, 0.1], "weight_decay": [0.0, 0.001]},
    "facet": {"schedule": ["constant", "step"]},
}
STATES = (None, "COMPLETE", "RUNNING", "WAITING", "FAIL", "PRUNED")


def _history(epochs: int, base: float) -> list[dict[str, Any]]:
    return [{"epoch": e, "test_error": base / e, "test_loss": 2 * base / e, "train_loss": 3 * base / e,
             "train_error": 4 * base / e, "lr_t": 0.01 / e, "epoch_seconds": 1.5, "images_per_s": 100.0,
             "diverged": False, "weight_norm_stages": [1.0, 2.0, 3.0], "note": "warm-up, then: cosine"}
            for e in range(1, epochs + 1)]


def record_like_workers(storage: Any, record_name: str, spec: SweepSpec) -> None:
    """Per study: trials 0-1 finished after every epoch's record, 2 failed mid-way, 3 running, the rest queued;
    one running trial of the first study holds a history with NaN (written around `record_epoch`)."""
    for index, (variant, facet) in enumerate(spec.studies()):
        study = open_study(storage, record_name, variant, facet)
        enqueue_cells(study, spec.cells(variant),
                      values_of=lambda c, v=variant, f=facet: spec.trial_values(v, c.params, f))
        for k in range(4):
            number = claim_next(study)
            base = 0.1 * (number + 1) + index
            epochs = spec.epochs if k < 2 else 1
            history = _history(epochs, base)
            for epoch in range(1, epochs + 1):
                metrics = {key: history[epoch - 1][key] for key in ("test_error", "test_loss", "train_loss")}
                record_epoch(study, number, epoch, metrics, objective=spec.metric, history=history[:epoch])
            if k < 2:
                finish_trial(study, number, {"test_error": base / epochs, "test_loss": 1.0}, objective=spec.metric)
            elif k == 2:
                fail_trial(study, number, "RuntimeError: boom")
            elif index == 0:
                storage_of(study).set_trial_user_attr(
                    storage_of(study).get_trial_id_from_study_id_trial_number(study_id_of(study), number),
                    Attr.HISTORY, [{"epoch": 1, "test_error": math.nan, "note": "a \"quoted\", odd: value"}])


def old_row(key: str, trial: FrozenTrial) -> dict[str, Any]:
    """What the service answered for a trial when it loaded the whole record (its `trial_row` of FrozenTrials)."""
    def finite(value: Any) -> float | None:
        if value is None or isinstance(value, bool):
            return None
        number = float(value)
        return number if math.isfinite(number) else None

    attrs = trial.user_attrs
    variant, _, facet = key.partition("/")
    history = attrs.get(Attr.HISTORY)
    if isinstance(history, list):
        history = [{k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in entry.items()}
                   for entry in history]
    values = attrs.get(Attr.HYPERPARAMETERS)
    return {
        "variant": variant, "facet": facet or None, "number": trial.number, "state": trial.state.name,
        "params": dict(trial.params), "seed": attrs.get(Attr.SEED) if isinstance(attrs.get(Attr.SEED), int) else None,
        "value": finite(trial.value) if trial.values is not None and len(trial.values) == 1 else None,
        "epochs_done": attrs.get(Attr.EPOCHS_DONE), "epochs_budget": attrs.get(Attr.EPOCHS_BUDGET),
        "diverged": bool(attrs.get(Attr.DIVERGED, False)), "stopped_early": bool(attrs.get(Attr.STOPPED_EARLY, False)),
        **{name: finite(attrs.get(name)) for name in ("test_error", "test_loss", "train_error", "train_loss",
                                                       "images_per_s", "wall_s")},
        "started_at": None if trial.datetime_start is None else trial.datetime_start.astimezone(timezone.utc),
        "completed_at": None if trial.datetime_complete is None else trial.datetime_complete.astimezone(timezone.utc),
        "error": attrs.get(Attr.ERROR) if isinstance(attrs.get(Attr.ERROR), str) else None,
        "hyperparameters": values if isinstance(values, dict) else None,
        "history": history if isinstance(history, list) else None,
    }


def old_trials(storage: Any, record_name: str, spec: SweepSpec) -> list[TrialOut]:
    """Every trial, studies in spec order, trials by number, from `get_all_trials`."""
    out = []
    for variant, facet in spec.studies():
        study_id = storage.get_study_id_from_name(study_name(record_name, variant, facet))
        for trial in sorted(storage.get_all_trials(study_id, deepcopy=False), key=lambda t: t.number):
            out.append(TrialOut(**old_row(study_key(variant, facet), trial)))
    return out


def _matches(trial: TrialOut, variant: str | None, facet: str | None, state: str | None) -> bool:
    return ((variant is None or trial.variant == variant) and (facet is None or trial.facet == facet)
            and (state is None or trial.state == state))


@pytest.fixture(scope="module")
def faceted(shared_api):
    """One recorded faceted sweep per backend, read (never changed) by the tests below."""
    sweep = shared_api.client.post(SWEEPS, json=FACETED, headers=shared_api.auth("alice")).json()
    spec = SweepSpec.model_validate(FACETED)
    storage = make_storage(shared_api.settings.storage)
    record_like_workers(storage, sweep["record_name"], spec)
    yield sweep, spec, storage
    storage.engine.dispose()


def test_pages_and_filters_are_exactly_the_all_trials_result(shared_api, faceted):
    api = shared_api
    sweep, spec, storage = faceted
    everything = old_trials(storage, sweep["record_name"], spec)
    assert len(everything) == 16 and {t.state for t in everything} == {"COMPLETE", "FAIL", "RUNNING"}
    url = f"{SWEEPS}/{sweep['id']}/trials"
    cases = [(variant, facet, state) for variant in (None, "sgd", "sgdw", "adamw")
             for facet in (None, "schedule=step", "schedule=cosine") for state in STATES]
    for variant, facet, state in cases:
        wanted = [t.model_dump(mode="json") for t in everything if _matches(t, variant, facet, state)]
        for limit, offset in ((1000, 0), (3, 0), (3, 2), (5, 3), (1, len(wanted) - 1), (4, len(wanted)), (2, 40)):
            params = {k: v for k, v in {"variant": variant, "facet": facet, "state": state}.items() if v}
            body = api.client.get(url, params={**params, "limit": limit, "offset": max(0, offset), "history": "true"},
                                  headers=api.auth("bob")).json()
            assert body["total"] == len(wanted), (params, limit, offset)
            assert body["items"] == wanted[max(0, offset): max(0, offset) + limit], (params, limit, offset)
            assert (body["limit"], body["offset"]) == (limit, max(0, offset))
    nan = next(t for t in everything if t.state == "RUNNING" and t.facet == "schedule=constant" and t.variant == "sgd")
    assert nan.history == [{"epoch": 1, "test_error": None, "note": 'a "quoted", odd: value'}], "NaN: null"


def test_pages_without_history_are_the_same_trials_with_history_null(shared_api, faceted):
    api = shared_api
    sweep, spec, storage = faceted
    everything = old_trials(storage, sweep["record_name"], spec)
    url = f"{SWEEPS}/{sweep['id']}/trials"
    for params in ({"limit": 1000}, {"limit": 3, "offset": 5, "state": "COMPLETE"}):
        full = api.client.get(url, params={**params, "history": "true"}, headers=api.auth("bob")).json()
        bare = api.client.get(url, params={**params, "history": "false"}, headers=api.auth("bob")).json()
        default = api.client.get(url, params=params, headers=api.auth("bob")).json()
        assert default == bare, "histories are opt-in"
        assert full["total"] == bare["total"] and len(bare["items"]) == len(full["items"]) > 0
        assert any(item["history"] for item in full["items"])
        assert bare["items"] == [{**item, "history": None} for item in full["items"]], params
    assert len(everything) == 16
    items, _ = sweep_trial_page(storage, sweep["record_name"], spec.studies(), offset=0, limit=16, history=False)
    assert all("history" not in record.raw_attrs and record.raw_attrs for _key, record in items), "not read at all"


def test_library_pages_cross_studies_and_count_in_the_database(faceted):
    sweep, spec, storage = faceted
    record = sweep["record_name"]
    everything = old_trials(storage, record, spec)
    for state in STATES:
        wanted = [(t.variant, t.facet, t.number) for t in everything if state is None or t.state == state]
        for offset in range(0, len(wanted) + 2):
            items, total = sweep_trial_page(storage, record, spec.studies(), offset=offset, limit=3, state=state)
            got = [(*key.partition("/")[::2], record_.number) for key, record_ in items]
            assert total == len(wanted) and got == [(v, f or "", n) for v, f, n in wanted[offset: offset + 3]]
    counts = count_sweep_trials(storage, record, [("sgd", None), *spec.studies()], state="COMPLETE")
    assert counts == {"sgd": 0, **{study_key(v, f): 2 for v, f in spec.studies()}}, "a study not created yet: 0"
    with pytest.raises(ValueError, match="unknown trial state 'DONE'"):
        sweep_trial_page(storage, record, spec.studies(), offset=0, limit=3, state="DONE")


def test_streamed_exports_are_the_whole_record_exports(shared_api, faceted):
    sweep, spec, storage = faceted
    with shared_api.state.sessions() as session:
        row = session.get(SweepRow, sweep["id"])
    everything = old_trials(storage, sweep["record_name"], spec)
    whole_csv = trials_csv([t.model_dump() for t in everything], spec.swept_axes, extra={"sweep_id": row.id})
    whole_json = SweepExport(sweep=sweep_out(row), spec=row.spec, trials=everything).model_dump(mode="json")
    for page_size in (1, 3, 100):
        streamed = "".join(csv_chunks(storage, row.record_name, spec, extra={"sweep_id": row.id},
                                      page_size=page_size))
        assert streamed == whole_csv, page_size
        chunks = list(json_export_chunks(storage, row, page_size=page_size))
        assert len(chunks) == 2 + 4 * math.ceil(4 / page_size), "a piece per page, never the whole record at once"
        assert json.loads(b"".join(chunks)) == whole_json, page_size


def test_export_endpoints_stream_every_trial_with_history_and_hyperparameters(shared_api, faceted):
    api = shared_api
    sweep, spec, storage = faceted
    everything = old_trials(storage, sweep["record_name"], spec)
    with api.client.stream("GET", f"{SWEEPS}/{sweep['id']}/export.csv", headers=api.auth("bob")) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
        assert "content-length" not in response.headers, "streamed, not one body"
        text = "".join(response.iter_text())
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["variant"], r["facet"], int(r["number"])) for r in rows] == [
        (t.variant, t.facet, t.number) for t in everything]
    done = next(r for r in rows if r["state"] == "COMPLETE")
    assert len(json.loads(done["history"])) == 3 and json.loads(done["hyperparameters"])["schedule"] == "constant"
    assert done["history"] == json.dumps(json.loads(done["history"]), separators=(",", ":")), "compact JSON"
    exported = api.client.get(f"{SWEEPS}/{sweep['id']}/export.json", headers=api.auth("bob")).json()
    assert exported["trials"] == [t.model_dump(mode="json") for t in everything]
    assert exported["sweep"]["id"] == sweep["id"] and exported["spec"]["facet"] == FACETED["facet"]


def test_keyset_pages_neither_repeat_nor_skip_while_trials_are_added(storage_url):
    storage = make_storage(storage_url)
    spec = SweepSpec.model_validate({k: v for k, v in FACETED.items() if k != "facet"} | {"variants": ["sgd"]})
    study = open_study(storage, "grow", "sgd")
    enqueue_cells(study, spec.cells("sgd"), epochs_budget=3)
    pages = iter_sweep_trials(storage, "grow", spec.studies(), page_size=2)
    first = next(pages)
    enqueue_cells(study, [cell.__class__(cell.y, cell.x, 7, cell.axes) for cell in spec.cells("sgd")[:3]],
                  epochs_budget=3)  # three more trials, numbered after the others
    numbers = [record.number for _, record in first] + [record.number for page in pages for _, record in page]
    assert numbers == list(range(7))
    storage.engine.dispose()


def test_kept_finished_records_are_the_records_and_running_ones_are_read_again(storage_url, monkeypatch):
    """Pages without histories keep finished trials' records; a trial that finishes is read (and kept) anew."""
    from hpscape.landscapes.record import _optuna, pages

    storage = make_storage(storage_url)
    spec = SweepSpec.model_validate({k: v for k, v in FACETED.items() if k != "facet"} | {"variants": ["sgd"]})
    study = open_study(storage, "kept", "sgd")
    enqueue_cells(study, spec.cells("sgd"), epochs_budget=3)
    first = claim_next(study)
    assert first is not None
    finish_trial(study, first, {"test_error": 0.25, "test_loss": 0.5, "train_loss": 0.1}, objective="test_error")
    running = claim_next(study)
    assert running is not None
    read = lambda: sweep_trial_page(storage, "kept", spec.studies(), offset=0, limit=10, history=False)[0]  # noqa: E731
    pages.clear_record_cache()
    detailed: list[int] = []
    page = _optuna.trial_page
    monkeypatch.setattr(_optuna, "trial_page", lambda *a, known=None, **k: [
        (detailed.append(row["number"]) if row["user_attrs"] is not None else None) or row
        for row in page(*a, known=known, **k)])
    cold = read()
    assert sorted(detailed) == list(range(len(cold)))  # every detail read once
    detailed.clear()
    warm = read()
    assert warm == cold and sorted(detailed) == sorted(r.number for _, r in cold if r.state not in ("COMPLETE",
                                                                                                   "FAIL", "PRUNED"))
    finish_trial(study, running, {"test_error": 0.125, "test_loss": 0.4, "train_loss": 0.2}, objective="test_error")
    detailed.clear()
    after = dict((r.number, r) for _, r in read())
    assert after[running].state == "COMPLETE" and after[running].attr("test_error") == 0.125
    assert running in detailed
    pages.clear_record_cache()
    assert [r for _, r in read()] == list(after.values())
    storage.engine.dispose()


def test_pages_of_a_storage_without_sql_come_from_optunas_api():
    storage = InMemoryStorage()
    spec = SweepSpec.model_validate(FACETED)
    record_like_workers(storage, "mem", spec)
    everything = old_trials(storage, "mem", spec)
    items, total = sweep_trial_page(storage, "mem", spec.studies(), offset=5, limit=4, state=None)
    assert total == 16 and [record.number for _, record in items] == [t.number for t in everything[5:9]]
    pages = list(iter_sweep_trials(storage, "mem", spec.studies(), page_size=3))
    assert sum(len(page) for page in pages) == 16
    bare, _ = sweep_trial_page(storage, "mem", spec.studies(), offset=5, limit=4, history=False)
    assert [record.number for _, record in bare] == [record.number for _, record in items]
    assert all("history" in full.raw_attrs and "history" not in record.raw_attrs
               for (_, full), (_, record) in zip(items, bare))


def test_concurrent_exports_beyond_the_stream_budget_all_finish_and_status_still_answers(shared_api, faceted):
    api = shared_api
    sweep, _, _ = faceted
    results: list[tuple[str, int, int]] = []

    def get(path: str) -> None:
        response = api.client.get(f"{SWEEPS}/{sweep['id']}{path}", headers=api.auth("bob"))
        results.append((path, response.status_code, len(response.content)))

    threads = [threading.Thread(target=get, args=(path,)) for path in ("/export.csv", "/export.json") * 3]
    threads += [threading.Thread(target=get, args=("",)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(status for _, status, _ in results) == [200] * 10
    sizes = {path: {size for p, _, size in results if p == path} for path in ("/export.csv", "/export.json")}
    assert all(len(found) == 1 for found in sizes.values()), f"every export of one record is the same: {sizes}"


def test_a_page_without_histories_is_read_once_per_status_cache_and_one_with_them_every_time(make_api, tmp_path):
    api = make_api(f"sqlite:///{tmp_path / 'optuna.db'}", status_cache_s=60.0)
    sweep = api.client.post(SWEEPS, json=FACETED, headers=api.auth("alice")).json()
    spec = SweepSpec.model_validate(FACETED)
    storage = make_storage(api.settings.storage)
    record_like_workers(storage, sweep["record_name"], spec)
    url, params = f"{SWEEPS}/{sweep['id']}/trials", {"variant": "sgd", "facet": "schedule=constant", "limit": 4}
    first = api.client.get(url, params=params, headers=api.auth("bob")).json()
    running = next(item for item in first["items"] if item["state"] == "RUNNING")
    study = open_study(storage, sweep["record_name"], "sgd", spec.studies()[0][1])
    finish_trial(study, running["number"], {"test_error": 0.5, "test_loss": 1.0}, objective=spec.metric)
    again = api.client.get(url, params=params, headers=api.auth("bob")).json()
    assert again == first, "within HPSCAPE_STATUS_CACHE_S the page is the one read"
    fresh = api.client.get(url, params={**params, "history": "true"}, headers=api.auth("bob")).json()
    assert {item["number"]: item["state"] for item in fresh["items"]}[running["number"]] == "COMPLETE"
    other = api.client.get(url, params={**params, "offset": 1}, headers=api.auth("bob")).json()
    assert [item["number"] for item in other["items"]] == [item["number"] for item in fresh["items"]][1:]
    assert api.client.get(f"{SWEEPS}/0000/trials", params=params, headers=api.auth("bob")).status_code == 404
    assert api.client.get(url, params=params).status_code == 401
    storage.engine.dispose()


def test_a_just_stale_page_is_answered_at_once_and_renewed_behind(make_api, tmp_path):
    import time

    ttl = 0.5
    api = make_api(f"sqlite:///{tmp_path / 'optuna.db'}", status_cache_s=ttl)
    sweep = api.client.post(SWEEPS, json=FACETED, headers=api.auth("alice")).json()
    spec = SweepSpec.model_validate(FACETED)
    storage = make_storage(api.settings.storage)
    record_like_workers(storage, sweep["record_name"], spec)
    url, params = f"{SWEEPS}/{sweep['id']}/trials", {"variant": "sgd", "facet": "schedule=constant", "limit": 4}
    get = lambda: api.client.get(url, params=params, headers=api.auth("bob")).json()  # noqa: E731
    states = lambda body: {item["number"]: item["state"] for item in body["items"]}  # noqa: E731
    first = get()
    running = next(number for number, state in states(first).items() if state == "RUNNING")
    study = open_study(storage, sweep["record_name"], "sgd", spec.studies()[0][1])
    finish_trial(study, running, {"test_error": 0.5, "test_loss": 1.0}, objective=spec.metric)
    time.sleep(ttl * 1.2)  # stale, but less than 2 ttl old
    assert get() == first, "the previous answer, at once, while it is read again"
    deadline = time.monotonic() + 10
    while states(get())[running] != "COMPLETE":  # the renewal lands without a request waiting for it
        assert time.monotonic() < deadline, "the stale page was never renewed"
        time.sleep(0.05)
    total = get()["total"]
    cell = spec.cells("sgd")[0]
    enqueue_cells(study, [cell.__class__(cell.y, cell.x, 7, cell.axes)], epochs_budget=spec.epochs)
    time.sleep(ttl * 2.5)  # long unasked: too old to give, so read before answering
    assert get()["total"] == total + 1
    storage.engine.dispose()

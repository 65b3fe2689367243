"""The Optuna record layer, on SQLite and PostgreSQL (the `storage_url` fixture)."""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.storages import RDBStorage
from optuna.study import Study
from optuna.trial import TrialState

from hpscape.landscapes import Cell, SweepSpec
from hpscape.landscapes.record import (
    DIVERGED_LOSS,
    DIVERGED_VALUE,
    Attr,
    ask_bayes,
    claim_next,
    enqueue_cells,
    ensure_sqlite_dir,
    fail_trial,
    finish_trial,
    get_trial,
    list_sweep_studies,
    make_storage,
    open_study,
    reconcile_orphans,
    record_epoch,
    running_trials,
    sqlite_file,
    stop_trial,
    summarize_trials,
    sweep_summary,
    trial_cell,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

METRICS = {"test_error": 0.25, "test_loss": 0.7, "train_loss": 0.5, "train_error": 0.2,
           "images_per_s": 900.0, "wall_s": 3.5}


@pytest.fixture
def storage(storage_url: str) -> Iterator[RDBStorage]:
    store = make_storage(storage_url)
    yield store
    store.engine.dispose()


@pytest.fixture
def spec() -> SweepSpec:
    """3 x 3 grid x 2 variants x 1 seed = 18 trials."""
    return SweepSpec.model_validate(
        {
            "name": "rec",
            "dataset": "synthetic",
            "model": "shake_shake_8_2x16d",
            "variants": ["sgd", "adamw"],
            "epochs": 4,
            "batch_size": 8,
            "grid": {"lr": [0.01, 0.1, 1.0], "weight_decay": [0.0, 1e-4, 1e-3]},
        }
    )


@pytest.fixture
def study(storage: RDBStorage) -> Study:
    """One study with a single enqueued cell."""
    study = open_study(storage, "one", "sgdw")
    assert enqueue_cells(study, [Cell(0.1, 1e-3, 0)], epochs_budget=4) == 1
    return study


def _enqueue_all(storage: RDBStorage, spec: SweepSpec) -> dict[str, Study]:
    studies = {v: open_study(storage, spec.name, v) for v in spec.variants}
    for variant, study in studies.items():
        enqueue_cells(study, spec.cells(variant), epochs_budget=spec.epochs)
    return studies


def _claim(study: Study) -> int:
    number = claim_next(study)
    assert number is not None, "expected a WAITING trial to claim"
    return number


# ---------------------------------------------------------------------------------------------
# Grid: enqueue, claim, finish


def test_enqueue_is_idempotent(storage: RDBStorage, spec: SweepSpec) -> None:
    studies = {v: open_study(storage, spec.name, v) for v in spec.variants}
    for variant, study in studies.items():
        assert enqueue_cells(study, spec.cells(variant), epochs_budget=spec.epochs) == 9
    for variant, study in studies.items():
        assert enqueue_cells(study, spec.cells(variant), epochs_budget=spec.epochs) == 0
    # A fresh handle on the same storage sees the same 18 trials.
    again = list_sweep_studies(make_storage(storage.url), spec.name)
    assert list(again) == ["sgd", "adamw"]
    waiting = [t for s in again.values() for t in s.get_trials(states=(TrialState.WAITING,))]
    assert len(waiting) == 18
    assert sum(len(s.get_trials()) for s in again.values()) == 18
    trial = again["adamw"].trials[4]
    assert trial.params == {"lr": 0.1, "weight_decay": 1e-4}
    assert trial.distributions == {
        "lr": FloatDistribution(0.01, 1.0, log=True),
        "weight_decay": FloatDistribution(0.0, 1e-3),
    }
    assert trial.user_attrs == {
        Attr.VARIANT: "adamw",
        Attr.SEED: 0,
        Attr.CELL: "lr=0.1|wd=0.0001|seed=0",
        Attr.EPOCHS_BUDGET: 4,
    }
    assert trial_cell(trial) == Cell(0.1, 1e-4, 0)


def test_claim_then_finish_every_cell_exactly_once(storage: RDBStorage, spec: SweepSpec) -> None:
    studies = _enqueue_all(storage, spec)
    claimed: list[tuple[str, int]] = []
    before = datetime.now() - timedelta(seconds=5)
    for variant, study in studies.items():
        while (number := claim_next(study)) is not None:
            claimed.append((variant, number))
    assert len(claimed) == 18 and len(set(claimed)) == 18
    for variant, number in claimed:
        trial = get_trial(studies[variant], number)
        assert trial.state == TrialState.RUNNING
        # Claiming stamps the start time (local time, as Optuna reports it).
        assert trial.datetime_start is not None
        assert before <= trial.datetime_start <= datetime.now() + timedelta(seconds=5)
    assert all(claim_next(s) is None for s in studies.values())
    for variant, number in claimed:
        assert finish_trial(studies[variant], number, METRICS, objective="test_error")

    for variant, study in list_sweep_studies(storage, spec.name).items():
        trials = study.get_trials()
        assert [t.state for t in trials] == [TrialState.COMPLETE] * 9
        assert sorted(t.user_attrs[Attr.CELL] for t in trials) == sorted(c.key for c in spec.cells(variant))
        assert all(t.value == 0.25 and t.user_attrs[Attr.DIVERGED] is False for t in trials)
        assert all(t.user_attrs["images_per_s"] == 900.0 for t in trials)
    summary = sweep_summary(storage, spec.name)
    assert summary["sgd"]["counts"] == {"RUNNING": 0, "COMPLETE": 9, "PRUNED": 0, "FAIL": 0, "WAITING": 0}
    assert summary["adamw"]["best"] == {"number": 0, "value": 0.25, "params": {"lr": 0.01, "weight_decay": 0.0},
                                        "seed": 0}


def test_claims_go_in_number_order(storage: RDBStorage) -> None:
    study = open_study(storage, "order", "sgd")
    enqueue_cells(study, [Cell(0.1 * (i + 1), 0.0, 0) for i in range(4)], epochs_budget=1)
    assert [claim_next(study) for _ in range(5)] == [0, 1, 2, 3, None]


def test_summary_reports_best_and_counts(storage: RDBStorage, spec: SweepSpec) -> None:
    studies = _enqueue_all(storage, spec)
    sgd = studies["sgd"]
    a, b, c, d = (_claim(sgd) for _ in range(4))
    finish_trial(sgd, a, {"test_error": 0.3}, objective="test_error")
    finish_trial(sgd, b, {"test_error": 0.1}, objective="test_error")
    finish_trial(sgd, c, {"test_error": math.nan}, objective="test_error")
    fail_trial(sgd, d, "boom")
    summary = sweep_summary(storage, spec.name)
    assert summary["sgd"]["counts"] == {"RUNNING": 0, "COMPLETE": 3, "PRUNED": 0, "FAIL": 1, "WAITING": 5}
    assert summary["sgd"]["diverged"] == 1
    assert summary["sgd"]["best"]["number"] == b and summary["sgd"]["best"]["value"] == 0.1
    assert summary["sgd"]["study"] == "rec/sgd" and summary["sgd"]["n_trials"] == 9
    assert summary["adamw"]["best"] is None
    assert sweep_summary(storage, "no-such-sweep") == {}


# ---------------------------------------------------------------------------------------------
# Outcomes


def test_diverged_trial_is_complete_with_the_defined_value(storage: RDBStorage) -> None:
    study = open_study(storage, "div", "adam")
    enqueue_cells(study, [Cell(1.0, 0.0, s) for s in range(4)], epochs_budget=2)
    a, b, c, d = (_claim(study) for _ in range(4))
    assert finish_trial(study, a, {"test_error": math.nan, "test_loss": math.inf}, objective="test_error")
    assert finish_trial(study, b, {"test_error": 0.9, "test_loss": math.nan}, objective="test_loss")
    assert finish_trial(study, c, {"test_error": 0.9, "test_loss": 2.0}, objective="test_loss", diverged=True)
    ta, tb, tc = (get_trial(study, n) for n in (a, b, c))
    assert (ta.state, ta.value, ta.user_attrs[Attr.DIVERGED]) == (TrialState.COMPLETE, DIVERGED_VALUE, True)
    assert (tb.state, tb.value, tb.user_attrs[Attr.DIVERGED]) == (TrialState.COMPLETE, DIVERGED_LOSS, True)
    assert (tc.state, tc.value, tc.user_attrs[Attr.DIVERGED]) == (TrialState.COMPLETE, DIVERGED_LOSS, True)
    # Non-finite metrics are stored as None: JSON (and HTTP responses) have no NaN.
    assert ta.user_attrs[Attr.TEST_ERROR] is None and ta.user_attrs[Attr.TEST_LOSS] is None
    assert tc.user_attrs[Attr.TEST_LOSS] == 2.0
    assert math.isfinite(DIVERGED_LOSS) and DIVERGED_VALUE == 1.0
    # A worker may report the flag among its metrics (as 0.0 / 1.0): it is stored as a boolean.
    record_epoch(study, d, 1, {"test_error": 0.8, "diverged": 0.0}, objective="test_error")
    assert get_trial(study, d).user_attrs[Attr.DIVERGED] is False
    assert finish_trial(study, d, {"test_error": 0.8, "diverged": 1.0}, objective="test_error")
    td = get_trial(study, d)
    assert (td.value, td.user_attrs[Attr.DIVERGED]) == (DIVERGED_VALUE, True)
    assert running_trials(study) == []


def test_record_epoch_twice_is_harmless(study: Study) -> None:
    number = _claim(study)
    assert record_epoch(study, number, 1, {"test_error": 0.5, "wall_s": 1.0}, objective="test_error")
    assert record_epoch(study, number, 2, {"test_error": 0.4, "wall_s": 2.0}, objective="test_error")
    # A resumed worker repeats epoch 2 with slightly different numbers.
    assert record_epoch(study, number, 2, {"test_error": 0.35, "wall_s": 2.5}, objective="test_error")
    assert record_epoch(study, number, 2, {"test_error": 0.35, "wall_s": 2.5}, objective="test_error")
    trial = get_trial(study, number)
    assert trial.intermediate_values == {1: 0.5, 2: 0.35}
    assert trial.user_attrs[Attr.EPOCHS_DONE] == 2 and trial.user_attrs[Attr.WALL_S] == 2.5
    assert trial.state == TrialState.RUNNING
    assert record_epoch(study, number, 3, {"test_error": math.nan}, objective="test_error")
    assert get_trial(study, number).intermediate_values[3] == DIVERGED_VALUE
    finish_trial(study, number, {"test_error": 0.3}, objective="test_error")
    # Late epochs after the finish are ignored, not errors.
    assert not record_epoch(study, number, 4, {"test_error": 0.2}, objective="test_error")
    assert 4 not in get_trial(study, number).intermediate_values


def test_record_epoch_rejects_bad_input(study: Study) -> None:
    number = _claim(study)
    with pytest.raises(KeyError, match="no 'test_loss'"):
        record_epoch(study, number, 1, {"test_error": 0.5}, objective="test_loss")
    with pytest.raises(ValueError, match="epoch must be an integer >= 1"):
        record_epoch(study, number, 0, {"test_error": 0.5}, objective="test_error")
    for reserved in (Attr.SEED, Attr.CELL, Attr.EPOCHS_DONE, Attr.WORKER):
        with pytest.raises(ValueError, match=f"metric name '{reserved}' is reserved"):
            record_epoch(study, number, 1, {"test_error": 0.5, reserved: 3}, objective="test_error")
    assert get_trial(study, number).user_attrs[Attr.SEED] == 0
    with pytest.raises(KeyError, match="no trial number 99"):
        record_epoch(study, 99, 1, {"test_error": 0.5}, objective="test_error")


def test_stop_trial_is_pruned_with_epochs_done(study: Study) -> None:
    number = _claim(study)
    for epoch, err in [(1, 0.6), (2, 0.5)]:
        record_epoch(study, number, epoch, {"test_error": err}, objective="test_error")
    assert stop_trial(study, number, epochs_done=2)
    trial = get_trial(study, number)
    assert trial.state == TrialState.PRUNED and trial.value == 0.5
    assert trial.user_attrs[Attr.STOPPED_EARLY] is True and trial.user_attrs[Attr.EPOCHS_DONE] == 2
    assert not stop_trial(study, number, epochs_done=3)
    assert get_trial(study, number).user_attrs[Attr.EPOCHS_DONE] == 2
    # PRUNED takes the cell: nothing is enqueued again.
    assert enqueue_cells(study, [Cell(0.1, 1e-3, 0)], epochs_budget=4) == 0


def test_failed_cell_is_enqueued_again(study: Study) -> None:
    first = _claim(study)
    assert fail_trial(study, first, "CUDA out of memory\n" + "x" * 20_000)
    failed = get_trial(study, first)
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs[Attr.ERROR].startswith("...") and len(failed.user_attrs[Attr.ERROR]) == 10_000
    assert not fail_trial(study, first, "again")
    assert enqueue_cells(study, [Cell(0.1, 1e-3, 0)], epochs_budget=4) == 1
    assert enqueue_cells(study, [Cell(0.1, 1e-3, 0)], epochs_budget=4) == 0
    second = _claim(study)
    assert second != first
    assert get_trial(study, second).user_attrs[Attr.CELL] == failed.user_attrs[Attr.CELL]


def test_finish_trial_is_idempotent(study: Study) -> None:
    number = _claim(study)
    assert finish_trial(study, number, {"test_error": 0.2, "wall_s": 1.0}, objective="test_error")
    assert not finish_trial(study, number, {"test_error": 0.9, "wall_s": 9.0}, objective="test_error")
    trial = get_trial(study, number)
    assert (trial.state, trial.value, trial.user_attrs[Attr.WALL_S]) == (TrialState.COMPLETE, 0.2, 1.0)
    assert not fail_trial(study, number, "late failure")
    assert not stop_trial(study, number, epochs_done=1)
    assert get_trial(study, number).state == TrialState.COMPLETE


# ---------------------------------------------------------------------------------------------
# Bayes, orphans, studies


def test_ask_bayes(storage: RDBStorage) -> None:
    study = open_study(storage, "bo", "adamw", sampler=optuna.samplers.TPESampler(seed=1))
    numbers = [
        ask_bayes(study, ranges={"lr": (1e-4, 1e-1), "weight_decay": [1e-5, 1e-2]}, seed=i % 2, epochs_budget=3)
        for i in range(4)
    ]
    assert numbers == [0, 1, 2, 3]
    for i, number in enumerate(numbers):
        trial = get_trial(study, number)
        assert trial.state == TrialState.RUNNING
        assert 1e-4 <= trial.params["lr"] <= 1e-1 and 1e-5 <= trial.params["weight_decay"] <= 1e-2
        assert trial.distributions["weight_decay"] == FloatDistribution(1e-5, 1e-2, log=True)
        assert trial.user_attrs[Attr.SEED] == i % 2 and trial.user_attrs[Attr.EPOCHS_BUDGET] == 3
        assert trial.user_attrs[Attr.VARIANT] == "adamw"
        assert Cell.from_key(trial.user_attrs[Attr.CELL]) == trial_cell(trial)
        finish_trial(study, number, {"test_loss": 1.0 / (i + 1)}, objective="test_loss")
    assert study.best_trial.number == 3
    with pytest.raises(ValueError, match="0 < low < high"):
        ask_bayes(study, ranges={"lr": (1e-1, 1e-4), "weight_decay": (1e-5, 1e-2)}, seed=0, epochs_budget=3)


def test_reconcile_orphans_returns_running_trials(storage: RDBStorage, spec: SweepSpec) -> None:
    study = _enqueue_all(storage, spec)["sgd"]
    a, b, c = (_claim(study) for _ in range(3))
    finish_trial(study, b, METRICS, objective="test_error")
    # A new driver process finds the orphans without failing them.
    reopened = open_study(make_storage(storage.url), spec.name, "sgd", create=False)
    assert running_trials(reopened) == [a, c]
    assert reconcile_orphans(reopened) == [a, c]
    assert reconcile_orphans(reopened, [c, b, 42]) == [c]
    assert get_trial(reopened, a).state == TrialState.RUNNING
    # Resumed under the same number, it finishes normally.
    record_epoch(reopened, a, 1, METRICS, objective="test_error")
    assert finish_trial(reopened, a, METRICS, objective="test_error")
    assert reconcile_orphans(reopened) == [c]


def test_open_study_checks_names(storage: RDBStorage) -> None:
    with pytest.raises(KeyError, match="no study 'nope/sgd'"):
        open_study(storage, "nope", "sgd", create=False)
    with pytest.raises(ValueError, match="unknown variant 'lion'"):
        open_study(storage, "x", "lion")
    with pytest.raises(ValueError, match="bad sweep name 'a/b'"):
        open_study(storage, "a/b", "sgd")
    optuna.create_study(storage=storage, study_name="max/sgd", direction="maximize")
    with pytest.raises(ValueError, match="not minimize"):
        open_study(storage, "max", "sgd")
    first = open_study(storage, "same", "sgd")
    assert open_study(storage, "same", "sgd")._study_id == first._study_id
    # Studies of other sweeps (and names that only share a prefix) are not listed.
    open_study(storage, "same2", "adam")
    assert list(list_sweep_studies(storage, "same")) == ["sgd"]


def test_storages_opened_at_once_on_a_fresh_database_all_work(storage_url: str) -> None:
    # Optuna creates its tables on first use; without make_storage's retry, some of these
    # fail with "table ... already exists" or a duplicate key.
    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def open_one() -> None:
        try:
            barrier.wait(timeout=30)
            store = make_storage(storage_url)
            open_study(store, "fresh", "sgd")
            store.engine.dispose()
            outcomes.append("ok")
        except Exception as exc:  # reported below
            outcomes.append(repr(exc))

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert outcomes == ["ok"] * 6, outcomes


def test_sqlite_storage_uses_wal_unless_told_not_to(tmp_path: Path) -> None:
    def journal_mode(path: Path) -> str:
        # A fresh connection reads the mode from the file header (pooled ones may lag).
        with contextlib.closing(sqlite3.connect(path)) as connection:
            return str(connection.execute("PRAGMA journal_mode").fetchone()[0])

    make_storage(f"sqlite:///{tmp_path / 'wal.db'}")
    make_storage(f"sqlite:///{tmp_path / 'plain.db'}", sqlite_wal=False)
    assert (journal_mode(tmp_path / "wal.db"), journal_mode(tmp_path / "plain.db")) == ("wal", "delete")


@pytest.mark.postgres
def test_plain_postgresql_urls_use_psycopg(postgres_url: str) -> None:
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    storage = make_storage(plain)
    assert storage.engine.dialect.driver == "psycopg"
    assert open_study(storage, "pg", "sgd").study_name == "pg/sgd"
    storage.engine.dispose()


# ---------------------------------------------------------------------------------------------
# Concurrency: several processes claim and finish from one study


N_PROCESSES = 8
N_CELLS = 80


def _claim_and_finish_worker(url: str, barrier: Any, results: Any) -> None:
    """Runs in a spawned process: claim and finish trials until none waits."""
    try:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = make_storage(url)
        study = open_study(storage, "race", "sgd", create=False)
        barrier.wait(timeout=120)
        claimed = []
        while (number := claim_next(study)) is not None:
            claimed.append(number)
            trial = get_trial(study, number)
            record_epoch(study, number, 1, {"test_error": 0.5}, objective="test_error")
            time.sleep(0.01)  # a sliver of "training" so the processes interleave
            if not finish_trial(study, number, {"test_error": trial.params["lr"]}, objective="test_error"):
                raise AssertionError(f"trial {number} was finished by another process")
        results.put(("ok", claimed))
    except BaseException as exc:  # report everything: the parent must not hang on a lost result
        results.put(("error", repr(exc)))


@pytest.mark.slow
def test_concurrent_claims_take_each_trial_once(storage_url: str) -> None:
    # On SQLite this also guards record._claim_sqlite: Optuna's own WAITING -> RUNNING step is
    # not atomic there and hands one trial to several processes.
    storage = make_storage(storage_url)
    study = open_study(storage, "race", "sgd")
    cells = [Cell(0.001 * (i + 1), 0.0, 0) for i in range(N_CELLS)]
    assert enqueue_cells(study, cells, epochs_budget=1) == N_CELLS

    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(N_PROCESSES)
    results = ctx.Queue()
    processes = [
        ctx.Process(target=_claim_and_finish_worker, args=(storage_url, barrier, results))
        for _ in range(N_PROCESSES)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=240) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    errors = [detail for status, detail in outcomes if status != "ok"]
    assert not errors, errors

    claimed = [number for _, numbers in outcomes for number in numbers]
    assert sorted(claimed) == list(range(N_CELLS)), "every trial claimed exactly once"
    assert all(numbers for _, numbers in outcomes), [len(n) for _, n in outcomes]
    trials = open_study(make_storage(storage_url), "race", "sgd", create=False).get_trials()
    assert len(trials) == N_CELLS
    assert Counter(t.state for t in trials) == {TrialState.COMPLETE: N_CELLS}
    assert Counter(t.user_attrs[Attr.CELL] for t in trials) == Counter(c.key for c in cells)
    assert all(t.value == t.params["lr"] for t in trials)
    storage.engine.dispose()


def test_sqlite_file_and_its_directory(tmp_path):
    assert sqlite_file("sqlite:///runs/x.db") == Path("runs/x.db")
    assert sqlite_file(f"sqlite:///{tmp_path}/x.db") == tmp_path / "x.db"
    for other in ("sqlite:///:memory:", "sqlite://", "postgresql+psycopg://u@h/db"):
        assert sqlite_file(other) is None, other
    ensure_sqlite_dir(f"sqlite:///{tmp_path}/a/b/x.db")
    assert (tmp_path / "a" / "b").is_dir() and not (tmp_path / "a" / "b" / "x.db").exists()
    ensure_sqlite_dir("postgresql+psycopg://u@h/db")  # nothing to create, no error


# ---------------------------------------------------------------------------------------------
# Axes, facets, histories (hpscape 0.2)


def _history(epochs: int) -> list[dict[str, Any]]:
    return [{"epoch": e, "test_error": 0.5 / e, "test_loss": 1.0 / e, "train_loss": 0.9 / e, "train_error": 0.4 / e,
             "lr_t": 0.1 * (1 - e / 10), "epoch_seconds": 1.5, "images_per_s": 900.0, "diverged": False}
            for e in range(1, epochs + 1)]


def test_record_epoch_keeps_the_whole_history(study: Study) -> None:
    number = _claim(study)
    for epoch in (1, 2, 3):
        record_epoch(study, number, epoch, METRICS, objective="test_error", history=_history(epoch))
    trial = get_trial(study, number)
    assert trial.user_attrs[Attr.HISTORY] == _history(3)
    assert [e["epoch"] for e in trial.user_attrs[Attr.HISTORY]] == [1, 2, 3]
    with pytest.raises(ValueError, match="must hold 4 entries, got 3"):
        record_epoch(study, number, 4, METRICS, objective="test_error", history=_history(3))
    with pytest.raises(ValueError, match="holds epochs 1, 2, ... in order"):
        record_epoch(study, number, 2, METRICS, objective="test_error", history=_history(3)[1:])
    nan_epoch = [{**_history(1)[0], "test_loss": math.nan}]
    record_epoch(study, number, 1, METRICS, objective="test_error", history=nan_epoch)
    assert get_trial(study, number).user_attrs[Attr.HISTORY][0]["test_loss"] is None, "JSON has no NaN"


def test_any_two_axes_with_log_distributions_and_facets(storage: RDBStorage) -> None:
    spec = SweepSpec.model_validate({
        "name": "ax", "dataset": "synthetic", "model": "shake_shake_8_2x16d", "variants": ["sgd", "adam"],
        "epochs": 2, "batch_size": 8, "hyperparameters": {"weight_decay": 1e-4},
        "grid": {"lr": [0.01, 0.1], "batch_size": [16, 64]}, "facet": {"schedule": ["constant", "step"]}})
    for variant, facet in spec.studies():
        study = open_study(storage, spec.name, variant, facet)
        values_of = lambda cell, v=variant, f=facet: spec.trial_values(v, cell.params, f)  # noqa: E731
        assert enqueue_cells(study, spec.cells(variant), values_of=values_of) == 4
    listed = list_sweep_studies(storage, "ax")
    assert list(listed) == ["sgd/schedule=constant", "sgd/schedule=step", "adam/schedule=constant",
                            "adam/schedule=step"], "registry order, facets as created"
    trial = listed["adam/schedule=step"].trials[1]
    assert trial.params == {"lr": 0.01, "batch_size": 64}
    assert trial.distributions == {"lr": FloatDistribution(0.01, 0.1, log=True),
                                   "batch_size": optuna.distributions.IntDistribution(16, 64, log=True)}
    assert trial.user_attrs[Attr.FACET] == "schedule=step"
    assert trial.user_attrs[Attr.HYPERPARAMETERS] == {
        "lr": 0.01, "weight_decay": 1e-4, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "batch_size": 64, "epochs": 2,
        "label_noise": 0.0, "schedule": "step"}
    assert trial_cell(trial) == Cell(0.01, 64, 0, ("lr", "batch_size"))


def test_a_log_axis_without_zero_is_log_and_old_studies_keep_theirs(storage: RDBStorage) -> None:
    study = open_study(storage, "logwd", "sgd")
    enqueue_cells(study, [Cell(0.1, 2.0**-9, 0), Cell(0.1, 2.0**-3, 0)], epochs_budget=1)
    assert study.trials[0].distributions["weight_decay"] == FloatDistribution(2.0**-9, 2.0**-3, log=True)
    # A 0.1 record stored a linear decay distribution from 0; new cells in it keep that (Optuna refuses a mix).
    old = open_study(storage, "lin", "sgd")
    enqueue_cells(old, [Cell(0.1, 0.0, 0)], epochs_budget=1)
    assert enqueue_cells(old, [Cell(0.1, 2.0**-5, 0), Cell(0.2, 2.0**-3, 0)], epochs_budget=1) == 2
    assert not old.trials[-1].distributions["weight_decay"].log


def test_summary_in_the_database_equals_summarize_trials(storage: RDBStorage, spec: SweepSpec) -> None:
    studies = _enqueue_all(storage, spec)
    for variant, study in studies.items():
        for k in range(7):
            number = _claim(study)
            if k == 5:
                fail_trial(study, number, "boom")
            elif k == 4:
                finish_trial(study, number, {"test_error": math.nan}, objective="test_error")
            elif k < 4:
                finish_trial(study, number, {"test_error": 0.5 - 0.1 * ((number * 3) % 4)}, objective="test_error")
    fast = sweep_summary(storage, spec.name)
    slow = {key: summarize_trials(study.study_name, study.get_trials()) for key, study in studies.items()}
    assert fast == slow
    assert fast["sgd"]["diverged"] == 1 and fast["sgd"]["counts"]["RUNNING"] == 1
    planned = sweep_summary(storage, spec.name, [("sgd", None), ("sgdw", None)])
    assert planned["sgdw"] == {"study": "rec/sgdw", "n_trials": 0, "counts": {s.name: 0 for s in TrialState},
                               "diverged": 0, "best": None}, "a study not created yet shows zeros"

"""Landscapes built from studies filled with synthetic trials (no training), checked cell by cell.

The helpers at the top (`synthetic_error`, `sweep_trials`, `bulk_add_trials`, `seed_sweep`) are
also used by the dashboard tests and the landscape benchmark.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution, distribution_to_json
from optuna.storages import RDBStorage
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState, create_trial
from sqlalchemy import func, insert, select

from hpscape.landscapes import (
    DIVERGED_VALUE,
    SPEC_ATTR,
    VARIANTS,
    Attr,
    Cell,
    LandscapeError,
    SweepSpec,
    build_landscape,
    build_sweep_landscapes,
    claim_next,
    clear_landscape_cache,
    enqueue_cells,
    fail_trial,
    finish_trial,
    get_preset,
    make_storage,
    open_study,
    record_epoch,
    stop_trial,
    trial_details,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

# ---------------------------------------------------------------------------------------------
# Synthetic sweeps (shared with tests/test_dashboard*.py and bench/landscape_build.py)

def synthetic_error(variant: str, lr: float, wd: float) -> float:
    """A Figure-2-like test error: a diagonal valley for L2 variants (and torch's AdamW), an upright one otherwise.

    Coordinates are log2(lr / family scale) and log2(wd / 0.001); SGD+L2's best cells lie on
    lr * wd ~ 6e-5 (PROTOCOL section 3), SGDW's and AdamW's in a band at wd ~ 3.75e-4.
    """
    kind = VARIANTS[variant]
    x = math.log2(lr / kind.family.lr_scale)
    y = math.log2(wd / 0.001) if wd > 0 else -9.0
    base = 0.049 if variant == "adam" else 0.038  # Adam + L2 is worse (PROTOCOL section 1)
    if kind.decay != "decoupled":
        return base + 0.004 * (x + y + 4.0) ** 2 + 0.0012 * (x + 3.0) ** 2
    return base + 0.004 * (y + 1.4) ** 2 + 0.0012 * (x + 3.0) ** 2


def _distributions(lrs: Sequence[float], wds: Sequence[float]) -> dict[str, FloatDistribution]:
    # What record.enqueue_cells declares for a grid.
    return {
        "lr": FloatDistribution(min(lrs), max(lrs), log=True),
        "weight_decay": FloatDistribution(0.0, max(max(wds), 1e-12)),
    }


def make_trial(
    variant: str,
    cell: Cell,
    *,
    state: str = "done",
    epochs: int,
    value: float,
    distributions: dict[str, FloatDistribution],
    objective: str = "test_error",
    epochs_done: int | None = None,
) -> FrozenTrial:
    """A FrozenTrial as the workers leave it: params, bookkeeping attrs, per-epoch objective.

    `state`: done, diverged, running (at `epochs_done`), queued, failed or stopped.
    """
    params = {"lr": cell.y, "weight_decay": cell.x}
    attrs: dict[str, Any] = {
        Attr.VARIANT: variant,
        Attr.SEED: cell.seed,
        Attr.CELL: cell.key,
        Attr.EPOCHS_BUDGET: epochs,
    }
    if state == "queued":
        return create_trial(state=TrialState.WAITING, params=params, distributions=distributions,
                            user_attrs=attrs, system_attrs={"fixed_params": params})
    done = {"done": epochs, "diverged": max(1, epochs // 3), "failed": max(1, epochs // 2)}.get(
        state, epochs_done if epochs_done is not None else max(1, epochs // 2)
    )
    scale = 3.0 if objective == "test_loss" else 1.0
    # Falls from 0.6 to exactly `value` at the last epoch of the budget.
    decay = [(math.exp(-4.0 * e / epochs) - math.exp(-4.0)) / (1 - math.exp(-4.0)) for e in range(done + 1)]
    curve = {e: scale * (value + (0.6 - value) * decay[e]) for e in range(1, done + 1)}
    attrs[Attr.EPOCHS_DONE] = done
    last = curve[done] / scale
    metrics = {Attr.TEST_ERROR: last, Attr.TEST_LOSS: 3.0 * last, Attr.TRAIN_LOSS: 2.0 * last,
               Attr.TRAIN_ERROR: 0.5 * last}
    if state == "diverged":
        curve[done] = DIVERGED_VALUE if objective.endswith("error") else 1e3
        attrs.update({Attr.DIVERGED: True, Attr.TEST_ERROR: None, Attr.TEST_LOSS: None, Attr.TRAIN_LOSS: None,
                      Attr.TRAIN_ERROR: None})
        return create_trial(state=TrialState.COMPLETE, value=curve[done], params=params,
                            distributions=distributions, user_attrs=attrs, intermediate_values=curve)
    attrs.update(metrics)
    attrs[Attr.DIVERGED] = False
    if state == "done":
        return create_trial(state=TrialState.COMPLETE, value=curve[done], params=params,
                            distributions=distributions, user_attrs=attrs, intermediate_values=curve)
    if state == "stopped":
        attrs[Attr.STOPPED_EARLY] = True
        return create_trial(state=TrialState.PRUNED, value=curve[done], params=params,
                            distributions=distributions, user_attrs=attrs, intermediate_values=curve)
    if state == "failed":
        attrs[Attr.ERROR] = "RuntimeError: synthetic failure"
        return create_trial(state=TrialState.FAIL, params=params, distributions=distributions,
                            user_attrs=attrs, intermediate_values=curve)
    if state == "running":
        return create_trial(state=TrialState.RUNNING, params=params, distributions=distributions,
                            user_attrs=attrs, intermediate_values=curve)
    raise ValueError(f"unknown synthetic state {state!r}")


StateRule = Callable[[str, Cell], str]


def sweep_trials(
    spec: SweepSpec,
    variant: str,
    *,
    state_for: StateRule | None = None,
    noise: float = 0.0008,
    rng_seed: int = 0,
) -> list[FrozenTrial]:
    """Every (cell, seed) of a grid spec for one variant as a synthetic trial."""
    rng = np.random.default_rng([rng_seed, spec.variants.index(variant)])
    cells = spec.cells(variant)
    assert spec.grid is not None
    dists = _distributions(spec.axis_values("lr", variant), spec.axis_values("weight_decay", "sgd"))
    trials = []
    for cell in cells:
        state = state_for(variant, cell) if state_for else "done"
        value = synthetic_error(variant, cell.y, cell.x) + noise * float(rng.standard_normal())
        trials.append(make_trial(variant, cell, state=state, epochs=spec.epochs, value=value,
                                 distributions=dists, objective=spec.metric))
    return trials


def bulk_add_trials(study: Study, trials: Sequence[FrozenTrial]) -> None:
    """Append `trials` to an RDB-backed study in one transaction (study.add_trials takes ~0.1 s each).

    Writes exactly the rows RDBStorage writes for add_trial; `test_bulk_add_matches_add_trials`
    checks that Optuna reads them back identically.
    """
    from optuna.storages._rdb import models

    storage = study._storage
    backend = getattr(storage, "_backend", storage)
    assert isinstance(backend, RDBStorage), "bulk_add_trials needs an RDBStorage"
    sid = study._study_id
    trial_t = models.TrialModel.__table__
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    with backend.engine.begin() as conn:
        start = conn.execute(select(func.count()).select_from(trial_t).where(trial_t.c.study_id == sid)).scalar_one()
        conn.execute(insert(trial_t), [
            {"number": start + k, "study_id": sid, "state": t.state,
             "datetime_start": None if t.state == TrialState.WAITING else now,
             "datetime_complete": now if t.state.is_finished() else None}
            for k, t in enumerate(trials)
        ])
        ids = dict(conn.execute(select(trial_t.c.number, trial_t.c.trial_id).where(
            trial_t.c.study_id == sid, trial_t.c.number >= start)).all())
        params, values, attrs, system, steps = [], [], [], [], []
        for k, t in enumerate(trials):
            tid = ids[start + k]
            for name, value in t.params.items():
                dist = t.distributions[name]
                params.append({"trial_id": tid, "param_name": name, "param_value": dist.to_internal_repr(value),
                               "distribution_json": distribution_to_json(dist)})
            if t.values is not None:
                for obj, value in enumerate(t.values):
                    stored, kind = models.TrialValueModel.value_to_stored_repr(value)
                    values.append({"trial_id": tid, "objective": obj, "value": stored, "value_type": kind})
            attrs += [{"trial_id": tid, "key": key, "value_json": json.dumps(v)} for key, v in t.user_attrs.items()]
            system += [{"trial_id": tid, "key": key, "value_json": json.dumps(v)} for key, v in t.system_attrs.items()]
            for step, value in t.intermediate_values.items():
                stored, kind = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(value)
                steps.append({"trial_id": tid, "step": step, "intermediate_value": stored,
                              "intermediate_value_type": kind})
        for model, rows in ((models.TrialParamModel, params), (models.TrialValueModel, values),
                            (models.TrialUserAttributeModel, attrs), (models.TrialSystemAttributeModel, system),
                            (models.TrialIntermediateValueModel, steps)):
            if rows:
                conn.execute(insert(model.__table__), rows)


def seed_sweep(
    storage: RDBStorage,
    spec: SweepSpec,
    *,
    record_name: str | None = None,
    state_for: StateRule | None = None,
    rng_seed: int = 0,
) -> dict[str, Study]:
    """Create the studies of a grid sweep (spec stored as ``sweep_spec``) and fill them with synthetic trials."""
    name = record_name or spec.name
    studies = {}
    for variant in spec.variants:
        study = open_study(storage, name, variant)
        study.set_user_attr(SPEC_ATTR, spec.model_dump(mode="json"))
        bulk_add_trials(study, sweep_trials(spec, variant, state_for=state_for, rng_seed=rng_seed))
        studies[variant] = study
    return studies


# ---------------------------------------------------------------------------------------------
# Fixtures

SMALL = SweepSpec.model_validate(
    {
        "name": "small",
        "dataset": "synthetic",
        "model": "shake_shake_8_2x16d",
        "variants": ["sgd", "sgdw"],
        "epochs": 3,
        "batch_size": 16,
        "metric": "test_error",
        "seeds": [0, 1],
        "grid": {"lr": [0.25, 0.5, 1.0], "weight_decay": [0.0, 0.0005, 0.001]},
    }
)


@pytest.fixture
def sqlite_storage(tmp_path) -> RDBStorage:
    return make_storage(f"sqlite:///{tmp_path / 'landscape.db'}")


# ---------------------------------------------------------------------------------------------
# The record path: trials written by the same functions the workers use


def _run_recorded(study: Study, outcomes: dict[str, Any], epochs: int) -> dict[str, int]:
    """Claim every queued trial and act out `outcomes[cell.key]`; returns cell key -> trial number.

    An outcome is ("done", value), ("diverged",), ("running", epochs_done), ("failed",),
    ("stopped", epochs_done, value) or ("queued",) (left unclaimed).
    """
    numbers: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        numbers[trial.user_attrs[Attr.CELL]] = trial.number
    for key, number in sorted(numbers.items(), key=lambda kv: kv[1]):
        outcome = outcomes.get(key, ("queued",))
        if outcome[0] == "queued":
            continue
        claimed = claim_next(study)
        assert claimed == number, "trials are claimed in number order"
        kind = outcome[0]
        last = {"done": epochs, "diverged": 1, "failed": 1}.get(kind, outcome[1] if len(outcome) > 1 else 1)
        value = outcome[-1] if kind in ("done", "stopped") else 0.5
        for epoch in range(1, last + 1):
            v = value + 0.1 * (last - epoch)
            record_epoch(study, number, epoch, {"test_error": v, "test_loss": 3 * v, "train_loss": 2 * v},
                         objective="test_error")
        if kind == "done":
            finish_trial(study, number, {"test_error": value, "test_loss": 3 * value, "train_loss": 2 * value},
                         objective="test_error")
        elif kind == "diverged":
            finish_trial(study, number, {"test_error": math.nan, "test_loss": math.nan, "train_loss": math.nan},
                         objective="test_error", diverged=True)
        elif kind == "failed":
            fail_trial(study, number, "RuntimeError: boom")
        elif kind == "stopped":
            stop_trial(study, number, epochs_done=last)
    return numbers


def _key(lr: float, wd: float, seed: int) -> str:
    return Cell(lr, wd, seed).key


def test_grid_landscape_cell_by_cell_from_recorded_trials(sqlite_storage: RDBStorage) -> None:
    spec = SMALL
    study = open_study(sqlite_storage, "rec", "sgd")
    study.set_user_attr(SPEC_ATTR, spec.model_dump(mode="json"))
    enqueue_cells(study, spec.cells("sgd"), epochs_budget=spec.epochs)
    outcomes = {
        _key(0.25, 0.0, 0): ("done", 0.10), _key(0.25, 0.0, 1): ("done", 0.14),       # mean .12, 2 seeds
        _key(0.25, 0.0005, 0): ("done", 0.05), _key(0.25, 0.0005, 1): ("diverged",),  # n=1 + 1 diverged
        _key(0.25, 0.001, 0): ("diverged",), _key(0.25, 0.001, 1): ("diverged",),     # diverged cell
        _key(0.5, 0.0, 0): ("running", 2), _key(0.5, 0.0, 1): ("done", 0.20),         # running, value .20
        _key(0.5, 0.0005, 0): ("failed",), _key(0.5, 0.0005, 1): ("failed",),         # failed, empty
        _key(0.5, 0.001, 0): ("stopped", 2, 0.30), _key(0.5, 0.001, 1): ("stopped", 1, 0.40),
        _key(1.0, 0.0, 0): ("done", 0.08), _key(1.0, 0.0, 1): ("queued",),
        # (1.0, 0.0005) and (1.0, 0.001): both seeds queued
    }
    numbers = _run_recorded(study, outcomes, spec.epochs)
    land = build_landscape(study)

    assert land.kind == "grid" and land.shape == (3, 3)
    assert land.y.values.tolist() == [0.25, 0.5, 1.0]
    assert land.x.values.tolist() == [0.0, 0.0005, 0.001]
    expected_mean = [[0.12, 0.05, None], [0.20, None, 0.35], [0.08, None, None]]
    expected_n = [[2, 1, 0], [1, 0, 2], [1, 0, 0]]
    expected_state = [["done", "done", "diverged"], ["running", "failed", "stopped"], ["queued", "queued", "queued"]]
    for i in range(3):
        for j in range(3):
            want = expected_mean[i][j]
            got = land.mean[i, j]
            assert (want is None and math.isnan(got)) or got == pytest.approx(want), (i, j, got)
            assert land.n[i, j] == expected_n[i][j], (i, j)
            assert land.state[i, j] == expected_state[i][j], (i, j)
            cell_trials = sorted(numbers[_key(float(land.y.values[i]), float(land.x.values[j]), s)] for s in (0, 1))
            assert land.trials[i][j] == cell_trials
    assert land.std[0, 0] == pytest.approx(np.std([0.10, 0.14], ddof=1))
    assert land.std[1, 2] == pytest.approx(np.std([0.30, 0.40], ddof=1))
    assert math.isnan(land.std[0, 1])  # one seed: no spread
    assert land.budget[1, 2] == 2 and land.budget[0, 0] == 0
    assert land.diverged.tolist() == [[False, False, True], [False, False, False], [False, False, False]]
    assert land.n_diverged[0, 1] == 1 and land.n_diverged[0, 2] == 2
    assert land.state_counts["queued"].sum() == 5
    assert land.best_cells(3) == [(0, 1), (2, 0), (0, 0)]
    assert land.progress() == {"done": 5, "diverged": 3, "stopped": 2, "running": 1, "queued": 5, "failed": 2}
    assert any("stopped" in note for note in land.notes)
    json.dumps(land.to_dict(), allow_nan=False)  # JSON-ready: no NaN anywhere


def test_rdb_fast_path_matches_get_trials(storage_url: str) -> None:
    """The SQL reader and the FrozenTrial reader build identical landscapes (SQLite and PostgreSQL)."""
    storage = make_storage(storage_url)
    def state_for(variant: str, cell: Cell) -> str:
        i = SMALL.axis_values("lr", variant).index(cell.y)
        j = SMALL.axis_values("weight_decay", "sgd").index(cell.x)
        return ["done", "running", "diverged", "stopped", "queued", "failed"][(3 * i + j + cell.seed) % 6]

    studies = seed_sweep(storage, SMALL, state_for=state_for)
    memory = optuna.storages.InMemoryStorage()
    for variant, study in studies.items():
        copy = optuna.create_study(storage=memory, study_name=study.study_name)
        copy.set_user_attr(SPEC_ATTR, study.user_attrs[SPEC_ATTR])
        copy.add_trials(study.get_trials())
        for metric, epoch in (("test_error", None), ("train_loss", None), ("test_error", 2), ("test_loss", 3)):
            fast = build_landscape(study, metric=metric, epoch=epoch).to_dict()
            slow = build_landscape(copy, metric=metric, epoch=epoch).to_dict()
            assert fast == slow, (variant, metric, epoch)


def test_packed_read_is_used_and_falls_back_to_rows_on_a_non_numeric_attr(storage_url: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The one-row packed read serves SQLite and PostgreSQL; an attr it cannot parse sends it to the row read."""
    from hpscape.landscapes.record import _optuna

    storage = make_storage(storage_url)
    study = seed_sweep(storage, SMALL)["sgd"]
    packed_reads: list[bool] = []
    fetch = _optuna.fetch
    monkeypatch.setattr(_optuna, "fetch", lambda backend, sql: (
        packed_reads.append("_agg(" in sql or "group_concat(" in sql), fetch(backend, sql))[1])
    memory = optuna.storages.InMemoryStorage()

    def frozen_copy() -> Study:
        name = f"copy-{len(memory.get_all_studies())}/sgd"
        copy = optuna.create_study(storage=memory, study_name=name)
        copy.set_user_attr(SPEC_ATTR, study.user_attrs[SPEC_ATTR])
        copy.add_trials(study.get_trials())
        return copy

    clear_landscape_cache()
    first = build_landscape(study).to_dict()
    assert packed_reads == [True]
    assert {k: v for k, v in first.items() if k not in ("sweep", "study")} == {
        k: v for k, v in build_landscape(frozen_copy()).to_dict().items() if k not in ("sweep", "study")}

    trial = study.get_trials()[0]
    with _optuna.rdb_backend(storage).engine.begin() as connection:  # Optuna refuses to touch a finished trial
        connection.exec_driver_sql(
            "UPDATE trial_user_attributes SET value_json = '\"seven\"' WHERE key = 'seed' AND trial_id = "
            f"{_optuna.frozen_trial_id(trial)}")  # not a number
    clear_landscape_cache()
    packed_reads.clear()
    odd = build_landscape(study).to_dict()
    assert packed_reads == [True, False]  # tried packed, read rows
    assert {k: v for k, v in odd.items() if k not in ("sweep", "study")} == {
        k: v for k, v in build_landscape(frozen_copy()).to_dict().items() if k not in ("sweep", "study")}


def test_bulk_add_matches_add_trials(sqlite_storage: RDBStorage) -> None:
    trials = sweep_trials(SMALL, "sgd", state_for=lambda v, c: "diverged" if c.seed else "done")[:4]
    bulk = open_study(sqlite_storage, "bulk", "sgd")
    plain = open_study(sqlite_storage, "plain", "sgd")
    bulk_add_trials(bulk, trials)
    plain.add_trials(trials)

    def strip(t: FrozenTrial) -> tuple:
        return (t.number, t.state, t.values, t.params, t.distributions, t.user_attrs, t.intermediate_values)

    assert [strip(t) for t in bulk.get_trials()] == [strip(t) for t in plain.get_trials()]


# ---------------------------------------------------------------------------------------------
# Metrics and epochs


def test_metrics_and_epochs(sqlite_storage: RDBStorage) -> None:
    studies = seed_sweep(sqlite_storage, SMALL)
    study = studies["sgdw"]
    final = build_landscape(study)
    loss = build_landscape(study, metric="train_loss")
    np.testing.assert_allclose(loss.mean, 2 * final.mean)  # make_trial: train_loss = 2 x test_error
    assert loss.value_source.startswith("user attr 'train_loss'")

    early = build_landscape(study, epoch=1)
    trial = study.get_trials()[0]
    assert early.mean[0, 0] == pytest.approx(np.mean([t.intermediate_values[1] for t in study.get_trials()[:2]]))
    assert early.mean[0, 0] > final.mean[0, 0]  # the synthetic curves fall
    assert "epoch 1" in early.value_source and trial.intermediate_values[1] > trial.value

    # Other metrics exist at the final epoch only; asking for them earlier says so and how to fix it.
    with pytest.raises(LandscapeError, match=r"test_loss is not recorded at epoch 2.*test_error"):
        build_landscape(study, metric="test_loss", epoch=2)
    at_last = build_landscape(study, metric="test_loss", epoch=SMALL.epochs)  # the final epoch is fine
    np.testing.assert_allclose(at_last.mean, 3 * final.mean)
    with pytest.raises(LandscapeError, match="past this sweep's last epoch"):
        build_landscape(study, epoch=SMALL.epochs + 1)
    with pytest.raises(LandscapeError, match="unknown metric 'accuracy'"):
        build_landscape(study, metric="accuracy")
    with pytest.raises(LandscapeError, match="epoch must be an integer >= 1"):
        build_landscape(study, epoch=0)


def test_epoch_view_marks_diverged_trials(sqlite_storage: RDBStorage) -> None:
    spec = SMALL.replace(epochs=6)
    studies = seed_sweep(sqlite_storage, spec, state_for=lambda v, c: "diverged" if c.y == 1.0 else "done")
    study = studies["sgd"]
    # make_trial's diverged runs blow up at epoch 6 // 3 = 2.
    before = build_landscape(study, epoch=1)
    at = build_landscape(study, epoch=2)
    after = build_landscape(study, epoch=5)
    assert not before.diverged.any() and np.isfinite(before.mean[2]).all()
    assert at.diverged[2].all() and after.diverged[2].all()
    assert not at.diverged[:2].any()
    assert np.isnan(at.mean[2]).all()


def test_spec_axes_cover_unrun_cells_and_zero_column(sqlite_storage: RDBStorage) -> None:
    quick = get_preset("quick")
    grid = {"lr": quick.axis_values("lr", "sgd"), "weight_decay": [0.0, *quick.axis_values("weight_decay", "sgd")]}
    spec = get_preset("quick", name="axes", variants=["sgd"], grid=grid)
    study = open_study(sqlite_storage, "axes", "sgd")
    study.set_user_attr(SPEC_ATTR, spec.model_dump(mode="json"))
    one = Cell(spec.axis_values("lr", "sgd")[2], 0.0, 0)
    dists = _distributions(spec.axis_values("lr", "sgd"), spec.axis_values("weight_decay", "sgd"))
    bulk_add_trials(study, [make_trial("sgd", one, epochs=spec.epochs, value=0.3, distributions=dists)])
    land = build_landscape(study)
    assert land.shape == (len(spec.axis_values("lr", "sgd")), len(spec.axis_values("weight_decay", "sgd")))
    assert land.x.values[0] == 0.0  # the 0 column first
    assert int(np.isfinite(land.mean).sum()) == 1 and land.mean[2, 0] == pytest.approx(0.3)
    assert (land.state == "empty").sum() == land.mean.size - 1
    with pytest.raises(KeyError, match="not on this landscape's axis"):
        land.cell_index(0.123, 0.0)
    assert land.cell_index(one.y, 0.0) == (2, 0)


def test_without_spec_axes_come_from_trials() -> None:
    study = optuna.create_study(study_name="bare/sgdw")
    dists = _distributions([0.1, 0.2], [0.0, 0.01])
    for lr in (0.1, 0.2):
        for wd in (0.0, 0.01):
            study.add_trial(make_trial("sgdw", Cell(lr, wd, 0), epochs=2, value=lr + wd, distributions=dists))
    land = build_landscape(study)
    assert land.kind == "grid" and land.y.values.tolist() == [0.1, 0.2] and land.x.values.tolist() == [0.0, 0.01]
    np.testing.assert_allclose(land.mean, [[0.1, 0.11], [0.2, 0.21]])
    assert any("no readable sweep spec" in note for note in land.notes)


# ---------------------------------------------------------------------------------------------
# Bayesian sweeps: binned onto a log2 grid, optional model surface


def _bayes_study(n: int, seed: int = 0) -> Study:
    spec = {"name": "bo", "dataset": "synthetic", "model": "shake_shake_8_2x8d", "variants": ["adamw"],
            "batch_size": 8, "metric": "test_error", "epochs": 4,
            "bayes": {"sampler": "tpe", "n_trials": n, "lr": [2**-8, 2**-1], "weight_decay": [2**-14, 2**-6]}}
    study = optuna.create_study(study_name="bo/adamw")
    study.set_user_attr(SPEC_ATTR, spec)
    rng = np.random.default_rng(seed)
    dists = {"lr": FloatDistribution(2**-8, 2**-1, log=True),
             "weight_decay": FloatDistribution(2**-14, 2**-6, log=True)}
    for k in range(n):
        lr = float(2 ** rng.uniform(-8, -1))
        wd = float(2 ** rng.uniform(-14, -6))
        value = 0.05 + 0.001 * (math.log2(wd) + 10) ** 2
        study.add_trial(make_trial("adamw", Cell(lr, wd, k), epochs=4, value=value, distributions=dists))
    return study


def test_bayes_trials_are_binned_with_counts() -> None:
    study = _bayes_study(300)
    land = build_landscape(study)
    assert land.kind == "binned"
    # One bin per power of two from 2^-8 to 2^-1 (lr) and 2^-14 to 2^-6 (wd).
    assert land.y.values.tolist() == [2.0**k for k in range(-8, 0)]
    assert land.x.values.tolist() == [2.0**k for k in range(-14, -5)]
    assert land.count.sum() == 300
    trials = study.get_trials()
    i, j = 3, 4
    inside = [t for t in trials if round(math.log2(t.params["lr"])) == -8 + i
              and round(math.log2(t.params["weight_decay"])) == -14 + j]
    assert land.count[i, j] == len(inside) and land.trials[i][j] == sorted(t.number for t in inside)
    assert land.mean[i, j] == pytest.approx(np.mean([t.value for t in inside]))
    assert land.model is None and any("binned" in note for note in land.notes)

    finer = build_landscape(study, bins_per_octave=2)
    assert finer.shape == (15, 17) and finer.count.sum() == 300


def test_model_surface_is_labelled_and_does_not_extrapolate() -> None:
    study = _bayes_study(200)
    land = build_landscape(study, model=True)
    assert land.model is not None
    assert land.model.label.startswith("MODEL, not measured")
    assert land.model.to_dict()["kind"] == "gaussian_kernel_smoother"
    # The truth depends on wd only: the smoother follows it where there is data.
    truth = 0.05 + 0.001 * (np.log2(land.x.values) + 10) ** 2
    ok = np.isfinite(land.model.mean)
    assert ok.mean() > 0.9
    err = np.abs(land.model.mean - truth[None, :])[ok]
    assert float(np.median(err)) < 0.003

    # Far from every trial, the model stays empty.
    sparse = optuna.create_study(study_name="sparse/adamw")
    sparse.set_user_attr(SPEC_ATTR, {"name": "sparse", "dataset": "synthetic", "model": "shake_shake_8_2x8d",
                                     "variants": ["adamw"], "epochs": 2, "batch_size": 8, "metric": "test_error",
                                     "bayes": {"n_trials": 1, "lr": [2**-12, 2**0], "weight_decay": [2**-14, 2**-2]}})
    dists = {"lr": FloatDistribution(2**-12, 1.0, log=True), "weight_decay": FloatDistribution(2**-14, 2**-2, log=True)}
    sparse.add_trial(make_trial("adamw", Cell(2**-12, 2**-14, 0), epochs=2, value=0.1, distributions=dists))
    surface = build_landscape(sparse, model=True).model
    assert surface is not None and np.isfinite(surface.mean[0, 0]) and np.isnan(surface.mean[-1, -1])


# ---------------------------------------------------------------------------------------------
# Whole sweeps and trial details


def test_build_sweep_landscapes_and_trial_details(sqlite_storage: RDBStorage, tmp_path) -> None:
    seed_sweep(sqlite_storage, SMALL)
    lands = build_sweep_landscapes(sqlite_storage, "small")
    assert list(lands) == ["sgd", "sgdw"]
    # The coupled variant's best cell sits at a larger lr*wd product than the decoupled... both exist:
    assert all(np.isfinite(land.mean).all() for land in lands.values())
    assert build_sweep_landscapes(sqlite_storage, "no-such-sweep") == {}
    # A URL works too (a new storage each call).
    by_url = build_sweep_landscapes(f"sqlite:///{tmp_path / 'landscape.db'}", "small")
    assert by_url["sgdw"].to_dict() == lands["sgdw"].to_dict()

    study = open_study(sqlite_storage, "small", "sgdw", create=False)
    best = trial_details(study, limit=3)
    assert len(best) == 3
    values = [row["value"] for row in best]
    assert values == sorted(values) and values[0] == pytest.approx(np.nanmin(
        [t.user_attrs["test_error"] for t in study.get_trials()]))
    assert [p[0] for p in best[0]["curve"]] == list(range(1, SMALL.epochs + 1))
    assert best[0]["curve_metric"] == "test_error"
    picked = trial_details(study, [5, 0, 999])  # unknown numbers are skipped
    assert [row["number"] for row in picked] == [5, 0]
    json.dumps(picked, allow_nan=False)


def test_polling_reads_only_changes_and_stays_exact(storage_url: str) -> None:
    """The finished-trial cache: later reads see every change, and equal a read from scratch."""
    storage = make_storage(storage_url)
    spec = SMALL.replace(epochs=4)
    state = {0.25: "done", 0.5: "running", 1.0: "queued"}
    studies = seed_sweep(storage, spec, state_for=lambda v, c: state[c.y])
    study = studies["sgd"]
    clear_landscape_cache()
    first = build_landscape(study)
    assert (first.state[1] == "running").all() and (first.state[2] == "queued").all()

    # A running trial finishes, a queued one starts and records an epoch, a new trial arrives.
    running = [t.number for t in study.get_trials() if t.state == TrialState.RUNNING]
    finish_trial(study, running[0], {"test_error": 0.011, "test_loss": 0.5, "train_loss": 0.1},
                 objective="test_error")
    claimed = claim_next(study)
    assert claimed is not None
    record_epoch(study, claimed, 1, {"test_error": 0.3, "test_loss": 1.0, "train_loss": 0.9}, objective="test_error")
    dists = _distributions(spec.axis_values("lr", "sgd"), spec.axis_values("weight_decay", "sgd"))
    bulk_add_trials(study, [make_trial("sgd", Cell(0.25, 0.0, 7), epochs=4, value=0.02, distributions=dists)])

    for metric, epoch in (("test_error", None), ("test_error", 1), ("train_loss", None)):
        warm = build_landscape(study, metric=metric, epoch=epoch).to_dict()  # from the cache + changes
        warm_again = build_landscape(study, metric=metric, epoch=epoch).to_dict()
        clear_landscape_cache()
        cold = build_landscape(study, metric=metric, epoch=epoch).to_dict()
        assert warm == cold == warm_again, (metric, epoch)
    final = build_landscape(study)
    cell = final.cell_index(0.5, spec.axis_values("weight_decay", "sgd")[0])
    assert final.n[cell] == 1 and final.mean[cell] == pytest.approx(0.011)
    assert final.count[0, 0] == 3 and final.n[0, 0] == 3  # the new seed 7 trial
    assert build_landscape(study, epoch=1).n[2].sum() == 1  # the claimed trial's epoch 1

    # A study deleted and created again under the same name is read from scratch.
    optuna.delete_study(study_name=study.study_name, storage=storage)
    again = open_study(storage, "small", "sgd")
    again.set_user_attr(SPEC_ATTR, spec.model_dump(mode="json"))
    bulk_add_trials(again, [make_trial("sgd", Cell(1.0, 0.001, 0), epochs=4, value=0.5, distributions=dists)])
    replaced = build_landscape(again)
    assert replaced.count.sum() == 1 and replaced.mean[2, 2] == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------------
# Any two axes, facets, every metric at every epoch, and records of hpscape 0.1


def _history(epochs: int, base: float) -> list[dict[str, Any]]:
    return [{"epoch": e, "test_error": base / e, "test_loss": 2 * base / e, "train_loss": 3 * base / e,
             "train_error": 4 * base / e, "lr_t": 0.01, "epoch_seconds": 1.0, "images_per_s": 100.0,
             "diverged": False} for e in range(1, epochs + 1)]


def _run_spec(storage: RDBStorage, spec: SweepSpec, *, diverge: set[int] = frozenset()) -> None:
    """Every cell recorded epoch by epoch with a history, as the workers do (trial k's values scale with k+1)."""
    for variant, facet in spec.studies():
        study = open_study(storage, spec.name, variant, facet)
        study.set_user_attr(SPEC_ATTR, spec.model_dump(mode="json"))
        enqueue_cells(study, spec.cells(variant),
                      values_of=lambda c, v=variant, f=facet: spec.trial_values(v, c.params, f))
        while (number := claim_next(study)) is not None:
            base = 0.1 * (number + 1)
            history = _history(spec.epochs, base)
            for epoch in range(1, spec.epochs + 1):
                metrics = {k: history[epoch - 1][k] for k in ("test_error", "test_loss", "train_loss", "train_error")}
                if number in diverge and epoch == spec.epochs:
                    history[-1] = {**history[-1], "test_loss": math.nan, "diverged": True}
                    metrics = {**metrics, "test_loss": math.nan}
                record_epoch(study, number, epoch, metrics, objective=spec.metric, history=history[:epoch])
            finish_trial(study, number, metrics, objective=spec.metric, diverged=number in diverge)


BETAS = SweepSpec.model_validate({
    "name": "betas", "dataset": "synthetic", "model": "shake_shake_8_2x8d", "variants": ["adam", "adamw"],
    "epochs": 3, "batch_size": 8, "metric": "test_error", "hyperparameters": {"lr": 0.001, "weight_decay": 0.0005},
    "grid": {"beta1": [0.5, 0.9], "beta2": [0.9, 0.99, 0.999]}})


def test_beta1_by_beta2_landscape_has_named_linear_axes(sqlite_storage: RDBStorage) -> None:
    _run_spec(sqlite_storage, BETAS)
    lands = build_sweep_landscapes(sqlite_storage, "betas", metric="test_error")
    assert list(lands) == ["adam", "adamw"]
    land = lands["adamw"]
    assert (land.y.name, land.y.scale, land.y.title) == ("beta1", "linear", "beta1 β₁")
    assert (land.x.name, land.x.values.tolist()) == ("beta2", [0.9, 0.99, 0.999])
    # trial k (enqueued beta1-major) has value 0.1 * (k + 1) / 3 at the final epoch 3
    np.testing.assert_allclose(land.mean, [[(k + 1) * 0.1 / 3 for k in row] for row in ([0, 1, 2], [3, 4, 5])])
    assert land.cell_index(0.9, 0.99) == (1, 1)
    body = land.to_dict()
    assert body["y"]["values"] == [0.5, 0.9] and body["x"]["name"] == "beta2" and body["key"] == "adamw"


def test_any_metric_at_any_epoch_comes_from_the_histories(sqlite_storage: RDBStorage) -> None:
    _run_spec(sqlite_storage, BETAS, diverge={4})
    at_1 = build_sweep_landscapes(sqlite_storage, "betas", metric="train_loss", epoch=1)["adam"]
    assert at_1.value_source == "the trials' history at epoch 1"
    np.testing.assert_allclose(at_1.mean, [[3 * 0.1 * (k + 1) for k in row] for row in ([0, 1, 2], [3, 4, 5])])
    at_2 = build_sweep_landscapes(sqlite_storage, "betas", metric="test_loss", epoch=2)["adam"]
    np.testing.assert_allclose(at_2.mean[0], [2 * 0.1 * (k + 1) / 2 for k in (0, 1, 2)])
    # The spec's own metric at an epoch still reads the intermediate values, and agrees with the history.
    spec_metric = build_sweep_landscapes(sqlite_storage, "betas", metric="test_error", epoch=2)["adam"]
    assert spec_metric.value_source.startswith("intermediate value at epoch 2")
    from_history = [[h / 2 for h in (0.1, 0.2, 0.3)], [h / 2 for h in (0.4, 0.5, 0.6)]]
    np.testing.assert_allclose(spec_metric.mean, from_history)
    # Trial 4 diverged at its last epoch: marked at the final epoch, a value at epoch 2.
    final = build_sweep_landscapes(sqlite_storage, "betas", metric="test_loss")["adam"]
    assert final.diverged[1, 1] and np.isnan(final.mean[1, 1]) and np.isfinite(at_2.mean[1, 1])
    with pytest.raises(LandscapeError, match="past this sweep's last epoch"):
        build_sweep_landscapes(sqlite_storage, "betas", metric="test_loss", epoch=4)


def test_a_faceted_sweep_has_one_landscape_per_value(sqlite_storage: RDBStorage) -> None:
    spec = BETAS.replace(name="fac", variants=["adamw"], facet={"schedule": ["constant", "step"]})
    _run_spec(sqlite_storage, spec)
    lands = build_sweep_landscapes(sqlite_storage, "fac", metric="test_error")
    assert list(lands) == ["adamw/schedule=constant", "adamw/schedule=step"]
    step = lands["adamw/schedule=step"]
    assert step.facet.label == "schedule=step" and step.study == "fac/adamw/schedule=step"
    assert step.n.sum() == 6
    # Found with the spec too (the service passes it), in the same order.
    assert list(build_sweep_landscapes(sqlite_storage, "fac", spec=spec)) == list(lands)


def test_decay_axis_says_lambda_prime_for_l2_and_lambda_for_decoupled(sqlite_storage: RDBStorage) -> None:
    seed_sweep(sqlite_storage, SMALL)
    lands = build_sweep_landscapes(sqlite_storage, "small")
    assert lands["sgd"].x.title == "weight decay λ′" and lands["sgdw"].x.title == "weight decay λ"
    assert lands["sgd"].y.title == "learning rate α"


def test_records_of_hpscape_0_1_give_the_same_landscapes(tmp_path) -> None:
    # tests/data holds a record written by hpscape 0.1 and the landscapes 0.1 built from it (generated once with
    # that version; params lr and weight_decay, no history, the spec of 0.1).
    data = Path(__file__).parent / "data"
    db = tmp_path / "old.db"
    shutil.copy(data / "hpscape-0.1-record.db", db)
    expected = json.loads((data / "hpscape-0.1-landscapes.json").read_text())
    storage = make_storage(f"sqlite:///{db}")
    fields = ("mean", "std", "n", "count", "n_diverged", "state", "state_counts", "budget", "trials", "best",
              "progress", "kind", "epoch", "epochs", "value_source", "notes")
    for view, per_variant in expected.items():
        metric, epoch = view.split("@")
        lands = build_sweep_landscapes(storage, "old", metric=metric, epoch=None if epoch == "None" else int(epoch))
        assert set(lands) == set(per_variant)
        for variant, old in per_variant.items():
            new = lands[variant].to_dict()
            assert {f: new[f] for f in fields} == {f: old[f] for f in fields}, (view, variant)
            assert new["y"]["values"] == old["lr"] and new["x"]["values"] == old["weight_decay"]
    with pytest.raises(LandscapeError, match="keep no per-epoch history .* before hpscape 0.2"):
        build_sweep_landscapes(storage, "old", metric="test_error", epoch=1)

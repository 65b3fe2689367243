"""Sweep plans: trials, epochs and images per study, and hours from a measured throughput (never a guessed one)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hpscape.landscapes import (
    DATASET_SIZES,
    PRESETS,
    SPEC_ATTR,
    SweepSpec,
    Throughput,
    get_preset,
    measured_throughput,
    plan_sweep,
)
from hpscape.landscapes.record import claim_next, enqueue_cells, finish_trial, make_storage, open_study, record_epoch
from hpscape.service.cli import app


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_plans(name: str) -> None:
    spec = PRESETS[name]
    plan = plan_sweep(spec)
    assert plan.trials == spec.total_trials() and len(plan.rows) == len(spec.studies())
    train, test = DATASET_SIZES[spec.dataset]
    assert plan.train_images == plan.epochs * train and all(r.test_images == r.epochs * test for r in plan.rows)
    assert plan.trial_hours is None and any("no measured throughput" in note for note in plan.notes)


def test_fig2_is_484_trials_of_100_epochs() -> None:
    plan = plan_sweep(get_preset("fig2"))
    assert plan.trials == 484 and plan.epochs == 48_400 and plan.train_images == 48_400 * 50_000
    assert [(r.study, r.trials) for r in plan.rows] == [("sgd", 121), ("sgdw", 121), ("adam", 121), ("adamw", 121)]


def test_an_epochs_facet_counts_each_budget() -> None:
    spec = get_preset("quick-budget")
    plan = plan_sweep(spec)
    rows = {r.study: r.epochs for r in plan.rows}
    assert rows["sgdw/epochs=5"] == 7 * 5 and rows["adamw/epochs=40"] == 7 * 40
    assert plan.epochs == 2 * 7 * (5 + 10 + 20 + 40)


def test_swept_epochs_sum_per_cell() -> None:
    spec = SweepSpec.model_validate({
        "name": "e", "dataset": "digits", "model": "shake_shake_8_2x8d", "variants": ["sgdw"], "epochs": 3,
        "batch_size": 64, "seeds": [0, 1], "grid": {"lr": [0.1, 0.2], "epochs": [2, 8]},
    })
    assert plan_sweep(spec).epochs == 2 * 2 * (2 + 8)


def test_bayes_over_epochs_is_counted_at_its_upper_bound() -> None:
    spec = SweepSpec.model_validate({
        "name": "b", "dataset": "digits", "model": "shake_shake_8_2x8d", "variants": ["sgdw"], "epochs": 3,
        "batch_size": 64, "bayes": {"n_trials": 5, "lr": [0.01, 1], "epochs": [2, 10]},
    })
    plan = plan_sweep(spec)
    assert plan.epochs == 50 and any("upper bound" in note for note in plan.notes)


def test_hours_follow_the_throughput_and_the_gpu_share() -> None:
    spec = get_preset("fig2")
    plan = plan_sweep(spec, Throughput(5_000.0, "test"))
    assert plan.trial_hours == pytest.approx(2.42e9 / 5_000 / 3600)
    assert plan.gpu_hours == pytest.approx(plan.trial_hours * 0.25)
    assert plan.wall_hours == pytest.approx(plan.trial_hours / 16)
    assert plan_sweep(get_preset("quick"), Throughput(1_000.0, "t")).gpu_hours is None  # a CPU sweep
    with pytest.raises(ValueError, match="must be > 0 images/s"):
        Throughput(0.0, "t")
    body = json.loads(json.dumps(plan.to_dict()))
    assert body["trials"] == 484 and body["studies"][0]["study"] == "sgd" and body["throughput_source"] == "test"


def _record_trials(url: str, spec: SweepSpec, epoch_seconds: list[float]) -> None:
    storage = make_storage(url)
    variant = spec.variants[0]
    study = open_study(storage, spec.name, variant)
    study.set_user_attr(SPEC_ATTR, spec.model_dump(mode="json"))
    enqueue_cells(study, spec.cells(variant), values_of=lambda c: spec.trial_values(variant, c.params))
    for seconds in epoch_seconds:
        number = claim_next(study)
        metrics = {"test_error": 0.5, "test_loss": 1.0}
        history = [{"epoch": e, **metrics, "epoch_seconds": seconds} for e in (1, 2)]
        for epoch in (1, 2):
            record_epoch(study, number, epoch, metrics, objective="test_loss", history=history[:epoch])
        finish_trial(study, number, metrics, objective="test_loss")
    storage.engine.dispose()


def test_throughput_is_measured_from_like_trials_in_the_record(storage_url: str) -> None:
    quick = get_preset("quick")
    _record_trials(storage_url, quick.replace(name="earlier"), [1.0, 2.0, 4.0])
    # Trials of another network say nothing about this one's speed.
    _record_trials(storage_url, quick.replace(name="wide", model="shake_shake_8_2x32d_bnhead"), [100.0])
    found = measured_throughput(storage_url, get_preset("quick-fig1"))
    assert found is not None and found.images_per_s == pytest.approx(1437 / 2.0)  # the median trial
    assert "3 finished trial(s) of sweep(s) earlier" in found.source
    assert measured_throughput(storage_url, get_preset("fig2")) is None


def test_cli_plan_trains_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    runner = CliRunner()
    result = runner.invoke(app, ["run", "--preset", "fig2", "--plan", "--storage", url, "--throughput", "3500"])
    assert result.exit_code == 0, result.output
    assert "fig2: 484 trials, 48,400 epochs, 2.42 G training images" in result.output
    assert "48.0 GPU-hours at 0.25 GPU per trial" in result.output
    assert not (tmp_path / "r.db").exists()  # nothing opened, nothing created
    plain = runner.invoke(app, ["run", "--preset", "quick", "--plan", "--storage", url])
    assert plain.exit_code == 0 and "no time estimate" in plain.output
    spec_file = tmp_path / "s.json"
    spec_file.write_text(json.dumps(get_preset("quick-fig4").replace(name="mine").model_dump(mode="json")))
    from_file = runner.invoke(app, ["run", str(spec_file), "--plan", "--storage", url])
    assert from_file.exit_code == 0 and "mine: 12 trials, 360 epochs" in from_file.output
    refused = runner.invoke(app, ["run", "--preset", "quick", "--throughput", "10", "--storage", url])
    assert refused.exit_code == 2 and "--throughput only prices a --plan" in refused.output

"""The trainer: learns, resumes bit-identically, reports divergence as data, and the `hpscape train` command."""

from __future__ import annotations

import math
import re
from dataclasses import asdict

import pytest
import torch
from typer.testing import CliRunner

from hpscape.landscapes.record import DIVERGED_LOSS, DIVERGED_VALUE
from hpscape.service.cli import app
from hpscape.workers.train import CHECKPOINT_FILE, TrialConfig, train_trial

SMALL = dict(dataset="synthetic", model="shake_shake_8_2x16d", batch_size=64, device="cpu", seed=3)


def test_learns_the_synthetic_dataset_and_reports_every_epoch():
    seen = []
    result = train_trial(TrialConfig(**SMALL, variant="sgdw", lr=0.05, weight_decay=5e-4, epochs=4),
                         on_epoch=seen.append)
    assert [m.epoch for m in seen] == [1, 2, 3, 4]
    assert result.epochs_done == 4 and not result.diverged
    assert result.final.test_error < 0.5, "10 classes: chance is 0.9; the net must learn the class templates"
    assert result.final.train_loss < seen[0].train_loss
    for m in seen:
        assert 0.0 <= m.test_error <= 1.0 and m.images_per_s > 0 and m.epoch_seconds > 0


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a sweep worker runs (one core per trial): one reduction order, bit-identical runs
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("variant", ["sgd", "adamw"])
def test_resume_after_interruption_is_bit_identical(tmp_path, variant, one_thread):
    config = TrialConfig(**SMALL, variant=variant, lr=0.02 if variant == "sgd" else 0.002, weight_decay=1e-3,
                         epochs=4, label_noise=0.0)
    straight = train_trial(config)

    class Interrupt(Exception):
        pass

    def stop_after_two(metrics):
        if metrics.epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_trial(config, on_epoch=stop_after_two, checkpoint_dir=tmp_path)
    assert (tmp_path / CHECKPOINT_FILE).exists()
    resumed_epochs = []
    resumed = train_trial(config, checkpoint_dir=tmp_path, on_epoch=lambda m: resumed_epochs.append(m.epoch))
    assert resumed_epochs == [3, 4], "resume must continue after the checkpointed epoch, not start over"
    # Everything but the clock, telemetry included (weight norms, angles, gradient norms, decay shares).
    assert [_measured(m) for m in resumed.history] == [_measured(m) for m in straight.history]
    assert all(m.angular_update is not None for m in resumed.history)


def _measured(metrics) -> dict:
    return {k: v for k, v in asdict(metrics).items() if k not in ("epoch_seconds", "images_per_s")}


def test_checkpoint_of_another_trial_is_refused(tmp_path):
    train_trial(TrialConfig(**SMALL, variant="sgd", lr=0.01, weight_decay=0.0, epochs=1), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="different trial.*lr"):
        train_trial(TrialConfig(**SMALL, variant="sgd", lr=0.02, weight_decay=0.0, epochs=1), checkpoint_dir=tmp_path)


def test_divergence_ends_the_trial_with_defined_values():
    seen = []
    result = train_trial(TrialConfig(**SMALL, variant="sgd", lr=1e12, weight_decay=0.0, epochs=5), on_epoch=seen.append)
    assert result.diverged and result.epochs_done < 5
    assert seen[-1].diverged
    final = result.final
    assert (final.test_error, final.test_loss, final.train_loss) == (DIVERGED_VALUE, DIVERGED_LOSS, DIVERGED_LOSS)
    assert all(math.isfinite(v) for v in (final.test_error, final.test_loss, final.train_loss))


def test_bf16_channels_last_path_runs_on_cpu():
    config = TrialConfig(**SMALL, variant="adamw", lr=0.002, weight_decay=0.01, epochs=1, precision="bf16",
                         channels_last=True)
    result = train_trial(config)
    assert result.epochs_done == 1 and math.isfinite(result.final.test_loss)


@pytest.mark.slow
def test_compiled_fast_path_runs_on_cpu():
    config = TrialConfig.fast(**SMALL, variant="sgdw", lr=0.05, weight_decay=5e-4, epochs=2)
    assert config.compile and config.precision == "bf16" and config.channels_last
    result = train_trial(config)
    assert result.epochs_done == 2 and result.final.test_error < 0.9


def test_normalized_decay_uses_the_paper_formula(monkeypatch):
    captured = {}
    import hpscape.workers.train as train_module

    real = train_module.build_optimizer

    def spy(variant, params, **kwargs):
        captured.update(kwargs)
        return real(variant, params, **kwargs)

    monkeypatch.setattr(train_module, "build_optimizer", spy)
    train_trial(TrialConfig(**SMALL, variant="sgdw", lr=0.05, weight_decay=0.05, normalized_decay=True, epochs=1))
    expected = 0.05 * math.sqrt(64 / (512 * 1))  # lambda_norm * sqrt(b / (B * T)) on 512 synthetic images
    assert captured["weight_decay"] == pytest.approx(expected)


def test_cli_train_prints_a_metrics_table():
    result = CliRunner().invoke(app, ["train", "--dataset", "synthetic", "--variant", "sgdw", "--lr", "0.05",
                                      "--weight-decay", "0.0005", "--epochs", "2", "--batch-size", "64",
                                      "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "test err %" in result.output and "img/s" in result.output
    epochs = re.findall(r"^│\s+(\d+)\s+│", result.output, flags=re.MULTILINE)
    assert epochs == ["1", "2"], result.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--variant", "sgdx"], "--variant 'sgdx' is not known"),
        (["--lr", "-1"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--epochs", "0"], "--epochs"),
        (["--model", "resnet9000"], "resnet9000"),
        (["--model", "shake_shake_38_2x8d"], "--model: unknown model 'shake_shake_38_2x8d'"),
        (["--beta2", "1.5", "--variant", "adam"], "--beta2"),
        (["--eps", "0", "--variant", "adam"], "--eps"),
    ],
)
def test_cli_train_bad_input_exits_2_with_the_fix(args, needle):
    base = {"--lr": "0.05", "--weight-decay": "0.0005", "--epochs": "1", "--dataset": "synthetic",
            "--device": "cpu"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    argv = ["train", *[x for pair in base.items() for x in pair]]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert needle in result.output


def test_cli_help_reads_well():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0 and "train" in result.output
    result = CliRunner().invoke(app, ["train", "--help"])
    assert result.exit_code == 0 and "--weight-decay" in result.output


def test_resume_hands_back_the_restored_epochs(tmp_path):
    config = TrialConfig(**SMALL, variant="sgdw", lr=0.05, weight_decay=5e-4, epochs=3)

    def crash_after_second(metrics):
        if metrics.epoch == 2:
            raise RuntimeError("worker killed after the checkpoint, before the record")

    with pytest.raises(RuntimeError):
        train_trial(config, on_epoch=crash_after_second, checkpoint_dir=tmp_path)
    restored = []
    train_trial(config, checkpoint_dir=tmp_path, on_resume=restored.extend)
    assert [m.epoch for m in restored] == [1, 2]


# ---------------------------------------------------------------- normalized decay and the schedules' parameters

# 128 synthetic images in batches of 64: 2 steps per epoch, B = 128 in lambda = lambda_norm * sqrt(b / (B * T)).
TINY = {**SMALL, "train_limit": 128}


def _spy_optimizer(monkeypatch) -> list:
    """Capture the optimizer `train_trial` builds, so a step callback can read its param groups."""
    import hpscape.workers.train as train_module

    built: list = []
    real = train_module.build_optimizer

    def spy(variant, params, **kwargs):
        built.append(real(variant, params, **kwargs))
        return built[-1]

    monkeypatch.setattr(train_module, "build_optimizer", spy)
    return built


def _decay_per_epoch(built: list) -> tuple[dict[int, set[float]], object]:
    """A step callback that records, per epoch, the weight_decay of every param group in the step just taken."""
    seen: dict[int, set[float]] = {}
    epoch = [0]

    def on_step(step, steps):
        if step == 1:
            epoch[0] += 1
        seen.setdefault(epoch[0], set()).update(g["weight_decay"] for g in built[-1].param_groups)

    return seen, on_step


@pytest.mark.parametrize("variant", ["sgd", "adamw-torch"])
def test_normalized_decay_leaves_l2_and_torch_factors_raw(monkeypatch, variant):
    # The authors' code normalizes the decoupled lambda only; lambda' (L2) stays raw, and so does torch's AdamW factor
    # (multiplied by lr_t inside torch, so it is not the paper's lambda).
    built = _spy_optimizer(monkeypatch)
    seen, on_step = _decay_per_epoch(built)
    train_trial(TrialConfig(**TINY, variant=variant, lr=0.01, weight_decay=0.003, normalized_decay=True, epochs=2),
                on_step=on_step)
    assert seen == {1: {0.003}, 2: {0.003}}


def test_normalized_decay_follows_the_restart_period_and_survives_a_resume(monkeypatch, tmp_path):
    # SGDW under warm restarts with T_0 = 2 epochs, T_mult = 2: periods are epochs 1-2, 3-6, 7-14. T is the current
    # period's length, so lambda = lambda_norm * sqrt(b / (B * 2)) in epochs 1-2 and lambda_norm * sqrt(b / (B * 4)) in
    # epochs 3-6.
    config = TrialConfig(**TINY, variant="sgdw", lr=0.05, weight_decay=0.05, normalized_decay=True, epochs=6,
                         schedule="warm_restarts", restart_period=2, restart_mult=2)
    first, second = 0.05 * math.sqrt(64 / (128 * 2)), 0.05 * math.sqrt(64 / (128 * 4))
    built = _spy_optimizer(monkeypatch)
    seen, on_step = _decay_per_epoch(built)
    straight = train_trial(config, on_step=on_step)
    assert seen == {1: {first}, 2: {first}, 3: {second}, 4: {second}, 5: {second}, 6: {second}}

    class Interrupt(Exception):
        pass

    def stop_after_four(metrics):  # mid-period: epoch 4 of the period 3-6
        if metrics.epoch == 4:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_trial(config, on_epoch=stop_after_four, checkpoint_dir=tmp_path)
    resumed_seen, on_step = _decay_per_epoch(built)
    resumed = train_trial(config, checkpoint_dir=tmp_path, on_step=on_step)
    assert resumed_seen == {1: {second}, 2: {second}}, "epochs 5 and 6 (the 1st and 2nd after the resume)"
    measured = ("test_error", "test_loss", "train_loss", "train_error", "lr_t")
    assert [[getattr(m, k) for k in measured] for m in resumed.history] == [
        [getattr(m, k) for k in measured] for m in straight.history], "the resumed run is the straight one"


def test_step_milestones_are_epochs():
    # Milestone m drops the lr from epoch m + 1 on; lr_t is the lr of each epoch's last step.
    result = train_trial(TrialConfig(**TINY, variant="sgd", lr=0.05, weight_decay=0.0, epochs=4, schedule="step",
                                     step_milestones=(2, 3)))
    assert [m.lr_t for m in result.history] == pytest.approx([0.05, 0.05, 0.005, 0.0005], rel=1e-12)
    halved = train_trial(TrialConfig(**TINY, variant="sgd", lr=0.05, weight_decay=0.0, epochs=2, schedule="step",
                                     step_milestones=(1, 5), step_gamma=0.5))
    assert [m.lr_t for m in halved.history] == pytest.approx([0.05, 0.025], rel=1e-12), "5 is past the run: never"


def test_warm_restarts_take_their_period_and_mult():
    # One step per epoch (64 images, batch 64), so lr_t is the lr at the start of each epoch. T_0 = 2, T_mult = 2:
    # periods of 2, 4 and 8 epochs, restarting (lr back to alpha) at epochs 3 and 7.
    result = train_trial(TrialConfig(**{**SMALL, "train_limit": 64}, variant="sgdw", lr=0.05, weight_decay=0.0,
                                     epochs=8, schedule="warm_restarts", restart_period=2, restart_mult=2))
    lrs = [m.lr_t for m in result.history]
    eta = [1.0, 0.5, 1.0, *(0.5 * (1 + math.cos(math.pi * t / 4)) for t in (1, 2, 3)), 1.0,
           0.5 * (1 + math.cos(math.pi / 8))]
    assert lrs == pytest.approx([0.05 * e for e in eta], rel=1e-12, abs=1e-15)
    assert [epoch for epoch, lr in enumerate(lrs, start=1) if lr == 0.05] == [1, 3, 7]


def test_trial_config_rejects_bad_schedule_parameters():
    base = dict(**SMALL, variant="sgd", lr=0.1, weight_decay=0.0)
    for bad in ({"step_milestones": (3, 2)}, {"step_milestones": (0,)}, {"step_milestones": ()},
                {"step_gamma": 0.0}, {"step_gamma": 1.5}, {"restart_period": 0}, {"restart_mult": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TrialConfig(**base, **bad)


def test_a_checkpoint_without_the_new_fields_resumes(tmp_path, one_thread):
    # Checkpoints written before the schedule parameters (or telemetry) existed took today's defaults; they resume.
    config = TrialConfig(**TINY, variant="sgdw", lr=0.05, weight_decay=5e-4, epochs=2)
    straight = train_trial(config)

    def stop(metrics):
        raise RuntimeError("stop after epoch 1")

    with pytest.raises(RuntimeError):
        train_trial(config, on_epoch=stop, checkpoint_dir=tmp_path)
    path = tmp_path / CHECKPOINT_FILE
    payload = torch.load(path, weights_only=False)
    for name in ("step_milestones", "step_gamma", "restart_period", "restart_mult", "telemetry"):
        del payload["config"][name]
    telemetry_fields = ("weight_norm", "weight_norm_stages", "weight_norm_last", "angular_update",
                        "angular_update_theory", "grad_norm", "decay_share")
    for epoch in payload["history"]:  # an epoch recorded before telemetry existed
        for name in telemetry_fields:
            del epoch[name]
    torch.save(payload, path)
    resumed = train_trial(config, checkpoint_dir=tmp_path)
    assert [m.train_loss for m in resumed.history] == [m.train_loss for m in straight.history]
    first, second = resumed.history
    assert all(getattr(first, name) is None for name in telemetry_fields), "unknown, not invented"
    assert all(getattr(second, name) == getattr(straight.history[1], name) for name in telemetry_fields)


def test_sweep_trial_config_takes_precision_compile_and_schedule_parameters_from_the_spec():
    import optuna

    from hpscape.landscapes import SweepSpec
    from hpscape.landscapes.record import Attr
    from hpscape.workers.sweep import trial_config

    base = dict(name="t", dataset="synthetic", model="shake_shake_8_2x16d", variants=["sgdw"], epochs=8,
                batch_size=64, schedule="step", grid={"lr": [0.1], "weight_decay": [0.0]})
    frozen = optuna.trial.create_trial(params={"lr": 0.1, "weight_decay": 0.0}, distributions={
        "lr": optuna.distributions.CategoricalDistribution([0.1]),
        "weight_decay": optuna.distributions.CategoricalDistribution([0.0])}, value=0.0, user_attrs={Attr.SEED: 0})
    gpu = SweepSpec.model_validate({**base, "resources": {"gpu": 0.5}, "step_milestones": [4, 6], "step_gamma": 0.2,
                                    "restart_period": 3, "restart_mult": 1})
    config = TrialConfig(**trial_config(gpu, "sgdw", None, frozen, data_dir=None))
    assert (config.device, config.precision, config.compile, config.channels_last) == ("cuda", "fp32", False, True)
    assert (config.step_milestones, config.step_gamma, config.restart_period, config.restart_mult) == ((4, 6), 0.2, 3,
                                                                                                       1)
    fast = SweepSpec.model_validate({**base, "resources": {"gpu": 0.5}, "precision": "bf16", "compile": True})
    config = TrialConfig(**trial_config(fast, "sgdw", None, frozen, data_dir=None))
    assert (config.precision, config.compile, config.channels_last, config.step_milestones) == ("bf16", True, True,
                                                                                                None)
    cpu = TrialConfig(**trial_config(SweepSpec.model_validate(base), "sgdw", None, frozen, data_dir=None))
    assert (cpu.device, cpu.precision, cpu.compile, cpu.channels_last) == ("cpu", "fp32", False, False)

"""The trainer: learns, resumes bit-identically, reports divergence as data, and the `hpscape train` command."""

from __future__ import annotations

import math
import re

import pytest
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


@pytest.mark.parametrize("variant", ["sgd", "adamw"])
def test_resume_after_interruption_is_bit_identical(tmp_path, variant):
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
    for a, b in zip(straight.history, resumed.history, strict=True):
        assert (a.test_error, a.test_loss, a.train_loss, a.train_error) == (
            b.test_error, b.test_loss, b.train_loss, b.train_error)


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

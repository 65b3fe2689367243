"""What a newcomer sees from the CLI: progress in a log file, metrics in one unit, one-line data errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hpscape.landscapes import get_preset
from hpscape.service.cli import app
from hpscape.service.cli._common import format_metric
from hpscape.service.cli.run import progress_line


def _snapshot(final: bool = False) -> dict:
    spec = get_preset("quick")
    summary = {
        "sgd": {"counts": {"COMPLETE": 10, "FAIL": 1, "RUNNING": 2}, "best": {"value": 0.41, "params": {}}},
        "sgdw": {"counts": {"COMPLETE": 14, "PRUNED": 0, "RUNNING": 0}, "best": {"value": 0.39, "params": {}}},
        "adamw": {"counts": {}, "best": None},
    }
    return {"spec": spec, "summary": summary, "final": final, "elapsed_s": 240.0}


def test_a_plain_progress_line_says_done_failed_running_eta_and_the_best() -> None:
    line = progress_line(_snapshot())
    assert line == ("quick: 24/66 trials finished (1 failed, 2 running), 240 s, ETA 420 s; "
                    "best test_loss 0.3900 (sgdw)")
    assert "ETA" not in progress_line(_snapshot(final=True))


def test_errors_print_in_percent_and_losses_as_numbers() -> None:
    assert format_metric("test_error", 0.0523) == "5.23 %"
    assert format_metric("test_loss", 0.41234) == "0.4123"
    assert format_metric("test_error", None) == "-"


def test_train_without_the_cifar_archive_is_one_line_with_the_fix(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "--dataset", "cifar10", "--model", "shake_shake_8_2x8d", "--lr", "0.1",
                                      "--weight-decay", "0", "--epochs", "1", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "cifar-10-python.tar.gz" in text and "place it at" in text and "Traceback" not in result.output


def test_run_refuses_a_cifar_sweep_before_starting_when_the_archive_is_missing(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", "--preset", "fig2", "--storage", f"sqlite:///{tmp_path / 'x.db'}",
                                      "--data-dir", str(tmp_path / "data"), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "the CIFAR-10 archive is not at" in text and "md5 c58f30108f718f92721af3b95e74349a" in text
    assert not (tmp_path / "runs").exists(), "nothing started"


@pytest.mark.ray
def test_run_into_a_file_logs_plain_progress_lines(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text("name: tiny\ndataset: synthetic\nmodel: shake_shake_8_2x8d\nvariants: [sgdw]\nepochs: 1\n"
                    "batch_size: 128\ngrid: {lr: [0.05], weight_decay: [0.0005]}\n")
    log = tmp_path / "log.txt"
    with log.open("w") as out:  # a file, not a terminal: what `make demo > log` gives
        done = subprocess.run([sys.executable, "-m", "hpscape.service.cli", "run", str(spec), "--storage",
                               f"sqlite:///{tmp_path / 'r.db'}", "--runs-dir", str(tmp_path / "runs")],
                              stdout=out, stderr=subprocess.STDOUT, timeout=300)
    text = log.read_text()
    assert done.returncode == 0, text
    assert "tiny: 1/1 trials finished (0 failed, 0 running)" in text, text


def test_hpscape_models_lists_the_registry_the_docs_point_to() -> None:
    from hpscape.landscapes import model_names

    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    assert result.output.split() == list(model_names()) and "shake_shake_8_2x16d" in result.output.split()

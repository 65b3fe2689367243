"""The Ray Tune trainable: one claimed Optuna trial, trained with `train_trial`, recorded epoch by epoch.

The worker writes to the study itself (intermediate value and attributes after every epoch, `tell` at the end), so a
record never depends on Ray delivering a callback to the driver: an error while writing fails the Ray trial, and
FailureConfig retries it from its last checkpoint, which writes the record again (every write is idempotent).
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict
from pathlib import Path
from typing import Any

from landscapes.record import Attr, finish_trial, make_storage, open_study, record_epoch

_STORAGES: dict[str, Any] = {}  # one connection pool per worker process, reused by actors that run several trials


def checkpoint_dir_for(runs_dir: str | Path, sweep: str, variant: str, number: int) -> Path:
    """Stable per-trial checkpoint directory: a retry or a resumed sweep finds the same one."""
    return Path(runs_dir) / sweep / "checkpoints" / variant / f"trial-{number:05d}"


def _storage(url: str):
    if url not in _STORAGES:
        _STORAGES[url] = make_storage(url)
    return _STORAGES[url]


def run_trial(config: dict[str, Any]) -> None:
    """Ray Tune function trainable. `config` is what `StudySearcher.suggest` produced."""
    from ray import tune

    from workers.train import TrialConfig, train_trial

    import torch

    torch.set_num_threads(int(config.get("threads", 1)))  # the trial's CPU share, so parallel trials do not contend
    trial = TrialConfig(**config["trial"])
    objective = config["objective"]
    study = open_study(_storage(config["storage"]), config["sweep"], trial.variant, create=False)
    number = int(config["number"])
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    study._storage.set_trial_user_attr(trial_id, Attr.worker, f"{socket.gethostname()}:{os.getpid()}")

    first_epoch: list[int] = []

    def on_epoch(metrics) -> None:
        if not first_epoch:  # the first epoch this worker trains tells whether it resumed from a checkpoint
            first_epoch.append(metrics.epoch)
            study._storage.set_trial_user_attr(trial_id, Attr.resumed_from_epoch, metrics.epoch - 1)
        values = _metric_values(metrics)
        record_epoch(study, number, metrics.epoch, values, objective=objective)
        tune.report({"epoch": metrics.epoch, "number": number, **values})

    checkpoint_dir = checkpoint_dir_for(config["runs_dir"], config["sweep"], trial.variant, number)
    result = train_trial(trial, on_epoch=on_epoch, checkpoint_dir=checkpoint_dir)
    # A crash between a checkpoint and its record (or a resumed, already finished run) would leave epochs unrecorded.
    for metrics in result.history:
        record_epoch(study, number, metrics.epoch, _metric_values(metrics), objective=objective)
    final = _metric_values(result.final)
    final["wall_s"] = result.wall_s
    finish_trial(study, number, final, objective=objective, diverged=result.diverged)


def _metric_values(metrics) -> dict[str, float]:
    values = asdict(metrics)
    return {
        "test_error": values["test_error"],
        "test_loss": values["test_loss"],
        "train_loss": values["train_loss"],
        "train_error": values["train_error"],
        "images_per_s": values["images_per_s"],
        "epoch_seconds": values["epoch_seconds"],
        "diverged": float(values["diverged"]),
    }

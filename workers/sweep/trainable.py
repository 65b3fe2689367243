"""The Ray Tune trainable: one claimed Optuna trial, trained with `train_trial`, recorded epoch by epoch.

The worker writes to the study itself (intermediate value, attributes and the whole history after every epoch,
the final state at the end), so a record never depends on Ray delivering a callback to the driver. Every write
rides out a database blip (`call_with_retries`: bounded backoff, then `DatabaseUnavailable`); an error that
outlasts the retries fails the Ray trial, and FailureConfig retries it from its last checkpoint, which writes the
record again (every write is idempotent).

Checkpoints live under the record's identity (`record_id`, kept in the studies' user attrs), so a sweep of the same
name recorded in another storage (a user who deleted the database to start over) never resumes this one's.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hpscape.landscapes.record import (
    Attr,
    finish_trial,
    get_trial,
    make_storage,
    record_epoch,
    set_trial_attrs,
)
from hpscape.workers.sweep.loggers import tune_values
from hpscape.workers.sweep.retry import call_with_retries

RAY_NODE_ATTR = "ray_node"  # the Ray node id (hex) of the worker that trains the trial, next to Attr.WORKER
_STORAGES: dict[str, Any] = {}  # one connection pool per worker process, reused by actors that run several trials
# What the record keeps of each epoch, beside the history: the metrics as attrs (the last epoch's stay).
_EPOCH_ATTRS = ("test_error", "test_loss", "train_loss", "train_error", "images_per_s", "epoch_seconds", "diverged")


def checkpoint_dir_for(runs_dir: str | Path, sweep: str, key: str, number: int, record_id: str | None = None) -> Path:
    """Stable per-trial checkpoint directory (`key` is 'sgdw' or 'sgdw/schedule=step'): a retry or a resumed
    sweep of the same record finds the same one, a record of the same name in another storage never does.

    `record_id` None is a record made before records had an identity: its checkpoints stay where they were.
    """
    base = Path(runs_dir) / sweep / "checkpoints"
    if record_id is not None:
        base = base / record_id
    return base / key / f"trial-{number:05d}"


def _storage(url: str):
    if url not in _STORAGES:
        _STORAGES[url] = call_with_retries(make_storage, url, what="opening the record's storage")
    return _STORAGES[url]


def run_trial(config: dict[str, Any]) -> None:
    """Ray Tune function trainable. `config` is what `StudySearcher.suggest` produced."""
    import optuna
    import torch
    from ray import tune

    from hpscape.workers.train import TrialConfig, train_trial

    torch.set_num_threads(int(config.get("threads", 1)))  # the trial's CPU share, so parallel trials do not contend
    trial = TrialConfig(**config["trial"])
    objective = config["objective"]
    number = int(config["number"])
    label = f"{config['study']} #{number}"
    storage = _storage(config["storage"])
    study = call_with_retries(optuna.load_study, study_name=config["study"], storage=storage,
                              what=f"opening the study of trial {label}")

    def write(fn, *args, what: str, **kwargs):
        return call_with_retries(fn, study, number, *args, what=f"{what} of trial {label}", **kwargs)

    # Which process and Ray node trains it: on a cluster, a retried trial shows the node it moved to.
    write(set_trial_attrs, {Attr.WORKER: f"{socket.gethostname()}:{os.getpid()}", RAY_NODE_ATTR: _ray_node_id()},
          what="recording the worker")

    started = time.perf_counter()
    # Wall time accumulates over retries: a resumed worker adds its time to what its predecessors recorded.
    earlier_wall_s = float(write(get_trial, what="reading the record").user_attrs.get(Attr.WALL_S) or 0.0)
    first_epoch: list[int] = []
    history: list[dict[str, Any]] = []
    reported: list[int] = []
    weights: dict[int, dict[str, Any]] = {}  # epoch -> weight samples, for that epoch's report (histograms)

    def values_of(metrics) -> dict[str, float]:
        return {**_metric_values(metrics), "wall_s": earlier_wall_s + time.perf_counter() - started}

    def report(metrics, values) -> None:
        reported.append(metrics.epoch)
        tune.report({**tune_values(metrics, weights.pop(metrics.epoch, None)), "epoch": metrics.epoch, "number": number,
                     **values})

    def on_epoch(metrics) -> None:
        if not first_epoch:  # the first epoch this worker trains tells whether it resumed from a checkpoint
            first_epoch.append(metrics.epoch)
            write(set_trial_attrs, {Attr.RESUMED_FROM_EPOCH: metrics.epoch - 1}, what="recording the resume")
        history.append(asdict(metrics))
        values = values_of(metrics)
        write(record_epoch, metrics.epoch, values, objective=objective, history=history,
              what=f"recording epoch {metrics.epoch}")
        final = metrics.epoch == trial.epochs or metrics.diverged
        if final:
            # Finish before the last report: a scheduler may stop the trial the moment it sees the final epoch.
            write(finish_trial, values, objective=objective, diverged=metrics.diverged, what="finishing")
        if config.get("report_every_epoch", True) or final:
            # Each report waits for the driver to take it; only a scheduler (ASHA) and the spec's loggers
            # (hpscape.workers.sweep.loggers) need one per epoch, since the study already holds every epoch.
            report(metrics, values)

    def on_resume(restored) -> None:
        # A worker killed between a checkpoint and its record left that epoch unrecorded: record it now, with the
        # checkpoint's history, so the record holds exactly the epochs the model went through.
        history[:] = [asdict(m) for m in restored]
        for metrics in restored:
            write(record_epoch, metrics.epoch, _metric_values(metrics), objective=objective,
                  history=history[: metrics.epoch], what=f"recording restored epoch {metrics.epoch}")

    checkpoint_dir = checkpoint_dir_for(config["runs_dir"], config["sweep"], config["key"], number,
                                        config.get("record_id"))
    result = train_trial(trial, on_epoch=on_epoch, on_resume=on_resume, on_weights=weights.__setitem__,
                         checkpoint_dir=checkpoint_dir)
    values = values_of(result.final)
    write(finish_trial, values, objective=objective, diverged=result.diverged, what="finishing")
    if not reported:
        # Resumed from a checkpoint of its last epoch (its worker died after the checkpoint, before the report):
        # Tune still needs the metric once, or it fails the whole sweep ("did not include the specified metric").
        report(result.final, values)


def _ray_node_id() -> str | None:
    import ray

    if not ray.is_initialized():  # called outside Ray (a test): get_runtime_context() would start a local Ray
        return None
    return ray.get_runtime_context().get_node_id()


def _metric_values(metrics) -> dict[str, float]:
    values = asdict(metrics)
    return {name: float(values[name]) for name in _EPOCH_ATTRS}

"""Where a sweep's per-epoch history goes besides the record: TensorBoard, MLflow, Weights & Biases.

All three go through Ray Tune's own logger callbacks (TBXLoggerCallback, MLflowLoggerCallback, WandbLoggerCallback),
fed by the report the trainable makes after every epoch (`tune_values`). The spec's `loggers` picks them (default
``[tensorboard]``); the environment says where they write (docs/telemetry.md):

- tensorboard: one set of event files per trial under ``RUNS_DIR/tune/<sweep>-<started>/<trial>/``: every history
  field as a scalar, weight histograms at a few epochs, and the HParams summary (`trial_hparams` and the final
  metrics). `hpscape tensorboard NAME` opens them.
- mlflow: one run per trial in the experiment named after the sweep, at MLFLOW_TRACKING_URI (default: a SQLite file
  in the runs folder); params `trial_hparams`, metrics every epoch (step = epoch).
- wandb: one run per trial in WANDB_PROJECT (default 'hpscape'), grouped by sweep; WANDB_MODE=offline keeps the runs
  in the trial folders for `wandb sync`.

Neither MLflow nor W&B is a dependency: a spec naming one whose package is missing fails before anything is
recorded (`LoggerUnavailable`, with the pip command). Each Ray integration imports its package when it is imported,
so those two are imported only for a sweep that asks for them.

Every logger gets the trial's hyperparameters from `trial_hparams`, never Ray's default (the whole trial config):
that holds the record's storage URL, which may carry a database password.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.tune.logger import TBXLoggerCallback

from hpscape.landscapes.axes import AXES, axis_applies
from hpscape.landscapes.variants import get_variant
from hpscape.landscapes.vocabulary import HISTORY_FIELDS
from hpscape.workers.telemetry import stage_label

if TYPE_CHECKING:
    from ray.tune import Callback

    from hpscape.landscapes import SweepSpec
    from hpscape.workers.train import EpochMetrics

__all__ = [
    "INSTALL_HINTS",
    "NOT_APPLICABLE",
    "LoggerUnavailable",
    "TensorBoardCallback",
    "check_loggers",
    "hparam_axes",
    "mlflow_tracking_uri",
    "trial_hparams",
    "tune_callbacks",
    "tune_values",
]

# What each logger imports, and how to get it.
_PACKAGES = {"tensorboard": "tensorboardX", "mlflow": "mlflow", "wandb": "wandb"}
INSTALL_HINTS = {
    "tensorboard": "pip install tensorboardX",  # comes with ray[tune]; missing only from a broken install
    "mlflow": "pip install 'hpscape[mlflow]'",
    "wandb": "pip install 'hpscape[wandb]'",
}
NOT_APPLICABLE = "n/a"  # the value of a hyperparameter the trial's optimizer does not read (momentum for Adam)
_DEFAULT_WANDB_PROJECT = "hpscape"


class LoggerUnavailable(ValueError):
    """Raised before a sweep starts when its spec names a logger whose package is not installed."""


def check_loggers(loggers: Iterable[str]) -> None:
    """`LoggerUnavailable`, naming the pip command, if a logger's package cannot be imported here."""
    missing = [name for name in loggers if importlib.util.find_spec(_PACKAGES[name]) is None]
    if missing:
        raise LoggerUnavailable(
            "; ".join(f"loggers: {name} needs the {_PACKAGES[name]} package, which is not installed here: "
                      f"{INSTALL_HINTS[name]} (or remove {name!r} from the spec's loggers)" for name in missing))


# ------------------------------------------------------------------------------------------------ what is reported


def tune_values(metrics: EpochMetrics, weights: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the trainable reports to Tune after an epoch: every history field that has a value, as a number.

    The stage norms become one scalar each (``weight_norm_stages/stem``, ...), ``diverged`` 0 or 1, and None or NaN
    (not measured) are left out. `weights` (`Telemetry.weight_samples`) go under ``weights/<stage>``, which
    TensorBoard shows as histograms. ``timesteps_total`` is the epoch, so every logger's step is the epoch, also
    after Ray restarts a trial from its checkpoint.
    """
    row = asdict(metrics)
    out: dict[str, Any] = {"timesteps_total": metrics.epoch}
    for name in HISTORY_FIELDS:
        value = row.get(name)
        if name == "weight_norm_stages":
            stages = {stage_label(i): v for i, v in enumerate(value or ()) if v is not None and math.isfinite(v)}
            if stages:
                out[name] = stages
        elif isinstance(value, bool):
            out[name] = int(value)
        elif isinstance(value, (int, float)) and math.isfinite(value):
            out[name] = value
    if weights:
        out["weights"] = dict(weights)
    return out


def hparam_axes(variants: Iterable[str]) -> tuple[str, ...]:
    """The axes any of `variants` reads, in the registry's order: every trial of a sweep lists the same ones."""
    specs = [get_variant(v) for v in variants]
    return tuple(name for name, axis in AXES.items() if any(axis_applies(axis, v) for v in specs))


def trial_hparams(config: Mapping[str, Any], axes: Iterable[str]) -> dict[str, str | int | float | bool]:
    """A trial's hyperparameters as every logger shows them: its study, number, variant and seed, and the value of
    each of `axes` (`NOT_APPLICABLE` where its optimizer reads none).

    The same keys for every trial of a sweep, since TensorBoard's HParams table takes its columns from one trial. Only
    these: the trial's Tune config also holds the record's storage URL and local paths.
    """
    trial = config["trial"]
    out: dict[str, str | int | float | bool] = {
        "study": str(config["key"]), "number": int(config["number"]), "variant": str(trial["variant"]),
        "seed": int(trial["seed"]),
    }
    for name in axes:
        value = trial.get(name)
        out[name] = value if isinstance(value, (str, int, float, bool)) else NOT_APPLICABLE
    return out


def _metric_tag(tag: str) -> bool:
    """Whether a TensorBoard scalar tag (``ray/tune/<name>``) is a history field or the wall time."""
    name = tag.removeprefix("ray/tune/").split("/", 1)[0]
    return name != "epoch" and (name in HISTORY_FIELDS or name == "wall_s")


# ------------------------------------------------------------------------------------------------ the callbacks


class TensorBoardCallback(TBXLoggerCallback):
    """Ray's TensorBoard logger, whose HParams summary lists `trial_hparams` and the history's final values.

    Ray's own would write `trial.evaluated_params`, the whole trial config (storage URL included), and every result
    key as a metric.
    """

    def __init__(self, axes: Iterable[str]) -> None:
        super().__init__()
        self._axes = tuple(axes)

    def _try_log_hparams(self, trial: Any, result: dict[str, Any]) -> None:
        from tensorboardX.summary import hparams

        metrics = {tag: value for tag, value in result.items() if _metric_tag(tag)}
        writer = self._trial_writer[trial].file_writer
        for summary in hparams(hparam_dict=trial_hparams(trial.config, self._axes), metric_dict=metrics):
            writer.add_summary(summary)


class _NoTensorBoard(TBXLoggerCallback):
    """Writes nothing. Tune adds its own TensorBoard logger to any run that passes none: a spec whose loggers leave
    out tensorboard passes this one instead."""

    def __init__(self) -> None:  # no SummaryWriter: there is nothing to write
        pass

    def log_trial_start(self, trial: Any) -> None:
        pass

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        pass

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        pass


def mlflow_tracking_uri(runs_dir: str | Path) -> str:
    """MLFLOW_TRACKING_URI, or a SQLite file in the runs folder (MLflow 3 refuses a new file store by default)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(runs_dir).resolve() / 'mlflow.db'}"


def _mlflow_callback(spec: SweepSpec, axes: tuple[str, ...], runs_dir: Path) -> Callback:
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    class MLflowCallback(MLflowLoggerCallback):
        """Ray's MLflow logger, with `trial_hparams` for params (Ray logs the whole trial config) and without the
        config among the metrics."""

        def log_trial_start(self, trial: Any) -> None:
            if trial not in self._trial_runs:
                run = self.mlflow_util.start_run(tags={**self.tags, "trial_name": str(trial)}, run_name=str(trial))
                self._trial_runs[trial] = run.info.run_id
            self.mlflow_util.log_params(run_id=self._trial_runs[trial], params_to_log=trial_hparams(trial.config, axes))

        def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
            super().log_trial_result(iteration, trial, {k: v for k, v in result.items() if k != "config"})

    return MLflowCallback(tracking_uri=mlflow_tracking_uri(runs_dir), experiment_name=spec.name,
                          tags={"sweep": spec.name})


def _wandb_callback(spec: SweepSpec, axes: tuple[str, ...]) -> Callback:
    from ray.air.integrations.wandb import WandbLoggerCallback

    class WandbCallback(WandbLoggerCallback):
        """Ray's W&B logger, with `trial_hparams` for the run's config, writing its files into the trial's folder of
        the runs folder.

        Ray's sends the trial config twice: at the start (here replaced through the `wandb.init` arguments) and with
        every result (dropped here). And its actor writes into Tune's staging copy of the trial folder, which Tune
        copies to the runs folder before the last trials' actors have finished: their offline runs arrived cut off.
        """

        def log_trial_start(self, trial: Any) -> None:
            changes: dict[str, Any] = {"config": trial_hparams(trial.config, axes)}
            folder = Path(trial.path)
            if folder.is_absolute():  # a local runs folder (a URI such as s3://... keeps Ray's choice)
                folder.mkdir(parents=True, exist_ok=True)
                changes["dir"] = str(folder)
            self.kwargs = {**self.kwargs, **changes}
            super().log_trial_start(trial)

        def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
            super().log_trial_result(iteration, trial, {k: v for k, v in result.items() if k != "config"})

    return WandbCallback(project=os.environ.get("WANDB_PROJECT") or _DEFAULT_WANDB_PROJECT,
                         group=os.environ.get("WANDB_RUN_GROUP") or spec.name)


def tune_callbacks(spec: SweepSpec, runs_dir: str | Path) -> list[Callback]:
    """The Tune callbacks for `spec.loggers`; `LoggerUnavailable` first if one's package is missing."""
    check_loggers(spec.loggers)
    axes = hparam_axes(spec.variants)
    callbacks: list[Any] = [TensorBoardCallback(axes) if "tensorboard" in spec.loggers else _NoTensorBoard()]
    if "mlflow" in spec.loggers:
        callbacks.append(_mlflow_callback(spec, axes, Path(runs_dir)))
    if "wandb" in spec.loggers:
        callbacks.append(_wandb_callback(spec, axes))
    return callbacks

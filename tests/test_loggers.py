"""Loggers (hpscape.workers.sweep.loggers): what each epoch reports to Tune, the hyperparameters every tracker shows,
the refusal of a logger whose package is missing, `hpscape tensorboard`, and one real sweep read back from
TensorBoard's event files (through TensorBoard's own readers and HParams backend), an MLflow file store (through
MLflow's client) and W&B's offline run files."""

from __future__ import annotations

import glob
import importlib.util
import json
import math
import os
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from ray.tune.logger import TBXLoggerCallback
from ray.tune.utils.callback import _create_default_callbacks
from typer.testing import CliRunner

from hpscape.landscapes import SweepSpec
from hpscape.landscapes.record import Attr, make_storage, open_study
from hpscape.landscapes.vocabulary import HISTORY_FIELDS
from hpscape.service.cli import app as cli
from hpscape.service.cli.tensorboard import tensorboard_command, tensorboard_dirs
from hpscape.workers.sweep.loggers import (
    NOT_APPLICABLE,
    LoggerUnavailable,
    TensorBoardCallback,
    check_loggers,
    hparam_axes,
    mlflow_tracking_uri,
    trial_hparams,
    tune_callbacks,
    tune_values,
)
from hpscape.workers.telemetry import histogram_epochs
from hpscape.workers.train import EpochMetrics

SECRET = "postgresql://alice:hunter2@db.internal/hpscape"  # a storage URL that must reach no tracker


def spec_of(**overrides) -> SweepSpec:
    values = dict(name="logs", dataset="synthetic", model="shake_shake_8_2x16d", variants=["sgd", "adamw"], epochs=5,
                  batch_size=128, grid={"lr": {"sgd": [0.05], "adamw": [0.003]}, "weight_decay": [1e-4, 1e-3]},
                  resources={"cpu": 1, "gpu": 0}, max_concurrent_trials=2, metric="test_error")
    values.update(overrides)
    return SweepSpec.model_validate(values)


def tune_config(spec: SweepSpec, variant: str, number: int, params: dict) -> dict:
    """A trial's Tune config as the engine builds it (its keys; the values that matter here)."""
    return {"sweep": spec.name, "study": f"{spec.name}/{variant}", "key": variant, "storage": SECRET,
            "runs_dir": "/srv/runs", "number": number,
            "trial": {"variant": variant, "seed": 0, **spec.trial_values(variant, params), "data_dir": "/srv/data"}}


# ------------------------------------------------------------------------ what each epoch reports


def test_an_epoch_reports_every_history_field_as_a_number():
    metrics = EpochMetrics(epoch=3, test_error=0.25, test_loss=0.9, train_loss=0.8, train_error=0.2,
                           epoch_seconds=1.5, images_per_s=300.0, lr_t=0.04, diverged=False, weight_norm=7.0,
                           weight_norm_stages=[1.0, 2.0, None, 4.0], weight_norm_last=3.0, angular_update=0.01,
                           angular_update_theory=None, grad_norm=math.nan, decay_share=0.5)
    weights = {"stem": np.zeros(4, dtype=np.float32)}
    values = tune_values(metrics, weights)
    assert values["timesteps_total"] == 3, "every logger's step is the epoch"
    assert values["weight_norm_stages"] == {"stem": 1.0, "stage1": 2.0, "stage3": 4.0}
    assert values["diverged"] == 0 and values["weights"] == weights
    # Not measured (None) and not finite (NaN) are left out; everything else is there, as the history has it.
    assert "angular_update_theory" not in values and "grad_norm" not in values
    reported = set(HISTORY_FIELDS) - {"angular_update_theory", "grad_norm"}
    assert reported <= set(values) and all(values[k] == getattr(metrics, k) for k in reported - {"weight_norm_stages"})
    assert "weights" not in tune_values(metrics), "histogram samples only at the epochs that have them"


def test_every_trial_shows_the_same_hyperparameters_and_never_the_storage_url():
    spec = spec_of(variants=["sgd", "adamw", "rmspropw"], grid={"lr": [0.01], "weight_decay": [1e-4]})
    axes = hparam_axes(spec.variants)
    rows = {v: trial_hparams(tune_config(spec, v, 7, {"lr": 0.01, "weight_decay": 1e-4}), axes)
            for v in spec.variants}
    assert len({tuple(row) for row in rows.values()}) == 1, "one set of keys: TensorBoard takes its columns from one"
    assert rows["sgd"]["momentum"] == 0.9 and rows["adamw"]["momentum"] == NOT_APPLICABLE
    assert rows["adamw"]["beta2"] == 0.999 and rows["rmspropw"]["rho"] == 0.99
    assert rows["sgd"]["study"] == "sgd" and rows["sgd"]["number"] == 7 and rows["sgd"]["lr"] == 0.01
    assert all(isinstance(v, (str, int, float, bool)) for row in rows.values() for v in row.values())
    assert not any("hunter2" in str(v) or "/srv" in str(v) for row in rows.values() for v in row.values())


# ------------------------------------------------------------------------ the spec and the refusal


def test_the_spec_names_its_loggers():
    assert spec_of().loggers == ["tensorboard"], "TensorBoard by default"
    assert spec_of(loggers=["mlflow", "wandb"]).loggers == ["mlflow", "wandb"]
    with pytest.raises(ValueError, match="Input should be 'tensorboard', 'mlflow' or 'wandb'"):
        spec_of(loggers=["neptune"])
    with pytest.raises(ValueError, match="duplicate of item"):
        spec_of(loggers=["mlflow", "mlflow"])


def _without(monkeypatch, package: str) -> None:
    """Make `package` look uninstalled to the logger check (everything else still found)."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a))


@pytest.mark.parametrize(("logger", "package", "command"), [("mlflow", "mlflow", "pip install 'hpscape[mlflow]'"),
                                                             ("wandb", "wandb", "pip install 'hpscape[wandb]'")])
def test_a_logger_whose_package_is_missing_is_refused_with_the_pip_command(monkeypatch, logger, package, command):
    _without(monkeypatch, package)
    with pytest.raises(LoggerUnavailable, match=f"loggers: {logger} needs the {package} package.*{re.escape(command)}"):
        check_loggers(["tensorboard", logger])
    check_loggers(["tensorboard"])  # the others are fine


def test_hpscape_run_refuses_it_with_exit_2_before_starting_anything(monkeypatch, tmp_path):
    import ray

    _without(monkeypatch, "mlflow")
    ray_before = ray.is_initialized()
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec_of(loggers=["tensorboard", "mlflow"]).model_dump(mode="json")))
    result = CliRunner().invoke(cli, ["run", str(spec_file), "--storage", f"sqlite:///{tmp_path / 'r.db'}",
                                      "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    assert "loggers: mlflow needs the mlflow package" in result.output
    assert "pip install 'hpscape[mlflow]'" in result.output
    assert ray.is_initialized() == ray_before and not (tmp_path / "r.db").exists(), "refused before Ray and the record"


@pytest.mark.parametrize("loggers", [["tensorboard"], ["mlflow"], []])
def test_tune_gets_exactly_one_tensorboard_logger_and_only_if_asked(tmp_path, monkeypatch, loggers):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file://{tmp_path / 'mlruns'}")
    callbacks = _create_default_callbacks(tune_callbacks(spec_of(loggers=loggers), tmp_path))
    tensorboard = [c for c in callbacks if isinstance(c, TBXLoggerCallback)]
    # Tune adds its own TensorBoard logger (whole trial config for hparams) unless one is there already.
    assert len(tensorboard) == 1
    assert isinstance(tensorboard[0], TensorBoardCallback) == ("tensorboard" in loggers)


def test_mlflow_writes_where_the_environment_says_else_into_the_runs_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert mlflow_tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert mlflow_tracking_uri(tmp_path) == "http://127.0.0.1:5000"


# ------------------------------------------------------------------------ hpscape tensorboard


def test_hpscape_tensorboard_finds_the_sweeps_folders_and_prints_the_command(tmp_path):
    tune = tmp_path / "runs" / "tune"
    for folder in ("fig2-20260101-120000", "fig2-20260102-080000", "fig2-small-20260101-120000", "fig2-notes"):
        (tune / folder / "trial").mkdir(parents=True)
        (tune / folder / "trial" / "events.out.tfevents.1.host").write_bytes(b"")
    dirs = tensorboard_dirs(tmp_path / "runs", "fig2")
    assert [d.name for d in dirs] == ["fig2-20260101-120000", "fig2-20260102-080000"], "not fig2-small's"
    assert tensorboard_command(dirs[:1], port=6006, host="127.0.0.1") == [
        "tensorboard", "--logdir", str(dirs[0]), "--host", "127.0.0.1", "--port", "6006"]
    assert tensorboard_command(dirs, port=7000, host="0.0.0.0")[1:3] == [
        "--logdir_spec", f"20260101-120000:{dirs[0]},20260102-080000:{dirs[1]}"]

    runner = CliRunner()
    printed = runner.invoke(cli, ["tensorboard", "fig2-small", "--runs-dir", str(tmp_path / "runs"), "--print"])
    assert printed.exit_code == 0 and f"--logdir {tune / 'fig2-small-20260101-120000'}" in printed.stdout
    unknown = runner.invoke(cli, ["tensorboard", "fig3", "--runs-dir", str(tmp_path / "runs"), "--print"])
    assert unknown.exit_code == 2 and "no runs of sweep 'fig3'" in unknown.output
    assert "sweeps there: fig2, fig2-small" in unknown.output
    (tune / "quiet-20260101-120000" / "trial").mkdir(parents=True)
    quiet = runner.invoke(cli, ["tensorboard", "quiet", "--runs-dir", str(tmp_path / "runs"), "--print"])
    assert quiet.exit_code == 2 and "no TensorBoard event files" in quiet.output


# ------------------------------------------------------------------------ one real sweep, read back


@pytest.fixture(scope="module")
def logged_sweep(tmp_path_factory):
    """A 2 x 2 sweep of 5 epochs with all three loggers: TensorBoard, MLflow in a file store, W&B offline."""
    import ray

    root = tmp_path_factory.mktemp("loggers")
    env = {"MLFLOW_TRACKING_URI": f"file://{root / 'mlruns'}", "MLFLOW_ALLOW_FILE_STORE": "true",
           "WANDB_MODE": "offline", "WANDB_PROJECT": "hpscape-test", "WANDB_SILENT": "true",
           "WANDB_CONFIG_DIR": str(root / "wandb-config"), "WANDB_CACHE_DIR": str(root / "wandb-cache"),
           "WANDB_DATA_DIR": str(root / "wandb-data")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    # W&B logs from a Ray actor, which sees the environment Ray started with: a Ray started before it had no W&B mode.
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    from hpscape.workers.sweep import run_sweep

    spec = spec_of(loggers=["tensorboard", "mlflow", "wandb"])
    # The record's URL is where the trials' Tune configs carry the storage: it must not reach any tracker.
    storage_url = f"sqlite:///{root / 'record-hunter2.db'}"
    try:
        run_sweep(spec, storage_url=storage_url, runs_dir=root / "runs")
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    storage = make_storage(storage_url)
    histories = {}  # trial folder name prefix ('sgd-00001') -> the record's history of that trial
    for variant in spec.variants:
        for trial in open_study(storage, spec.name, variant, create=False).get_trials(deepcopy=False):
            histories[f"{variant}-{trial.number:05d}"] = trial.user_attrs[Attr.HISTORY]
    (experiment,) = tensorboard_dirs(root / "runs", spec.name)
    return spec, root, experiment, histories


def _trial_dirs(experiment: Path) -> dict[str, Path]:
    return {"-".join(p.name.split("-")[:2]): p for p in experiment.iterdir() if p.is_dir() and "-0" in p.name}


def _history_scalars(entry: dict) -> dict[str, float]:
    """A history entry as the scalars TensorBoard shows (`tune_values`'s flattening)."""
    out = {}
    for name in HISTORY_FIELDS:
        value = entry.get(name)
        if name == "weight_norm_stages":
            out.update({f"weight_norm_stages/{k}": v for k, v in zip(("stem", "stage1", "stage2", "stage3"), value)})
        elif value is not None:
            out[name] = float(value)
    return out


@pytest.mark.ray
@pytest.mark.slow
def test_tensorboard_has_every_field_per_epoch_histograms_and_the_hparams_table(logged_sweep):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    spec, _, experiment, histories = logged_sweep
    trials = _trial_dirs(experiment)
    assert set(trials) == set(histories) and len(trials) == 4, "one folder per trial"
    for name, folder in trials.items():
        events = list(folder.glob("events.out.tfevents.*"))
        assert len(events) == 1, f"{name}: one event file"
        assert b"hunter2" not in events[0].read_bytes(), "the storage URL is in no event"
        reader = EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0})
        reader.Reload()
        expected = [_history_scalars(entry) for entry in histories[name]]
        for field in expected[0]:
            series = reader.Scalars(f"ray/tune/{field}")
            assert [e.step for e in series] == [1, 2, 3, 4, 5], f"{name} {field}: one point per epoch"
            assert [e.value for e in series] == pytest.approx([row[field] for row in expected], rel=1e-5), field
        for stage in ("stem", "stage1", "stage2", "stage3", "last"):
            steps = [e.step for e in reader.Histograms(f"ray/tune/weights/{stage}")]
            assert steps == sorted(histogram_epochs(spec.epochs)) == [1, 2, 4, 5], f"{name} {stage}"

    # TensorBoard's HParams backend, as its table reads it: every cell, its hyperparameters, its final metrics.
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(experiment))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(experiment))
    backend = backend_context.Context(base_plugin.TBContext(data_provider=provider, logdir=str(experiment),
                                                            multiplexer=multiplexer))
    request = api_pb2.ListSessionGroupsRequest(start_index=0, slice_size=100, allowed_statuses=[
        api_pb2.STATUS_UNKNOWN, api_pb2.STATUS_SUCCESS, api_pb2.STATUS_FAILURE, api_pb2.STATUS_RUNNING])
    groups = list_session_groups.Handler(context.RequestContext(), backend, "", request).run().session_groups
    assert sorted("-".join(g.name.split("-")[:2]) for g in groups) == sorted(histories)
    for group in groups:
        name = "-".join(group.name.split("-")[:2])
        variant = name.split("-")[0]
        shown = {k: (v.string_value if v.HasField("string_value") else v.number_value)
                 for k, v in group.hparams.items()}
        assert shown["variant"] == variant and shown["number"] == int(name.split("-")[1])
        assert shown["momentum"] == (0.9 if variant == "sgd" else NOT_APPLICABLE)
        assert shown["lr"] == {"sgd": 0.05, "adamw": 0.003}[variant] and shown["weight_decay"] in (1e-4, 1e-3)
        final = _history_scalars(histories[name][-1])
        metrics = {m.name.tag.removeprefix("ray/tune/"): m.value for m in group.metric_values}
        assert {"test_error", "test_loss", "angular_update", "weight_norm", "decay_share"} <= set(metrics)
        assert all(metrics[k] == pytest.approx(final[k], rel=1e-5) for k in metrics if k in final), name


@pytest.mark.ray
@pytest.mark.slow
def test_mlflow_has_one_run_per_trial_with_its_params_and_every_epoch(logged_sweep):
    from mlflow.tracking import MlflowClient

    spec, root, _, histories = logged_sweep
    client = MlflowClient(tracking_uri=f"file://{root / 'mlruns'}")
    experiment = client.get_experiment_by_name(spec.name)
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    for run in runs:
        name = "-".join(run.info.run_name.split("-")[:2])
        variant = name.split("-")[0]
        params = run.data.params
        assert params["variant"] == variant and params["study"] == variant
        assert int(params["number"]) == int(name.split("-")[1])
        assert params["momentum"] == ("0.9" if variant == "sgd" else NOT_APPLICABLE)
        assert not any("hunter2" in v or "storage" in k for k, v in params.items()), "no storage URL"
        assert run.data.tags["sweep"] == spec.name
        for field in ("test_error", "train_loss", "angular_update", "weight_norm", "weight_norm_stages/stage2"):
            points = client.get_metric_history(run.info.run_id, field)
            assert [p.step for p in points] == [1, 2, 3, 4, 5], field
            assert [p.value for p in points] == pytest.approx(
                [_history_scalars(e)[field] for e in histories[name]], rel=1e-9), field


def _wandb_records(path: Path) -> list:
    """The protobuf records of a W&B run file (.wandb): LevelDB's log format, 32 KiB blocks of 7-byte-headed chunks,
    after W&B's 7-byte file header."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", "a W&B run file"
    block, position, records, pending = 32768, 7, [], b""
    while position + 7 <= len(data):
        left = block - position % block
        _crc, length, kind = struct.unpack("<IHB", data[position:position + 7])
        if left < 7 or (length == 0 and kind == 0):  # the rest of a block is padding
            position += left
            continue
        chunk, position = data[position + 7:position + 7 + length], position + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):  # a whole record, or its last chunk
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


@pytest.mark.ray
@pytest.mark.slow
def test_wandb_offline_writes_one_run_per_trial_with_its_config_and_every_epoch(logged_sweep):
    _, _, experiment, histories = logged_sweep
    for name, folder in _trial_dirs(experiment).items():
        (run_file,) = glob.glob(str(folder / "wandb" / "offline-run-*" / "run-*.wandb"))
        records = _wandb_records(Path(run_file))
        (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
        assert run.project == "hpscape-test" and run.run_group == "logs"
        config = {item.key: json.loads(item.value_json) for item in run.config.update}
        variant = name.split("-")[0]
        assert config["variant"] == variant and config["number"] == int(name.split("-")[1])
        assert config["momentum"] == (0.9 if variant == "sgd" else NOT_APPLICABLE)
        assert b"hunter2" not in Path(run_file).read_bytes(), "no storage URL"
        rows = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
                for r in records if r.WhichOneof("record_type") == "history"]
        assert [row["epoch"] for row in rows] == [1, 2, 3, 4, 5]
        for field in ("test_error", "angular_update", "decay_share", "weight_norm_stages/stem"):
            assert [row[field] for row in rows] == pytest.approx(
                [_history_scalars(e)[field] for e in histories[name]], rel=1e-9), field


@pytest.mark.ray
@pytest.mark.slow
def test_hpscape_tensorboard_points_at_the_sweeps_runs_folder(logged_sweep):
    spec, root, experiment, _ = logged_sweep
    result = CliRunner().invoke(cli, ["tensorboard", spec.name, "--runs-dir", str(root / "runs"), "--print"])
    assert result.exit_code == 0, result.output
    assert f"--logdir {experiment}" in result.stdout and "--port 6006" in result.stdout

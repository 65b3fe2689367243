"""The sweep engine on a real local Ray, recorded in real Optuna storage (SQLite and PostgreSQL)."""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState
from waiting import wait_until

from hpscape.landscapes import SweepSpec
from hpscape.landscapes.record import Attr, make_storage, open_study
from hpscape.workers.sweep import SweepInterrupted, prepare_sweep, run_sweep, trial_config
from hpscape.workers.train import TrialConfig, train_trial

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[1]


def tiny_spec(name: str, **overrides) -> SweepSpec:
    values = dict(
        name=name, dataset="synthetic", model="shake_shake_8_2x16d", variants=["sgd", "sgdw"], epochs=1,
        batch_size=128, grid={"lr": [0.01, 0.03, 0.1], "weight_decay": [0.0, 1e-4, 1e-3]},
        resources={"cpu": 1, "gpu": 0}, max_concurrent_trials=2, metric="test_error",
    )
    values.update(overrides)
    return SweepSpec.model_validate(values)


@pytest.fixture(scope="module")
def local_ray():
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    yield ray
    ray.shutdown()


@functools.lru_cache(maxsize=None)
def _storage(storage_url: str):
    # One engine per database: polling with a new engine each time exhausts PostgreSQL's connection slots.
    return make_storage(storage_url)


def trials_of(storage_url: str, sweep: str, variant: str) -> list[optuna.trial.FrozenTrial]:
    return open_study(_storage(storage_url), sweep, variant, create=False).get_trials(deepcopy=False)


def assert_each_cell_finished_once(storage_url: str, spec: SweepSpec) -> None:
    for variant in spec.variants:
        trials = trials_of(storage_url, spec.name, variant)
        finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        cells = Counter(t.user_attrs[Attr.CELL] for t in finished)
        expected = {cell.key for cell in spec.cells(variant)}
        assert set(cells) == expected, f"{variant}: missing {expected - set(cells)}"
        assert max(cells.values()) == 1, f"{variant}: duplicated cells {[c for c, n in cells.items() if n > 1]}"
        left = [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
        assert not left, f"{variant}: trials left RUNNING/WAITING: {left}"


def test_grid_runs_every_cell_exactly_once(storage_url, tmp_path, local_ray):
    spec = tiny_spec("grid3x3")
    outcome = run_sweep(spec, storage_url=storage_url, runs_dir=tmp_path / "runs")
    assert_each_cell_finished_once(storage_url, spec)
    total = sum(len(trials_of(storage_url, spec.name, v)) for v in spec.variants)
    assert total == 18
    for variant in spec.variants:
        for t in trials_of(storage_url, spec.name, variant):
            assert t.state == TrialState.COMPLETE
            assert t.intermediate_values == {1: t.value}
            for key in (Attr.VARIANT, Attr.SEED, Attr.EPOCHS_BUDGET, Attr.EPOCHS_DONE, Attr.DIVERGED,
                        Attr.TEST_ERROR, Attr.TEST_LOSS, Attr.TRAIN_LOSS, Attr.IMAGES_PER_S, Attr.WALL_S):
                assert key in t.user_attrs, f"user attr {key} missing"
            assert t.user_attrs[Attr.EPOCHS_DONE] == 1 and t.user_attrs[Attr.VARIANT] == variant
    assert sum(v["counts"].get("COMPLETE", 0) for v in outcome.summary.values()) == 18
    # Running the finished sweep again does nothing: no cell is enqueued or trained twice.
    again = run_sweep(spec, storage_url=storage_url, runs_dir=tmp_path / "runs")
    assert again.dispatched == 0
    assert sum(len(trials_of(storage_url, spec.name, v)) for v in spec.variants) == 18


def test_relative_sqlite_path_is_the_callers_not_the_workers(tmp_path, local_ray, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Ray's workers run elsewhere; the record must land next to the caller
    spec = tiny_spec("relative", variants=["sgdw"], grid={"lr": [0.05], "weight_decay": [1e-4]})
    outcome = run_sweep(spec, storage_url="sqlite:///relative.db", runs_dir="runs")
    assert outcome.summary["sgdw"]["counts"].get("COMPLETE") == 1, outcome.summary
    assert [t.state for t in trials_of(f"sqlite:///{tmp_path / 'relative.db'}", "relative", "sgdw")] == [
        TrialState.COMPLETE
    ]


def test_diverging_learning_rate_is_flagged_not_lost(tmp_path, local_ray):
    storage_url = f"sqlite:///{tmp_path / 'div.db'}"
    spec = tiny_spec("diverge", variants=["sgd"], epochs=3, grid={"lr": [1e12], "weight_decay": [0.0]})
    run_sweep(spec, storage_url=storage_url, runs_dir=tmp_path / "runs")
    (trial,) = trials_of(storage_url, spec.name, "sgd")
    assert trial.state == TrialState.COMPLETE
    assert trial.user_attrs[Attr.DIVERGED] is True
    assert trial.value == 1.0


def test_worker_killed_mid_trial_resumes_from_its_checkpoint(tmp_path, local_ray):
    storage_url = f"sqlite:///{tmp_path / 'kill.db'}"
    spec = tiny_spec("killworker", variants=["sgdw"], epochs=12, grid={"lr": [0.05], "weight_decay": [5e-4]})
    errors = []
    runner = threading.Thread(
        target=lambda: _capture(errors, run_sweep, spec, storage_url=storage_url, runs_dir=tmp_path / "runs"))
    runner.start()
    victim = wait_until("an sgdw worker past epoch 3",
                        lambda: _running_worker(storage_url, spec.name, "sgdw", min_epochs=3),
                        120, interval=0.5)
    os.kill(victim, signal.SIGKILL)
    runner.join(timeout=300)
    assert not runner.is_alive() and not errors, errors
    (trial,) = trials_of(storage_url, spec.name, "sgdw")
    assert trial.state == TrialState.COMPLETE
    assert sorted(trial.intermediate_values) == list(range(1, 13)), "every epoch has its intermediate value"
    assert trial.user_attrs[Attr.RESUMED_FROM_EPOCH] >= 3, "the retry resumed from a checkpoint, not from scratch"
    assert not trial.user_attrs[Attr.WORKER].endswith(f":{victim}")
    # The history holds every epoch once, exactly as an uninterrupted run of the same cell (CPU: bit-identical).
    history = trial.user_attrs[Attr.HISTORY]
    assert [entry["epoch"] for entry in history] == list(range(1, 13))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the worker ran it (one core per trial): the same reduction order
    try:
        reference = train_trial(TrialConfig(**trial_config(spec, "sgdw", None, trial, data_dir=None)))
    finally:
        torch.set_num_threads(threads)
    measured = ("test_error", "test_loss", "train_loss", "train_error", "lr_t")
    assert [{k: e[k] for k in measured} for e in history] == [
        {k: getattr(m, k) for k in measured} for m in reference.history]
    assert history[-1]["test_loss"] == trial.user_attrs[Attr.TEST_LOSS]


def test_killed_driver_resumes_without_duplicates(storage_url, tmp_path):
    spec = tiny_spec("killdriver", epochs=4, max_concurrent_trials=2)
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec.model_dump(mode="json")))
    env = {**os.environ, "HPSCAPE_STORAGE": storage_url, "HPSCAPE_RUNS_DIR": str(tmp_path / "runs"),
           "RAY_ADDRESS": ""}
    cli = [sys.executable, "-m", "hpscape.service.cli"]
    driver = subprocess.Popen([*cli, "run", str(spec_file)], cwd=REPO, env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until("3 trials complete and 1 running", lambda: _count(storage_url, spec, TrialState.COMPLETE) >= 3
                   and _count(storage_url, spec, TrialState.RUNNING) >= 1, 240, interval=0.5)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    _kill_leftover_ray(driver.pid)
    assert _count(storage_url, spec, TrialState.RUNNING) >= 1, "the kill should leave trials RUNNING"

    refused = subprocess.run([*cli, "run", str(spec_file)], cwd=REPO, env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "--resume killdriver" in refused.stderr, refused.stderr

    resumed = subprocess.run([*cli, "run", "--resume", spec.name], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert_each_cell_finished_once(storage_url, spec)
    # The run ends with how coupled each landscape is, as the record says (one seed: the verdict may well be
    # "inconclusive", and then the table says why), and where the figure was written.
    from hpscape.landscapes import build_sweep_landscapes, coupling_metrics

    expected = {v: coupling_metrics(land) for v, land in
                build_sweep_landscapes(storage_url, spec.name, metric=spec.metric, spec=spec).items()}
    verdicts = {cells[0]: cells[2] for cells in _table_rows(resumed.stdout)
                if len(cells) == 7 and cells[2] in ("coupled", "separable", "inconclusive")}
    assert verdicts == {v: m.verdict for v, m in expected.items()} and set(verdicts) == set(spec.variants), (
        verdicts, resumed.stdout)
    for variant, metrics in expected.items():
        if metrics.verdict == "inconclusive":
            assert re.search(rf"^\s*{variant}: (no interval|the interval is too wide)", resumed.stdout, re.M), (
                f"the table says why {variant} is inconclusive", resumed.stdout)
    dashboard = tmp_path / "runs" / "killdriver-landscape.html"
    assert f"dashboard: {dashboard}" in resumed.stdout, resumed.stdout
    html = dashboard.read_text(encoding="utf-8")
    assert "Plotly.newPlot" in html and "killdriver" in html


@pytest.mark.parametrize("sampler", ["tpe", "gp"])
def test_bayesian_sweep_runs_to_its_trial_count(sampler, tmp_path, local_ray):
    storage_url = f"sqlite:///{tmp_path / 'bayes.db'}"
    spec = tiny_spec(f"bayes-{sampler}", variants=["adamw"], epochs=3, grid=None,
                     bayes={"sampler": sampler, "n_trials": 6, "lr": [1e-4, 1e-1], "weight_decay": [1e-5, 1e-1],
                            "pruning": "asha" if sampler == "tpe" else "none"})
    run_sweep(spec, storage_url=storage_url, runs_dir=tmp_path / "runs")
    trials = trials_of(storage_url, spec.name, "adamw")
    assert len(trials) == 6
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials), [t.state for t in trials]
    for t in trials:
        assert 1e-4 <= t.params["lr"] <= 1e-1 and 1e-5 <= t.params["weight_decay"] <= 1e-1
        assert t.user_attrs[Attr.EPOCHS_DONE] == max(t.intermediate_values), "budget reached is recorded"
        if t.state == TrialState.PRUNED:
            assert t.user_attrs[Attr.STOPPED_EARLY] is True and t.user_attrs[Attr.EPOCHS_DONE] < 3


def test_interrupted_sweep_refuses_to_start_without_resume(tmp_path):
    storage_url = f"sqlite:///{tmp_path / 'orphan.db'}"
    spec = tiny_spec("orphan", variants=["sgd"])
    studies = prepare_sweep(spec, storage_url)
    from hpscape.landscapes.record import claim_next

    assert claim_next(studies["sgd"]) is not None  # a driver claimed a cell, then died
    with pytest.raises(SweepInterrupted, match="--resume orphan"):
        run_sweep(spec, storage_url=storage_url, runs_dir=tmp_path / "runs")


# --- helpers --------------------------------------------------------------------------------------------------------
def _capture(errors, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - reported by the test
        errors.append(exc)



def _running_worker(storage_url, sweep, variant, *, min_epochs):
    try:
        trials = trials_of(storage_url, sweep, variant)
    except KeyError:
        return None
    for t in trials:
        if t.state == TrialState.RUNNING and t.user_attrs.get(Attr.EPOCHS_DONE, 0) >= min_epochs:
            return int(t.user_attrs[Attr.WORKER].rsplit(":", 1)[1])
    return None


def _count(storage_url, spec, state) -> int:
    total = 0
    for variant in spec.variants:
        try:
            total += sum(t.state == state for t in trials_of(storage_url, spec.name, variant))
        except KeyError:
            pass
    return total


def _table_rows(text: str) -> list[list[str]]:
    """The cells of each row line of the rich tables in `text` (a row's wrapped continuation lines included)."""
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in text.splitlines()
            if line.startswith("│") and line.rstrip().endswith("│")]


def _kill_leftover_ray(session_id: int) -> None:
    """Ray processes the killed driver started in its session; a real crash takes them down with the machine."""
    out = subprocess.run(["ps", "-eo", "pid=,sid="], capture_output=True, text=True).stdout
    for line in out.splitlines():
        pid, sid = (int(x) for x in line.split())
        if sid == session_id:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_reusing_a_sweep_name_for_another_spec_is_refused(tmp_path):
    from hpscape.workers.sweep import SpecMismatch

    storage_url = f"sqlite:///{tmp_path / 'names.db'}"
    prepare_sweep(tiny_spec("samename", variants=["sgd"]), storage_url)
    prepare_sweep(tiny_spec("samename", variants=["sgd"]), storage_url)  # the same spec again is fine
    with pytest.raises(SpecMismatch, match="differs in: epochs"):
        prepare_sweep(tiny_spec("samename", variants=["sgd"], epochs=7), storage_url)
    studies = prepare_sweep(tiny_spec("samename", variants=["sgd"]), storage_url)
    assert len(studies["sgd"].get_trials(deepcopy=False)) == 9, "the refused spec enqueued nothing"


# --- checkpoints belong to one record ---------------------------------------------------------------------------------
def test_a_fresh_record_never_resumes_another_records_checkpoints(tmp_path, local_ray):
    from hpscape.workers.sweep import RECORD_ID_ATTR
    from hpscape.workers.sweep.trainable import checkpoint_dir_for

    spec = tiny_spec("again", variants=["sgd"], epochs=2, grid={"lr": [0.01, 0.1], "weight_decay": [0.0]})
    runs = tmp_path / "runs"
    first, second = f"sqlite:///{tmp_path / 'first.db'}", f"sqlite:///{tmp_path / 'second.db'}"
    run_sweep(spec, storage_url=first, runs_dir=runs)
    # The user deleted the database to start over, and kept the runs folder (its finished checkpoints).
    outcome = run_sweep(spec, storage_url=second, runs_dir=runs)
    assert outcome.summary["sgd"]["counts"]["COMPLETE"] == 2, outcome.summary
    assert_each_cell_finished_once(first, spec)
    assert_each_cell_finished_once(second, spec)
    ids = []
    for url in (first, second):
        study = open_study(_storage(url), spec.name, "sgd", create=False)
        ids.append(study.user_attrs[RECORD_ID_ATTR])
        for t in study.get_trials(deepcopy=False):
            assert t.user_attrs[Attr.RESUMED_FROM_EPOCH] == 0, "trained from scratch, not from the other record"
            assert sorted(t.intermediate_values) == [1, 2]
            assert (checkpoint_dir_for(runs, spec.name, "sgd", t.number, ids[-1]) / "checkpoint.pt").exists()
    assert ids[0] != ids[1] and all(ids), ids
    assert sorted(p.name for p in (runs / spec.name / "checkpoints").iterdir()) == sorted(ids)


def test_a_record_from_before_identities_keeps_its_checkpoint_paths(tmp_path):
    from hpscape.workers.sweep import RECORD_ID_ATTR, record_id
    from hpscape.workers.sweep.trainable import checkpoint_dir_for

    storage_url = f"sqlite:///{tmp_path / 'old.db'}"
    spec = tiny_spec("old", variants=["sgd", "sgdw"])
    studies = prepare_sweep(spec, storage_url)
    assert record_id(studies).startswith("rec-")
    assert {s.user_attrs[RECORD_ID_ATTR] for s in studies.values()} == {record_id(studies)}, "one id per record"
    assert record_id(prepare_sweep(spec, storage_url)) == record_id(studies), "stable across runs"
    for study in studies.values():  # as hpscape 0.2 left it: a spec recorded, no identity
        study.set_user_attr(RECORD_ID_ATTR, None)
    assert record_id(prepare_sweep(spec, storage_url)) is None, "its running trials resume where they checkpointed"
    assert checkpoint_dir_for("runs", "old", "sgd", 3, None) == Path("runs/old/checkpoints/sgd/trial-00003")


# --- resources --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("resources,field,message", [
    ({"cpu": 3, "gpu": 0}, "cpu", r"each trial asks for 3 CPU\(s\), but no node of the running Ray has that many "
                                  r"\(the most any node has is 2\)"),
    ({"cpu": 1, "gpu": 1}, "gpu", r"each trial asks for 1 GPU\(s\), but no node of the running Ray has that many "
                                  r"\(it has no GPU\)"),
])
def test_trials_no_node_can_hold_are_refused_before_anything_is_recorded(tmp_path, local_ray, resources, field,
                                                                         message):
    from hpscape.workers.sweep import UnplaceableTrials

    if field == "gpu" and local_ray.cluster_resources().get("GPU"):
        pytest.fail("this test needs a Ray without GPUs; the module's local Ray found some")
    db = tmp_path / "refused.db"
    spec = tiny_spec("toobig", variants=["sgd"], resources=resources)
    with pytest.raises(UnplaceableTrials, match=rf"sweep 'toobig' cannot run: resources\.{field}: {message}"):
        run_sweep(spec, storage_url=f"sqlite:///{db}", runs_dir=tmp_path / "runs")
    assert not db.exists(), "refused before the record was created: the user may fix the spec and rerun the name"


def test_a_sweep_that_cannot_start_any_trial_fails_naming_the_resource(tmp_path, local_ray):
    import time

    from ray.util.placement_group import placement_group, remove_placement_group

    from hpscape.workers.sweep import TrialsStalled

    storage_url = f"sqlite:///{tmp_path / 'stalled.db'}"
    spec = tiny_spec("stalled", variants=["sgd"], grid={"lr": [0.1, 0.01], "weight_decay": [0.0]})
    hog = placement_group([{"CPU": 2}])  # another job holds every CPU of the cluster
    local_ray.get(hog.ready(), timeout=60)
    started = time.monotonic()
    try:
        with pytest.raises(TrialsStalled, match=r"^resources\.cpu: no trial of sweep 'stalled' could start for \d+ s "
                                                r"\(pending_timeout_s 3\): each trial needs 1 CPU\(s\) on one node "
                                                r"and they are held by other work; the local Ray has 2 CPU.*; "
                                                r"waiting: stalled/sgd #\d, stalled/sgd #\d$"):
            run_sweep(spec, storage_url=storage_url, runs_dir=tmp_path / "runs", pending_timeout_s=3)
        waited = time.monotonic() - started
    finally:
        remove_placement_group(hog)
    assert 3 <= waited < 60, waited
    trials = trials_of(storage_url, spec.name, "sgd")
    assert not [t.number for t in trials if t.state == TrialState.RUNNING], "nothing is left RUNNING"
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert failed and all(t.user_attrs[Attr.ERROR].startswith("resources.cpu: no trial") for t in failed)
    assert {t.state for t in trials} <= {TrialState.FAIL, TrialState.WAITING}, "the rest were never claimed"


# --- progress in a log file -------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_run_into_a_file_prints_progress_lines_while_it_runs(tmp_path):
    spec = tiny_spec("logged", variants=["sgdw"], epochs=2, max_concurrent_trials=1,
                     grid={"lr": [0.01, 0.03, 0.1], "weight_decay": [0.0, 1e-3]})
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec.model_dump(mode="json")))
    log = tmp_path / "log.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "HPSCAPE_"))}
    with log.open("w") as out:  # a file, not a terminal: what `hpscape run ... > log` gives
        done = subprocess.run([sys.executable, "-m", "hpscape.service.cli", "run", str(spec_file), "--storage",
                               f"sqlite:///{tmp_path / 'r.db'}", "--runs-dir", str(tmp_path / "runs"),
                               "--log-every", "0.5"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                              timeout=400)
    text = log.read_text()
    assert done.returncode == 0, text
    line = re.compile(r"^logged: (\d)/6 trials finished \((\d) failed, (\d) running\), ([\d,]+) s(, ETA ([\d,]+) s)?"
                      r"(; best test_error \d+\.\d\d % \(sgdw\))?$")
    progress = [m for m in map(line.match, text.splitlines()) if m]
    assert progress, text
    final = progress[-1]
    assert final.group(1, 2, 3) == ("6", "0", "0") and final.group(5) is None, text
    during = progress[:-1]
    # Lines while trials ran, not only the last one: some trial running, some finished with more to go (an ETA).
    assert len(during) >= 3, text
    assert any(int(m.group(3)) >= 1 for m in during), text
    assert any(m.group(5) is not None and 0 < int(m.group(1)) < 6 for m in during), text
    elapsed = [int(m.group(4).replace(",", "")) for m in progress]
    assert elapsed == sorted(elapsed), f"elapsed time goes forward: {elapsed}"
    assert text.index(during[0].group(0)) < text.index("logged: 6/6 trials"), "printed before the end"
    assert "\x1b[" not in text, "no terminal escapes in a file"

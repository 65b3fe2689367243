"""Resources: trials no node can hold are refused before a sweep starts (HTTP 422 at submit, exit 2 from
`hpscape run`), and a trial's CPU share has a floor. The machine's own CPUs and GPUs are the local Ray's nodes;
a cluster's are probed in tests/test_cluster.py, and trials that wait forever in tests/test_sweep.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpscape.landscapes import SweepSpec
from hpscape.workers.sweep.placement import ClusterNodes, Node, this_machine, unplaceable

REPO = Path(__file__).resolve().parents[1]
SWEEPS = "/api/v1/sweeps"
TINY = {"name": "fits", "dataset": "synthetic", "model": "shake_shake_8_2x16d", "variants": ["sgd"], "epochs": 1,
        "batch_size": 32, "grid": {"lr": [0.01, 0.1], "weight_decay": [0.0]}, "resources": {"cpu": 1, "gpu": 0}}
MACHINE = this_machine().nodes[0]


def too_many(field: str) -> dict[str, float]:
    """Resources one more than this machine has of `field` (so the test holds on a GPU machine too)."""
    return {"cpu": MACHINE.cpu + 1, "gpu": 0} if field == "cpu" else {"cpu": 1, "gpu": MACHINE.gpu + 1}


def test_this_machine_is_what_a_local_ray_would_see():
    # What ray.init() would give its node, from Ray's own detection (private helpers: if they move, this test says
    # so; the controller does not import Ray to answer a submission).
    from ray._private.accelerators import get_accelerator_manager_for_resource
    from ray._private.utils import get_num_cpus

    gpus = get_accelerator_manager_for_resource("GPU").get_current_node_num_accelerators()
    assert (MACHINE.cpu, MACHINE.gpu) == (float(get_num_cpus()), float(gpus))


def test_a_trial_must_fit_one_node_whole():
    cluster = ClusterNodes((Node(8, 0), Node(2, 1)), "a cluster")
    assert unplaceable(2, 1, cluster) == [] and unplaceable(8, 0, cluster) == []
    (problem,) = unplaceable(4, 1, cluster)  # CPUs on one node, the GPU on the other: never together
    assert problem[0] == "gpu" and "no node of a cluster has both 4 CPU(s) and 1 GPU(s)" in problem[1]
    assert [p[0] for p in unplaceable(9, 2, cluster)] == ["gpu", "cpu"]
    assert unplaceable(1, 0, ClusterNodes((), "an empty cluster")) == [
        ("cpu", "an empty cluster has no alive node to run a trial on")]


@pytest.mark.parametrize("field", ["cpu", "gpu"])
def test_the_controller_refuses_trials_its_local_ray_cannot_hold(api, field):
    before = api.client.get(SWEEPS, headers=api.auth("root")).json()["total"]
    response = api.client.post(SWEEPS, json={**TINY, "resources": too_many(field)}, headers=api.auth("alice"))
    assert response.status_code == 422, response.text
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["body", "resources", field], problem
    assert "this machine (a local Ray)" in problem["msg"] and problem["type"] == "resources_unavailable", problem
    assert api.client.get(SWEEPS, headers=api.auth("root")).json()["total"] == before, "nothing was queued"
    accepted = api.client.post(SWEEPS, json=TINY, headers=api.auth("alice"))
    assert accepted.status_code == 202, accepted.text


def test_a_trial_gets_at_least_a_twentieth_of_a_cpu(api):
    response = api.client.post(SWEEPS, json={**TINY, "resources": {"cpu": 1e-300}}, headers=api.auth("alice"))
    assert response.status_code == 422, response.text
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["body", "resources", "cpu"], problem
    assert problem["msg"].startswith("must be at least 0.05 CPUs per trial, got 1e-300"), problem
    with pytest.raises(ValueError, match=r"resources\.cpu\n  must be at least 0\.05 CPUs per trial, got 0\.01"):
        SweepSpec.model_validate({**TINY, "resources": {"cpu": 0.01}})
    assert SweepSpec.model_validate({**TINY, "resources": {"cpu": 0.05}}).resources.cpu == 0.05


@pytest.mark.parametrize("field", ["cpu", "gpu"])
def test_hpscape_run_refuses_trials_this_machine_cannot_hold(tmp_path, field):
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({**TINY, "resources": too_many(field)}))
    db = tmp_path / "record.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "HPSCAPE_"))}
    env.update(HPSCAPE_STORAGE=f"sqlite:///{db}", HPSCAPE_RUNS_DIR=str(tmp_path / "runs"))
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "hpscape.service.cli", "run", str(spec_file)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    took = time.monotonic() - started
    assert result.returncode == 2, (
        f"`hpscape run` should exit 2 naming resources.{field}; it exited {result.returncode} (service/cli/run.py "
        f"must catch hpscape.workers.sweep.UnplaceableTrials like SpecMismatch):\n{result.stderr[-3000:]}")
    assert f"resources.{field}:" in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not db.exists(), "refused before anything was recorded"
    assert took < 60, f"refused without starting Ray, yet it took {took:.0f} s"


@pytest.mark.parametrize("raw,says", [("soon", "Input should be a valid number"),
                                      ("0", "Input should be greater than 0"),
                                      ("nan", "Input should be greater than 0")])
def test_hpscape_run_refuses_a_pending_timeout_that_is_not_a_positive_number(tmp_path, raw, says):
    from typer.testing import CliRunner

    from hpscape.service.cli import app

    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(TINY))
    result = CliRunner().invoke(app, ["run", str(spec_file), "--storage", f"sqlite:///{tmp_path / 'r.db'}",
                                      "--runs-dir", str(tmp_path / "runs")], env={"HPSCAPE_PENDING_TIMEOUT_S": raw})
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert f"a setting in the environment is invalid: HPSCAPE_PENDING_TIMEOUT_S: {says}" in text, text
    assert "Traceback" not in text, text
    assert not (tmp_path / "runs").exists() and not (tmp_path / "r.db").exists(), "refused before anything started"

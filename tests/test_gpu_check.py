"""bench/gpu_check: stops at once without a GPU, and every phase of it runs (on a CPU, with a tiny model)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has nvidia-smi: the check would run")
def test_without_a_gpu_it_stops_at_once() -> None:
    started = time.monotonic()
    done = subprocess.run([str(REPO / "bench" / "gpu_check.sh")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3 and time.monotonic() - started < 5
    assert "no NVIDIA GPU here" in done.stderr and "--cpu-smoke" in done.stderr
    # The Python half says the same when torch sees no GPU (a CPU wheel, as here).
    done = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 3 and "CPU build" in done.stderr


@pytest.mark.slow
@pytest.mark.ray
def test_every_phase_runs_on_a_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    done = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--cpu-smoke", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.with_suffix(".json").read_text())
    assert results["throughput"]["eager fp32"]["images_per_s"] > 0
    assert {row["trials"] for row in results["sharing"].values()} == {1, 2}
    assert all(len(row["per_trial"]) == row["trials"] for row in results["sharing"].values())
    agreement = results["agreement"]
    assert [e["epoch"] for e in agreement["runs"]["bf16"]] == [1, 2] and agreement["within"] is True
    table = out.with_suffix(".md").read_text()
    assert "| one trial, eager fp32 |" in table
    assert "| 2 trial(s) sharing the machine (1 CPU each, smoke run) |" in table
    assert "largest training-loss difference" in table and "Total wall time" in table

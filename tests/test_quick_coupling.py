"""The product's claim on a CPU: the quick preset's own landscapes show Figure 2's coupling.

Runs the preset's SGD and SGDW panels with one of its two seeds (24 trials, about 3 minutes on 2 cores) through the
same sweep engine as `hpscape run --preset quick`, then checks the ridge slopes against the acceptance bands:
SGD+L2's best decay falls as the learning rate rises (slope <= -0.6, diagonal), SGDW's stays put (|slope| <= 0.3,
upright). The intervals (both seeds), the AdamW panel and the spread over replicas of the whole preset are measured
by bench/quick_coupling.py (docs/benchmarks.md).
"""

from __future__ import annotations

import pytest

from hpscape.landscapes import build_sweep_landscapes, coupling_metrics, get_preset
from hpscape.workers.sweep import run_sweep

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def test_quick_preset_shows_sgd_coupled_and_sgdw_upright(tmp_path):
    import ray

    spec = get_preset("quick", name="quick-sgd-sgdw", variants=["sgd", "sgdw"], seeds=[0])
    storage = f"sqlite:///{tmp_path / 'quick.db'}"
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    try:
        outcome = run_sweep(spec, storage_url=storage, runs_dir=tmp_path / "runs")
    finally:
        ray.shutdown()
    planned = {v: spec.study_trials(v) for v in spec.variants}
    assert {v: s["counts"].get("COMPLETE", 0) for v, s in outcome.summary.items()} == planned, outcome.summary

    landscapes = build_sweep_landscapes(storage, spec.name, metric=spec.metric, spec=spec)
    metrics = {variant: coupling_metrics(landscape) for variant, landscape in landscapes.items()}
    report = {v: (m.ridge_slope, m.ridge_slope_ci, m.ridge_points, m.notes) for v, m in metrics.items()}
    assert metrics["sgd"].ridge_rows == 3 and metrics["sgdw"].ridge_rows == 3, "every row's optimum inside the grid"
    assert metrics["sgd"].ridge_slope is not None and metrics["sgd"].ridge_slope <= -0.6, report
    assert metrics["sgdw"].ridge_slope is not None and abs(metrics["sgdw"].ridge_slope) <= 0.3, report

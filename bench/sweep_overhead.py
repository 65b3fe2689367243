"""Overhead of the sweep engine: the same quick-preset trials through Ray Tune + Optuna and in a plain loop.

    python bench/sweep_overhead.py                  # one lr row of the quick grid, sgd and sgdw
    python bench/sweep_overhead.py --lr-rows 2 --epochs 5

Both paths run the same `train_trial` with the same CPU share per trial and the same concurrency
(`max_concurrent_trials` processes with `resources.cpu` threads each). The plain loop is a process pool with no
checkpoints and no record; the engine checkpoints every epoch and writes every epoch to a SQLite study. Ray's start-up
is timed separately (a long-lived cluster pays it once, not per sweep).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from hpscape.landscapes import get_preset  # noqa: E402


def _train_plain(args: tuple[dict, int]) -> float:
    config, threads = args
    import torch

    from hpscape.workers.train import TrialConfig, train_trial

    torch.set_num_threads(threads)
    return train_trial(TrialConfig(**config)).wall_s


def _configs(spec) -> list[dict]:
    from hpscape.workers.sweep.engine import trial_config

    class _Frozen:  # what trial_config reads from an Optuna trial
        def __init__(self, cell):
            self.params = cell.params
            self.user_attrs = {"seed": cell.seed}

    return [trial_config(spec, v, None, _Frozen(c), data_dir=None) for v in spec.variants for c in spec.cells(v)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lr-rows", type=int, default=1, help="learning-rate rows of the quick grid to run")
    parser.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    args = parser.parse_args()

    import ray

    from hpscape.workers.sweep import run_sweep

    quick = get_preset("quick")
    variants = quick.variants[:2]  # the SGD pair
    # The first --lr-rows rows of the quick grid, every weight decay column, for two variants.
    grid = {"lr": {v: quick.axis_values("lr", v)[: args.lr_rows] for v in variants},
            "weight_decay": quick.axis_values("weight_decay", variants[0])}
    spec = quick.replace(name=f"overhead-{int(time.time())}", variants=variants, grid=grid,
                         **({"epochs": args.epochs} if args.epochs else {}))
    configs = _configs(spec)
    threads = max(1, int(spec.resources.cpu))
    console = Console()
    console.print(f"{len(configs)} trials ({spec.model} on {spec.dataset}, {spec.epochs} epochs), "
                  f"{spec.max_concurrent_trials} at a time, {threads} thread(s) each")

    started = time.perf_counter()
    with mp.get_context("spawn").Pool(spec.max_concurrent_trials) as pool:
        pool.map(_train_plain, [(c, threads) for c in configs], chunksize=1)
    plain_s = time.perf_counter() - started

    ray_started = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1", logging_level="ERROR")
    ray_init_s = time.perf_counter() - ray_started
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        outcome = run_sweep(spec, storage_url=f"sqlite:///{tmp}/bench.db", runs_dir=Path(tmp) / "runs")
        engine_s = time.perf_counter() - started
    ray.shutdown()
    done = sum(v["counts"].get("COMPLETE", 0) for v in outcome.summary.values())
    assert done == len(configs), f"engine finished {done} of {len(configs)} trials"

    table = Table(title="sweep engine overhead (same trials, same cores)")
    for column in ("path", "wall s", "× plain loop"):
        table.add_column(column, justify="right")
    table.add_row("plain process pool", f"{plain_s:.1f}", "1.00")
    table.add_row("engine (Ray Tune + Optuna, ckpt/epoch)", f"{engine_s:.1f}", f"{engine_s / plain_s:.2f}")
    table.add_row("engine + Ray start-up", f"{engine_s + ray_init_s:.1f}", f"{(engine_s + ray_init_s) / plain_s:.2f}")
    console.print(table)


if __name__ == "__main__":
    main()

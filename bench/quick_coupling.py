"""Does the quick preset show Figure 2's coupling, and how stable is that over replicas of the whole preset?

    python bench/quick_coupling.py                       # 3 replicas of the whole quick preset (about 30 minutes)
    python bench/quick_coupling.py --replicas 1 --storage sqlite:///.hpscape/demo.db   # reuse what is recorded

Replica k runs the preset with every seed shifted by k * len(seeds) (replica 0 is the preset itself, so `make
demo`'s record is reused when it shares the storage), through the same sweep engine as `hpscape run`, and prints
each landscape's ridge slope with its 95 % interval and verdict per replica, against the acceptance bands:
sgd's slope <= -0.6 with the interval's upper end <= -0.3 (coupled); sgdw's and adamw's |slope| <= 0.3 with 0
inside the interval (upright).
"""

from __future__ import annotations

import argparse
import statistics
import time

from rich.console import Console
from rich.table import Table

from hpscape.dashboards import slope_text
from hpscape.landscapes import (
    VARIANTS,
    CouplingMetrics,
    build_sweep_landscapes,
    coupling_metrics,
    ensure_sqlite_dir,
    get_preset,
    landscape_pairs,
)

# The acceptance bands, on the preset's own output: the L2 SGD landscape tilts, the decoupled ones (SGDW and the
# paper's AdamW) stand upright.
_QUICK = get_preset("quick").variants
COUPLED = (landscape_pairs(_QUICK)[0][0],)
UPRIGHT = tuple(v for v in _QUICK if VARIANTS[v].decoupled)


def in_band(key: str, metrics: CouplingMetrics) -> bool | None:
    """Whether a landscape meets its acceptance band (None: the preset has no band for it)."""
    slope, ci = metrics.ridge_slope, metrics.ridge_slope_ci
    if slope is None or ci is None:
        return False if key in (*COUPLED, *UPRIGHT) else None
    if key in COUPLED:
        return slope <= -0.6 and ci[1] <= -0.3
    if key in UPRIGHT:
        return abs(slope) <= 0.3 and ci[0] <= 0 <= ci[1]
    return None


def replica_spec(k: int):
    preset = get_preset("quick")
    seeds = [s + k * len(preset.seeds) for s in preset.seeds]
    name = "quick" if k == 0 else f"quick-r{k}"
    return preset.replace(name=name, seeds=seeds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=3, help="whole-preset replicas (seed shifts)")
    parser.add_argument("--storage", default="sqlite:///.hpscape/quick-coupling.db", help="Optuna storage URL")
    parser.add_argument("--runs-dir", default=".hpscape/runs", help="checkpoints and Ray state")
    args = parser.parse_args()
    if args.replicas < 1:
        parser.error("--replicas must be >= 1")

    import optuna

    from hpscape.workers.sweep import run_sweep

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ensure_sqlite_dir(args.storage)
    console = Console()
    results: dict[str, list[CouplingMetrics]] = {}
    walls: list[float] = []
    for k in range(args.replicas):
        spec = replica_spec(k)
        console.print(f"replica {k}: sweep {spec.name}, seeds {spec.seeds}, {spec.total_trials()} trials")
        started = time.perf_counter()
        # resume: a rerun after an interrupted bench continues its trials instead of refusing
        run_sweep(spec, storage_url=args.storage, runs_dir=args.runs_dir, resume=True)
        walls.append(time.perf_counter() - started)
        for key, landscape in build_sweep_landscapes(args.storage, spec.name, metric=spec.metric, spec=spec).items():
            results.setdefault(key, []).append(coupling_metrics(landscape))

    table = Table(title=f"quick preset: ridge slope [95 % interval] of {get_preset('quick').metric}, "
                        f"{args.replicas} replica(s)")
    table.add_column("landscape")
    for k in range(args.replicas):
        table.add_column(f"r{k}", justify="right")
    for column in ("mean", "spread", "in band"):
        table.add_column(column, justify="right")
    for key, replicas in results.items():
        slopes = [m.ridge_slope for m in replicas if m.ridge_slope is not None]
        verdicts = [in_band(key, m) for m in replicas]
        table.add_row(
            key,
            *[f"{slope_text(m)} {m.verdict}" for m in replicas],
            f"{statistics.fmean(slopes):+.2f}" if slopes else "-",
            f"{max(slopes) - min(slopes):.2f}" if len(slopes) > 1 else "-",
            "-" if verdicts[0] is None else f"{sum(bool(v) for v in verdicts)}/{len(verdicts)}",
        )
    console.print(table)
    console.print("wall per replica: " + ", ".join(f"{w:.0f} s" for w in walls))


if __name__ == "__main__":
    main()

"""Does the quick preset show Figure 2's coupling, and how stable is that over seeds of the whole preset?

    python bench/quick_coupling.py                       # 3 replicas of the whole quick preset (about 30 minutes)
    python bench/quick_coupling.py --replicas 1 --storage sqlite:///.hpscape/demo.db   # reuse what is recorded

Replica k runs the preset with every seed shifted by k * len(seeds) (so replica 0 is the preset itself, and
`make demo`'s record is reused when it shares the storage), through the same sweep engine as `hpscape run`,
and prints the ridge slope per variant and replica, their mean and spread (max - min), next to the
acceptance bands of PROTOCOL section 5: sgd <= -0.5 (coupled), sgdw within [-0.35, 0.35] (upright).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from hpscape.landscapes import (  # noqa: E402
    build_sweep_landscapes,
    coupling_metrics,
    ensure_sqlite_dir,
    get_preset,
    landscape_pairs,
)

# What the issue asks of the preset's own output; the other variants are reported, not judged.
# The bands are for the SGD pair: the L2 variant coupled, its decoupled twin upright.
_SGD_L2, _SGD_W = landscape_pairs(get_preset("quick").variants)[0]
BANDS = {_SGD_L2: (None, -0.5), _SGD_W: (-0.35, 0.35)}


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
    slopes: dict[str, list[float | None]] = {}
    walls: list[float] = []
    for k in range(args.replicas):
        spec = replica_spec(k)
        console.print(f"replica {k}: sweep {spec.name}, seeds {spec.seeds}, {spec.total_trials()} trials")
        started = time.perf_counter()
        # resume: a rerun after an interrupted bench continues its trials instead of refusing
        run_sweep(spec, storage_url=args.storage, runs_dir=args.runs_dir, resume=True)
        walls.append(time.perf_counter() - started)
        landscapes = build_sweep_landscapes(args.storage, spec.name, metric=spec.metric)
        for variant, landscape in landscapes.items():
            slopes.setdefault(variant, []).append(coupling_metrics(landscape).ridge_slope)

    table = Table(title=f"quick preset: ridge slope of {get_preset('quick').metric} over {args.replicas} replica(s)")
    table.add_column("variant")
    for k in range(args.replicas):
        table.add_column(f"r{k}", justify="right")
    for column in ("mean", "spread", "band", "in band"):
        table.add_column(column, justify="right")
    for variant, values in slopes.items():
        measured = [v for v in values if v is not None]
        lo, hi = BANDS.get(variant, (None, None))
        band = "-" if variant not in BANDS else (f"<= {hi}" if lo is None else f"{lo}..{hi}")
        inside = [(lo is None or v >= lo) and v <= hi for v in measured] if variant in BANDS else []
        table.add_row(
            variant,
            *["-" if v is None else f"{v:+.2f}" for v in values],
            f"{statistics.fmean(measured):+.2f}" if measured else "-",
            f"{max(measured) - min(measured):.2f}" if len(measured) > 1 else "-",
            band,
            f"{sum(inside)}/{len(values)}" if variant in BANDS else "-",
        )
    console.print(table)
    console.print("wall per replica: " + ", ".join(f"{w:.0f} s" for w in walls))


if __name__ == "__main__":
    main()

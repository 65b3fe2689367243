"""`hpscape run ... --plan`: what a sweep would train, and for how long, without training anything."""

from __future__ import annotations

from rich.table import Table

from hpscape.landscapes import SweepPlan
from hpscape.service.cli._common import console


def _images(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:,.2f} {unit}"
    return f"{n:,.0f}"


def _hours(hours: float) -> str:
    return f"{hours * 60:,.0f} min" if hours < 1 else f"{hours:,.1f} h"


def plan_summary(plan: SweepPlan) -> str:
    """'484 trials, 48,400 epochs, 2.42 G training images' and, when a throughput is known, the hours."""
    spec = plan.spec
    line = (f"{plan.spec.name}: {plan.trials:,} trials, {plan.epochs:,} epochs, {_images(plan.train_images)} "
            f"training images ({spec.model} on {spec.dataset}, batch {spec.batch_size}, {spec.precision}"
            f"{', compiled' if spec.compile else ''})")
    if plan.throughput is None or plan.trial_hours is None:
        return line
    speed = plan.throughput.images_per_s
    line += (f"\nestimated {_hours(plan.trial_hours)} of trial time at {speed:,.0f} images/s per trial "
             f"({plan.throughput.source})")
    if plan.gpu_hours is not None:
        line += f"; {plan.gpu_hours:,.1f} GPU-hours at {spec.resources.gpu:g} GPU per trial"
    if plan.wall_hours is not None:
        concurrent = min(spec.max_concurrent_trials, plan.trials)
        line += f"; at least {_hours(plan.wall_hours)} wall-clock with {concurrent} trial(s) at once"
    return line


def print_plan(plan: SweepPlan) -> None:
    table = Table(title=f"plan of sweep {plan.spec.name}")
    for column, justify in (("study", "left"), ("trials", "right"), ("epochs", "right"),
                            ("training images", "right")):
        table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for row in plan.rows:
        table.add_row(row.study, f"{row.trials:,}", f"{row.epochs:,}", _images(row.train_images))
    table.add_row("total", f"{plan.trials:,}", f"{plan.epochs:,}", _images(plan.train_images), style="bold")
    console.print(table)
    console.print(plan_summary(plan), highlight=False, soft_wrap=True)
    for note in plan.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)

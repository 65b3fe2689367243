"""Run a landscape sweep on Ray (a preset, a YAML/JSON spec, or --resume NAME) and print a per-variant table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.live import Live
from rich.table import Table

from hpscape.service.cli._common import cell_text, console, err_console, fail_usage

_STATE_COLUMNS = {"RUNNING": "running", "FAIL": "failed"}
_BAR = 12


def run(
    spec_file: Annotated[Path | None, typer.Argument(help="Sweep spec (.yaml, .yml or .json).",
                                                     show_default=False)] = None,
    preset: Annotated[str | None, typer.Option(help="Run a built-in preset: quick (CPU, minutes) "
                                                    "or fig2 (GPU).")] = None,
    resume: Annotated[str | None, typer.Option(help="Continue the sweep of this name after a crash.")] = None,
    name: Annotated[str | None, typer.Option(help="Override the sweep name (e.g. to run a preset twice).")] = None,
    storage: Annotated[str | None, typer.Option(help="Optuna storage URL (default HPSCAPE_STORAGE).")] = None,
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster address "
                                                         "(default HPSCAPE_RAY_ADDRESS; local).")] = None,
    runs_dir: Annotated[Path | None, typer.Option(help="Checkpoints and Ray state (default HPSCAPE_RUNS_DIR).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Dataset directory (default HPSCAPE_DATA_DIR).")] = None,
    dashboard: Annotated[Path | None, typer.Option(help="Write the landscape figure here as one offline HTML file "
                                                   "(default RUNS_DIR/NAME-landscape.html).")] = None,
) -> None:
    """Run a landscape sweep on Ray (a preset, a YAML/JSON spec, or --resume NAME) and print a per-variant table."""
    import optuna

    from hpscape.landscapes import ensure_sqlite_dir, format_validation_error, get_preset, load_spec
    from hpscape.service.settings import load_settings

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings = load_settings()
    storage = storage or settings.storage
    chosen = [x for x in (spec_file, preset, resume) if x is not None]
    if len(chosen) != 1:
        fail_usage("give exactly one of: a spec file, --preset NAME, or --resume NAME "
                   "(e.g. `hpscape run --preset quick`)")
    from hpscape.workers.sweep import SpecMismatch, SweepInterrupted, recorded_spec, run_sweep

    try:
        if resume is not None:
            spec = recorded_spec(storage, resume)
        elif preset is not None:
            spec = get_preset(preset, **({"name": name} if name else {}))
        else:
            spec = load_spec(spec_file)
            if name:
                spec = spec.replace(name=name)
    except ValidationError as exc:
        fail_usage("the sweep spec is invalid:\n  " + format_validation_error(exc).replace("\n", "\n  "))
    except (LookupError, ValueError, OSError) as exc:
        fail_usage(str(exc))

    ensure_sqlite_dir(storage)
    runs_dir = runs_dir or settings.runs_dir
    console.print(f"sweep [bold]{spec.name}[/]: {spec.total_trials()} trials over {', '.join(spec.variants)}, "
                  f"{' x '.join(spec.swept_axes)} ({spec.model} on {spec.dataset}, {spec.max_epochs()} epochs); "
                  f"record: {storage}")
    with Live(console=console, refresh_per_second=2, transient=True) as live:
        def on_progress(snapshot: dict[str, Any]) -> None:
            live.update(progress_table(snapshot))

        try:
            outcome = run_sweep(
                spec, storage_url=storage, runs_dir=runs_dir,
                data_dir=data_dir or settings.data_dir, ray_address=ray_address or settings.ray_address,
                resume=resume is not None, on_progress=on_progress,
            )
        except (SweepInterrupted, SpecMismatch, ConnectionError) as exc:
            live.stop()
            fail_usage(str(exc))
    console.print(progress_table({"summary": outcome.summary, "spec": spec, "final": True,
                                  "elapsed_s": outcome.wall_s}))
    _report_landscapes(spec, storage, dashboard or runs_dir / f"{spec.name}-landscape.html")
    failed = sum(v["counts"].get("FAIL", 0) for v in outcome.summary.values())
    if failed:
        err_console.print(f"[yellow]{failed} trial(s) failed; `hpscape run --resume {spec.name}` retries them[/]")


def progress_table(snapshot: dict[str, Any]) -> Table:
    """Cells done/total per study, the best cell so far and an ETA, from a `sweep_summary` snapshot."""
    from hpscape.landscapes import study_key

    spec, summary = snapshot["spec"], snapshot["summary"]
    done_all = sum(_done(v) for v in summary.values())
    elapsed = snapshot.get("elapsed_s", 0.0)
    title = f"{spec.name}: {done_all}/{spec.total_trials()} trials, {elapsed:,.0f} s"
    remaining = spec.total_trials() - done_all
    if not snapshot.get("final") and done_all and remaining > 0:
        title += f", ETA {elapsed / done_all * remaining:,.0f} s"
    table = Table(title=title)
    final = bool(snapshot.get("final"))
    table.add_column("variant", no_wrap=True)
    table.add_column("done", justify="right", no_wrap=True)
    if not final:  # the bar is for watching; the final table keeps the numbers whole in 80 columns
        table.add_column("", width=_BAR, no_wrap=True)
    for label in _STATE_COLUMNS.values():
        table.add_column(label, justify="right")
    table.add_column(f"best {spec.metric}", justify="right", no_wrap=True)
    table.add_column("at", justify="right", no_wrap=True)
    for variant, facet in spec.studies():
        key = study_key(variant, facet)
        planned = spec.study_trials(variant)
        info = summary.get(key, {"counts": {}, "best": None})
        done = _done(info)
        filled = int(_BAR * done / planned) if planned else _BAR
        best = info.get("best")
        bar = [] if final else ["█" * filled + "░" * (_BAR - filled)]
        table.add_row(
            key, f"{done}/{planned}", *bar,
            *[str(info["counts"].get(state, 0)) for state in _STATE_COLUMNS],
            f"{best['value']:.4f}" if best else "-",
            cell_text(best["params"]) if best else "-",
        )
    return table


def _report_landscapes(spec: Any, storage: str, dashboard: Path) -> None:
    """Print how coupled each variant's landscape is and write the figure as an offline HTML file."""
    from hpscape.dashboards import landscape_html
    from hpscape.landscapes import build_sweep_landscapes, coupling_metrics

    landscapes = build_sweep_landscapes(storage, spec.name, metric=spec.metric, spec=spec)
    coupling = {v: coupling_metrics(land) for v, land in landscapes.items()}
    console.print(coupling_table(spec.metric, coupling))
    dashboard.parent.mkdir(parents=True, exist_ok=True)
    dashboard.write_text(landscape_html(landscapes, title=f"{spec.name}: {spec.metric.replace('_', ' ')}",
                                        dataset=spec.dataset, coupling=coupling), encoding="utf-8")
    console.print(f"dashboard: {dashboard.resolve()}", soft_wrap=True, highlight=False)


def coupling_table(metric: str, coupling: dict[str, Any]) -> Table:
    """One row per landscape: ridge slope with its 95 % interval, verdict, interaction, separability, basin."""
    from hpscape.dashboards import slope_text

    axes = next(iter(coupling.values())).axes if coupling else ("lr", "weight_decay")
    table = Table(title=f"how coupled {axes[0]} and {axes[1]} are ({metric.replace('_', ' ')})")
    # Fits 80 columns: the slope and its interval may wrap, the numbers do not.
    for column, wrap in (("landscape", True), ("slope [95 % CI]", True), ("verdict", False), ("inter.", False),
                         ("separ.", False), ("basin", False), ("best", False)):
        table.add_column(column, justify="left" if column in ("landscape", "verdict") else "right", no_wrap=not wrap)
    reasons = []
    for key, metrics in coupling.items():
        best = metrics.best
        table.add_row(
            key,
            slope_text(metrics),
            metrics.verdict,
            "-" if metrics.interaction is None else f"{metrics.interaction:.2f}",
            "-" if metrics.separability is None else f"{metrics.separability:.2f}",
            f"{metrics.basin_cells}/{metrics.n_cells}",
            "-" if best is None else f"{best['value']:.4f}",
        )
        if metrics.verdict == "inconclusive":
            why = next((n for n in metrics.notes if n.startswith("no interval")), None) or "the interval is too wide"
            reasons.append(f"{key}: {why}")
    table.caption = ("slope: about -1 when the good region is diagonal (coupled), about 0 when upright; coupled: "
                     "its whole interval below -0.3, separable: within +-0.3; inter.: interaction (0 separable, 1 "
                     "diagonal); separ.: separability; basin: cells within 10 % of the best"
                     + "".join(f"\n{reason}" for reason in reasons))
    return table


def _done(info: dict[str, Any]) -> int:
    return info["counts"].get("COMPLETE", 0) + info["counts"].get("PRUNED", 0)


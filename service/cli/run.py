"""Run a landscape sweep on Ray (a preset, a YAML/JSON spec, or --resume NAME) and print a per-variant table."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.live import Live
from rich.table import Table

from hpscape.service.cli._common import (
    cell_text,
    console,
    describe_validation_error,
    err_console,
    fail,
    fail_usage,
    format_metric,
)
from hpscape.service.cli.mechanism import print_collapse_scores

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
    plan: Annotated[bool, typer.Option("--plan", help="Print the trials, epochs and images (and the hours, from a "
                                       "measured throughput) without training.")] = False,
    throughput: Annotated[float | None, typer.Option(help="With --plan: images/s of one trial, measured elsewhere "
                                                     "(e.g. by bench/gpu_check.sh); default: from the record.",
                                                     min=1e-9)] = None,
    log_every: Annotated[float, typer.Option(help="Seconds between plain progress lines when the output is not a "
                                             "terminal (a file, a pipe); a terminal shows a live table.",
                                             min=0.1)] = 30.0,
    pending_timeout: Annotated[float | None, typer.Option(help="Fail the sweep when no trial could start for this "
                                                          "many seconds, waiting for resources (default "
                                                          "HPSCAPE_PENDING_TIMEOUT_S, or 600).", min=1e-3,
                                                          show_default=False)] = None,
) -> None:
    """Run a landscape sweep on Ray (a preset, a YAML/JSON spec, or --resume NAME) and print a per-variant table."""
    import optuna

    from hpscape.landscapes import ensure_sqlite_dir, format_validation_error, get_preset, load_spec
    from hpscape.service.settings import Settings, load_settings

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        settings = load_settings()
    except ValidationError as exc:  # a bad HPSCAPE_* variable: name it, rather than a traceback
        fail_usage("a setting in the environment is invalid:\n  " + describe_validation_error(
            exc, option_names={name: f"HPSCAPE_{name.upper()}" for name in Settings.model_fields}))
    storage = storage or settings.storage
    chosen = [x for x in (spec_file, preset, resume) if x is not None]
    if len(chosen) != 1:
        fail_usage("give exactly one of: a spec file, --preset NAME, or --resume NAME "
                   "(e.g. `hpscape run --preset quick`)")
    from hpscape.workers.sweep import (
        SpecMismatch,
        SweepInterrupted,
        TrialsStalled,
        UnplaceableTrials,
        recorded_spec,
        run_sweep,
    )
    from hpscape.workers.sweep.loggers import LoggerUnavailable
    from hpscape.workers.sweep.retry import DatabaseUnavailable

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

    if plan:
        _print_plan(spec, storage, throughput)
        return
    if throughput is not None:
        fail_usage("--throughput only prices a --plan; add --plan, or drop --throughput")
    pending_timeout = pending_timeout or settings.pending_timeout_s
    data_dir = data_dir or settings.data_dir
    _check_data(spec.dataset, data_dir)  # before anything is created or started: the fix is one line
    ensure_sqlite_dir(storage)
    runs_dir = runs_dir or settings.runs_dir
    console.print(f"sweep [bold]{spec.name}[/]: {spec.total_trials()} trials over {', '.join(spec.variants)}, "
                  f"{' x '.join(spec.swept_axes)} ({spec.model} on {spec.dataset}, {spec.max_epochs()} epochs); "
                  f"record: {storage}", soft_wrap=True)
    with _progress_display(log_every) as on_progress:
        try:
            outcome = run_sweep(
                spec, storage_url=storage, runs_dir=runs_dir,
                data_dir=data_dir, ray_address=ray_address or settings.ray_address,
                resume=resume is not None, on_progress=on_progress,
                **({"pending_timeout_s": pending_timeout} if pending_timeout is not None else {}),
            )
        except (SweepInterrupted, SpecMismatch, UnplaceableTrials, LoggerUnavailable, ConnectionError) as exc:
            on_progress.stop()  # type: ignore[attr-defined]
            fail_usage(str(exc))
        except (TrialsStalled, DatabaseUnavailable) as exc:
            # Not the input's fault (the cluster is busy, the database is down): exit 1, still one line and no
            # traceback; the record keeps what finished, and --resume continues from there.
            on_progress.stop()  # type: ignore[attr-defined]
            fail(str(exc))
    console.print(progress_table({"summary": outcome.summary, "spec": spec, "final": True,
                                  "elapsed_s": outcome.wall_s}))
    _report_landscapes(spec, storage, dashboard or runs_dir / f"{spec.name}-landscape.html")
    failed = sum(v["counts"].get("FAIL", 0) for v in outcome.summary.values())
    if failed:
        err_console.print(f"[yellow]{failed} trial(s) failed; `hpscape run --resume {spec.name}` retries them[/]")


@contextmanager
def _progress_display(log_every_s: float) -> Iterator[Any]:
    """A live table on a terminal; elsewhere (`make demo > log`) one plain line every `log_every_s` and at the
    end (the engine reports a snapshot about once a second)."""
    if console.is_terminal:
        with Live(console=console, refresh_per_second=2, transient=True) as live:
            def on_progress(snapshot: dict[str, Any]) -> None:
                live.update(progress_table(snapshot))

            on_progress.stop = live.stop  # type: ignore[attr-defined]
            yield on_progress
        return
    last = [-math.inf]

    def on_log(snapshot: dict[str, Any]) -> None:
        now = time.monotonic()
        if not snapshot.get("final") and now - last[0] < log_every_s:
            return
        last[0] = now
        console.print(progress_line(snapshot), highlight=False, soft_wrap=True)

    on_log.stop = lambda: None  # type: ignore[attr-defined]
    yield on_log


def progress_line(snapshot: dict[str, Any]) -> str:
    """'quick: 24/66 trials finished (1 failed, 2 running), 190 s, ETA 330 s; best test_loss 0.4012 (sgdw)'."""
    spec, summary = snapshot["spec"], snapshot["summary"]
    done = sum(_done(info) for info in summary.values())
    failed = sum(info["counts"].get("FAIL", 0) for info in summary.values())
    running = sum(info["counts"].get("RUNNING", 0) for info in summary.values())
    elapsed = snapshot.get("elapsed_s", 0.0)
    line = f"{spec.name}: {done}/{spec.total_trials()} trials finished ({failed} failed, {running} running), " \
           f"{elapsed:,.0f} s"
    if done and not snapshot.get("final") and done < spec.total_trials():
        line += f", ETA {elapsed / done * (spec.total_trials() - done):,.0f} s"
    best = min(((info["best"]["value"], key) for key, info in summary.items() if info.get("best")), default=None)
    if best is not None:
        line += f"; best {spec.metric} {format_metric(spec.metric, best[0])} ({best[1]})"
    return line


def _print_plan(spec: Any, storage: str, images_per_s: float | None) -> None:
    from hpscape.landscapes import Throughput, measured_throughput, plan_sweep, sqlite_file
    from hpscape.service.cli.plan import print_plan

    if images_per_s is not None:
        measured = Throughput(images_per_s, "given with --throughput")
    else:
        path = sqlite_file(storage)
        # An SQLite record that does not exist yet has measured nothing (and opening it would create it).
        measured = None if path is not None and not path.is_file() else measured_throughput(storage, spec)
    print_plan(plan_sweep(spec, measured))


def _check_data(dataset: str, data_dir: Path) -> None:
    """One line with the fix when the dataset's files are not where every worker will look for them."""
    from hpscape.workers.data import DatasetUnavailableError, check_available

    try:
        check_available(dataset, data_dir)
    except DatasetUnavailableError as exc:
        fail_usage(str(exc))


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
    table.add_column("at", justify="right")  # wraps first, so the state columns keep their headers in 80 columns
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
            format_metric(spec.metric, best["value"]) if best else "-",
            cell_text(best["params"]) if best else "-",
        )
    return table


def _report_landscapes(spec: Any, storage: str, dashboard: Path) -> None:
    """Print how coupled each variant's landscape is and write the figure as an offline HTML file."""
    from hpscape.dashboards import landscape_html
    from hpscape.landscapes import build_sweep_landscapes, coupling_metrics_by_key

    landscapes = build_sweep_landscapes(storage, spec.name, metric=spec.metric, spec=spec)
    coupling = coupling_metrics_by_key(landscapes)
    console.print(coupling_table(spec.metric, coupling))
    print_collapse_scores(spec, storage)
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
            "-" if best is None else format_metric(metric, best["value"]),
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


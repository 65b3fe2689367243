"""Commands that talk to a running server over REST: submit, list, status, cancel, export."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import yaml
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hpscape.service.cli._common import USAGE_ERROR, cell_text, console, err_console, format_metric
from hpscape.service.client import ApiError, Client, ServerUnreachable

__all__ = ["cancel", "export", "list_", "status", "submit"]

_FINAL = ("succeeded", "failed", "cancelled")
_STATE_COLUMNS = ("COMPLETE", "PRUNED", "RUNNING", "WAITING", "FAIL")
_STATUS_STYLE = {"queued": "yellow", "running": "cyan", "succeeded": "green", "failed": "red", "cancelled": "magenta",
                 "recorded": "blue"}

UrlOption = Annotated[str | None, typer.Option(help="Server URL (default HPSCAPE_URL, else http://127.0.0.1:8000).")]
TokenOption = Annotated[str | None, typer.Option(help="API token (default HPSCAPE_TOKEN).", show_default=False)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the server's JSON instead of a table.")]


def _fail(message: str, code: int) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def _client(url: str | None, token: str | None) -> Iterator[Client]:
    """A client for the server; turns transport and HTTP errors into exit codes 1 (server) and 2 (request)."""
    from hpscape.service.settings import load_settings

    settings = load_settings()
    client = Client(url or settings.url, token or settings.token)
    try:
        yield client
    except ServerUnreachable as exc:
        _fail(str(exc), 1)
    except ApiError as exc:
        hint = ""
        if exc.status_code == 401:
            hint = "\n(set HPSCAPE_TOKEN or pass --token; an admin creates tokens with `hpscape token create NAME`)"
        _fail(f"the server refused the request (HTTP {exc.status_code}):\n  "
              + exc.message.replace("\n", "\n  ") + hint, USAGE_ERROR if exc.status_code < 500 else 1)
    finally:
        client.close()


def _parse_set(items: list[str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            _fail(f"--set {item!r}: expected KEY=VALUE, e.g. --set epochs=5 or --set 'variants=[sgd, sgdw]'",
                  USAGE_ERROR)
        try:
            overrides[key.strip()] = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError as exc:
            _fail(f"--set {item!r}: the value is not valid YAML: {exc}", USAGE_ERROR)
    return overrides


def submit(
    spec_file: Annotated[Path | None, typer.Argument(help="Sweep spec (.yaml, .yml or .json).",
                                                     show_default=False)] = None,
    preset: Annotated[str | None, typer.Option(help="Submit a built-in preset: quick or fig2.")] = None,
    name: Annotated[str | None, typer.Option(help="Override the sweep name.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a top-level spec field: KEY=VALUE "
                                                   "(YAML value), repeatable.")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Reuse a key to make a repeated submit return the "
                                                        "same sweep (default: a new one per call).")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Queue a sweep on the server (a spec file, or --preset NAME) and print its id."""
    from hpscape.landscapes import SpecError, load_spec

    if (spec_file is None) == (preset is None):
        _fail("give exactly one of: a spec file, or --preset NAME (e.g. `hpscape submit --preset quick`)",
              USAGE_ERROR)
    overrides = _parse_set(set_ or [])
    if name:
        overrides["name"] = name
    if spec_file is not None:
        try:
            body: dict[str, Any] = load_spec(spec_file).model_dump(mode="json", exclude_none=True)
        except SpecError as exc:
            _fail(str(exc), USAGE_ERROR)
        if "grid" in overrides:
            body.pop("bayes", None)
        if "bayes" in overrides:
            body.pop("grid", None)
        body.update(overrides)
    else:
        body = {"preset": preset, **overrides}
    with _client(url, token) as client:
        sweep = client.submit(body, idempotency_key=idempotency_key)
    if as_json:
        print(json.dumps(sweep, indent=2))
        return
    console.print(f"queued sweep [bold]{sweep['id']}[/] ({sweep['name']}, {sweep['total_trials']} trials, "
                  f"studies {sweep['record_name']}/*); follow it with `hpscape status {sweep['id']} --watch`",
                  highlight=False)


def list_(
    status_: Annotated[str | None, typer.Option("--status", help="Only sweeps in this state "
                                                "(queued, running, succeeded, failed, cancelled, recorded).")] = None,
    owner: Annotated[str | None, typer.Option(help="Only sweeps submitted with this token name.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="How many to show.")] = 50,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many (newest first).")] = 0,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """List sweeps on the server, newest first."""
    with _client(url, token) as client:
        page = client.list(status=status_, owner=owner, limit=limit, offset=offset)
    if as_json:
        print(json.dumps(page, indent=2))
        return
    table = Table(title=f"sweeps {offset + 1 if page['items'] else 0}-{offset + len(page['items'])} "
                        f"of {page['total']}")
    for column in ("id", "name", "status", "owner", "trials", "submitted (UTC)", "finished (UTC)"):
        table.add_column(column)
    for sweep in page["items"]:
        style = _STATUS_STYLE.get(sweep["status"], "")
        table.add_row(sweep["id"], sweep["name"], f"[{style}]{sweep['status']}[/]", sweep["owner"],
                      str(sweep["total_trials"]), _when(sweep["created_at"]), _when(sweep["finished_at"]))
    console.print(table)


def _when(stamp: str | None) -> str:
    return "-" if not stamp else stamp.replace("T", " ")[:19]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def status_table(sweep: dict[str, Any]) -> Table:
    """Per-variant counts by state and the best cell so far, titled with the sweep's state and timings."""
    timings, progress = sweep["timings"], sweep["progress"]
    title = (f"{sweep['id']} {sweep['name']}: {sweep['status']}"
             f"{' (cancelling)' if sweep['cancel_requested'] else ''}, {progress['done']}/{progress['total']} "
             f"trials, elapsed {_duration(timings['elapsed_s'])}")
    if timings["eta_s"] is not None:
        title += f", ETA {_duration(timings['eta_s'])}"
    table = Table(title=title)
    table.add_column("variant")
    for state in _STATE_COLUMNS:
        table.add_column(state.lower(), justify="right")
    table.add_column("diverged", justify="right")
    table.add_column(f"best {sweep['metric']}", justify="right")
    table.add_column("at", justify="right")
    for key, info in sweep["variants"].items():
        best = info["best"]
        table.add_row(key, *[str(info["counts"].get(s, 0)) for s in _STATE_COLUMNS], str(info["diverged"]),
                      format_metric(sweep["metric"], best["value"]) if best else "-",
                      cell_text(best["params"]) if best else "-")
    return table


def status(
    sweep_id: Annotated[str, typer.Argument(help="The sweep's id (from `hpscape submit` or `hpscape list`).")],
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Follow with progress bars until the sweep ends; "
                                        "exit 1 unless it succeeded.")] = False,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between polls with --watch.")] = 2.0,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a sweep's state, trial counts per variant, best cells, timings and ETA."""
    with _client(url, token) as client:
        sweep = client.get(sweep_id)
        recorded = sweep["status"] == "recorded"
        if watch and recorded:
            # The server did not start it and is never told when `hpscape run` ends it: nothing to wait for.
            err_console.print("this sweep ran outside the server (`hpscape run`): shown once, not followed")
        elif watch and sweep["status"] not in _FINAL:
            sweep = _watch(client, sweep, interval)
    if as_json:
        print(json.dumps(sweep, indent=2))
    else:
        console.print(status_table(sweep))
        if sweep.get("error"):
            err_console.print(f"[red]{sweep['status']}:[/] {sweep['error']}", highlight=False)
    if watch and sweep["status"] != "succeeded" and not recorded:
        raise typer.Exit(1)


def _watch(client: Client, sweep: dict[str, Any], interval: float) -> dict[str, Any]:
    totals = {key: info["total"] for key, info in sweep["variants"].items()}
    columns = (TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[note]}"), TimeElapsedColumn())
    # On stderr: stdout stays clean for the final table (or --json) when piped.
    with Progress(*columns, console=err_console, transient=False) as bars:
        overall = bars.add_task("all", total=sweep["total_trials"], note="")
        tasks = {v: bars.add_task(v, total=totals[v] or None, note="") for v in sweep["variants"]}
        while True:
            for variant, info in sweep["variants"].items():
                counts = info["counts"]
                done = counts.get("COMPLETE", 0) + counts.get("PRUNED", 0) + counts.get("FAIL", 0)
                best = info["best"]
                note = f"best {format_metric(sweep['metric'], best['value'])}" if best else ""
                if counts.get("RUNNING"):
                    note = f"{counts['RUNNING']} running  {note}"
                bars.update(tasks[variant], completed=done, note=note)
            eta = sweep["timings"]["eta_s"]
            bars.update(overall, completed=sweep["progress"]["done"],
                        note=f"{sweep['status']}" + (f", ETA {_duration(eta)}" if eta is not None else ""))
            if sweep["status"] in _FINAL:
                return sweep
            time.sleep(interval)
            sweep = client.get(sweep["id"])


def cancel(
    sweep_id: Annotated[str, typer.Argument(help="The sweep's id.")],
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Cancel a sweep you own (or any, as an admin); what it recorded so far stays."""
    with _client(url, token) as client:
        sweep = client.cancel(sweep_id)
    if sweep["status"] == "cancelled":
        console.print(f"sweep {sweep['id']} cancelled", highlight=False)
    else:
        console.print(f"sweep {sweep['id']} is being cancelled: its trials are stopped within seconds; "
                      f"`hpscape status {sweep['id']}` shows when", highlight=False)


_TABLE_FORMATS = ("csv", "json")
_FIGURE_FORMATS = ("html", "svg", "png", "pdf")
_VIEWS = ("landscape", "facets", "curves", "budget", "mechanism")


def export(
    sweep_id: Annotated[str, typer.Argument(help="The sweep's id.")],
    format_: Annotated[str, typer.Option("--format", "-f", help="csv (one row per trial, with its per-epoch history) "
                                         "or json (sweep, spec and trials); html (offline figure), svg, png or pdf "
                                         "(the figure with a caption, drawn by the server).")] = "csv",
    view: Annotated[str, typer.Option("--view", help="The figure to export: landscape (Figure 2), facets, curves, "
                                      "budget or mechanism.")] = "landscape",
    metric: Annotated[str | None, typer.Option("--metric", help="The metric the figure shows (default: the "
                                               "sweep's objective).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout "
                                                "(images: default SWEEP-VIEW.FORMAT).")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Export a sweep: its trials as CSV or JSON, or a figure as HTML, SVG, PNG or PDF."""
    if format_ not in _TABLE_FORMATS + _FIGURE_FORMATS:
        _fail(f"--format must be one of {', '.join(_TABLE_FORMATS + _FIGURE_FORMATS)}, got {format_!r}", USAGE_ERROR)
    if view not in _VIEWS:
        _fail(f"--view must be one of {', '.join(_VIEWS)}, got {view!r}", USAGE_ERROR)
    if format_ in _TABLE_FORMATS and (view != "landscape" or metric is not None):
        _fail("--view and --metric choose a figure: give --format html, svg, png or pdf with them", USAGE_ERROR)
    with _client(url, token) as client:
        if format_ in _FIGURE_FORMATS:
            params = {} if metric is None else {"metric": metric}
            data = client.export_figure(sweep_id, format_, view=view, **params)
        else:
            data = (client.export_csv(sweep_id) if format_ == "csv"
                    else json.dumps(client.export_json(sweep_id), indent=2) + "\n").encode("utf-8")
    if output is None and format_ in ("png", "pdf"):
        output = Path(f"{sweep_id}-{view}.{format_}")  # binary: never onto a terminal
    if output is None:
        sys.stdout.write(data.decode("utf-8"))
    else:
        output.write_bytes(data)
        err_console.print(f"wrote {output} ({len(data) / 1024:.0f} KiB)", highlight=False)

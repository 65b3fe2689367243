"""Open a sweep in TensorBoard: per-epoch scalars, weight histograms and the HParams table, from its runs folder."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from hpscape.service.cli._common import console, err_console, fail, fail_usage

# The engine's layout (hpscape.workers.sweep.engine): RUNS_DIR/tune/<sweep>-<YYYYmmdd-HHMMSS>/<trial>/, one Tune
# experiment per start of the sweep, the trial folders holding Ray's event files. Kept here rather than imported:
# the engine's module pulls in Ray and torch, seconds for a command that only lists folders.
TUNE_DIR = "tune"
_STARTED = r"-(\d{8}-\d{6})"
_EVENTS = "events.out.tfevents.*"
_INSTALL = "pip install tensorboard"

__all__ = ["tensorboard", "tensorboard_command", "tensorboard_dirs"]


def tensorboard_dirs(runs_dir: str | Path, name: str) -> list[Path]:
    """The Tune experiment folders of sweep `name` under `runs_dir`, oldest first (a resumed sweep adds one)."""
    root = Path(runs_dir) / TUNE_DIR
    if not root.is_dir():
        return []
    pattern = re.compile(re.escape(name) + _STARTED)  # the whole name: "fig2" must not take "fig2-small-..."
    return sorted(p for p in root.iterdir() if p.is_dir() and pattern.fullmatch(p.name))


def _executable() -> list[str] | None:
    beside = Path(sys.executable).with_name("tensorboard")  # this environment's, before any other on PATH
    if beside.exists():
        return [str(beside)]
    found = shutil.which("tensorboard")
    if found:
        return [found]
    if importlib.util.find_spec("tensorboard") is not None:
        return [sys.executable, "-m", "tensorboard.main"]
    return None


def tensorboard_command(dirs: list[Path], *, port: int, host: str, executable: list[str] | None = None) -> list[str]:
    """The TensorBoard command line for `dirs`: one folder as --logdir; several (a resumed sweep) as --logdir_spec,
    each named by when it started, so their trials keep apart."""
    command = [*(executable or ["tensorboard"])]
    if len(dirs) == 1:
        command += ["--logdir", str(dirs[0])]
    else:
        named = [f"{_started(d)}:{d}" for d in dirs]
        command += ["--logdir_spec", ",".join(named)]
    return [*command, "--host", host, "--port", str(port)]


def _started(folder: Path) -> str:
    match = re.search(_STARTED + "$", folder.name)
    return match.group(1) if match else folder.name


def tensorboard(
    name: Annotated[str, typer.Argument(help="The sweep's name.", show_default=False)],
    runs_dir: Annotated[Path | None, typer.Option(help="The runs folder the sweep ran with "
                                                  "(default HPSCAPE_RUNS_DIR).")] = None,
    port: Annotated[int, typer.Option(help="TensorBoard's port.", min=1, max=65535)] = 6006,
    host: Annotated[str, typer.Option(help="The address TensorBoard listens on (loopback: only this machine).")]
    = "127.0.0.1",
    print_only: Annotated[bool, typer.Option("--print", help="Print the command instead of running it.")] = False,
) -> None:
    """Open sweep NAME's TensorBoard (per-epoch scalars, weight histograms, HParams), or print the command."""
    from hpscape.service.settings import load_settings

    runs_dir = runs_dir or load_settings().runs_dir
    dirs = tensorboard_dirs(runs_dir, name)
    if not dirs:
        root = Path(runs_dir) / TUNE_DIR
        known = sorted({m.group(1) for p in (root.iterdir() if root.is_dir() else ())
                        if (m := re.fullmatch(r"(.+)" + _STARTED, p.name))})
        fail_usage(f"no runs of sweep {name!r} under {root} (sweeps there: {', '.join(known) or 'none'}); give the "
                   "runs folder the sweep ran with (--runs-dir, or HPSCAPE_RUNS_DIR)")
    if not any(next(d.glob(f"*/{_EVENTS}"), None) for d in dirs):
        fail_usage(f"sweep {name!r} has no TensorBoard event files under {dirs[-1].parent}: its spec's loggers leave "
                   "out tensorboard, or no trial has reported an epoch yet")
    executable = _executable()
    command = tensorboard_command(dirs, port=port, host=host, executable=executable)
    if print_only:
        console.print(shlex.join(command), highlight=False, soft_wrap=True)
        return
    if executable is None:
        console.print(shlex.join(command), highlight=False, soft_wrap=True)
        fail(f"TensorBoard is not installed here: {_INSTALL}, then run the command above")
    err_console.print(f"TensorBoard on http://{host}:{port}/ (Ctrl-C stops it)", highlight=False)
    if hasattr(os, "execv"):
        # This process becomes TensorBoard: a signal meant for it (Ctrl-C, a service manager's stop) reaches it, and
        # no child is left running when the command is stopped.
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(command[0], command)
    try:
        code = subprocess.call(command)
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)

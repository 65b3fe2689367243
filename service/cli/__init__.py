"""The `hpscape` command line: one Typer app, one module per command group."""

from __future__ import annotations

import typer

from service.cli import run as _run
from service.cli import train as _train

app = typer.Typer(
    name="hpscape",
    help="Hyperparameter landscapes: how learning rate and weight decay interact, L2 vs decoupled weight decay.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("train", help=_train.__doc__)(_train.train)
app.command("run", help=_run.__doc__)(_run.run)

__all__ = ["app"]

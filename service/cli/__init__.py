"""The `hpscape` command line: one Typer app, one module per command group."""

from __future__ import annotations

import typer

from hpscape.service.cli import catalog as _catalog
from hpscape.service.cli import remote as _remote
from hpscape.service.cli import run as _run
from hpscape.service.cli import server as _server
from hpscape.service.cli import tensorboard as _tensorboard
from hpscape.service.cli import train as _train

app = typer.Typer(
    name="hpscape",
    help="Hyperparameter landscapes: how two hyperparameters interact, for L2 and decoupled weight decay.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from hpscape import __version__

        print(f"hpscape {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Hyperparameter landscapes: how two hyperparameters interact, for L2 and decoupled weight decay."""

app.command("train", help=_train.__doc__)(_train.train)
app.command("run", help=_run.__doc__)(_run.run)
app.command("tensorboard")(_tensorboard.tensorboard)

# What hpscape knows by name.
app.command("models")(_catalog.models)
app.command("variants")(_catalog.variants)
app.command("axes")(_catalog.axes)
app.command("presets")(_catalog.presets)

# The controller, on the server machine.
app.command("serve")(_server.serve)
app.add_typer(_server.db_app, name="db")
app.add_typer(_server.token_app, name="token")

# Clients of a running controller (HPSCAPE_URL, HPSCAPE_TOKEN).
app.command("submit")(_remote.submit)
app.command("list")(_remote.list_)
app.command("status")(_remote.status)
app.command("cancel")(_remote.cancel)
app.command("export")(_remote.export)

__all__ = ["app"]

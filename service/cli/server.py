"""Commands run on the server machine: `serve`, `db upgrade|current`, `token create|list|revoke`."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.table import Table

from hpscape.service.cli._common import console, err_console, fail_usage

__all__ = ["db_app", "serve", "token_app"]

StorageOption = Annotated[str | None, typer.Option(help="Database URL (default HPSCAPE_STORAGE).")]


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on; 0.0.0.0 for every interface.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    dispatch: Annotated[bool, typer.Option(help="Launch queued sweeps (--no-dispatch: serve the API only).")] = True,
    log_level: Annotated[str, typer.Option(help="uvicorn log level: debug, info, warning, error.")] = "info",
    workers: Annotated[int, typer.Option(min=1, help="Server processes; each also dispatches (claims are safe "
                                         "across processes).")] = 1,
) -> None:
    """Run the controller: REST API, dashboards and the sweep dispatcher (configured by HPSCAPE_* variables)."""
    import logging

    import uvicorn

    from hpscape.landscapes import ensure_sqlite_dir
    from hpscape.service.api import create_app
    from hpscape.service.settings import SettingsError, load_settings

    settings = load_settings()
    try:
        settings.check_controller()
    except SettingsError as exc:
        fail_usage(str(exc))
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ensure_sqlite_dir(settings.storage)
    try:
        app = create_app(settings, dispatch=dispatch)
        # Migrate and seed the admin token now: a database that is down or a bad URL fails here, clearly.
        app.state.hpscape.ensure_ready()
    except Exception as exc:  # noqa: BLE001 - say what is wrong and exit
        fail_usage(f"cannot start the server on {settings.storage.split('@')[-1]}: {str(exc).splitlines()[0]}")
    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print("[yellow]note:[/] listening beyond loopback; every change needs a token "
                          "(`hpscape token create NAME`), reads too unless HPSCAPE_PUBLIC_READ=true")
    if workers == 1:
        uvicorn.run(app, host=host, port=port, log_level=log_level.lower(), timeout_graceful_shutdown=5)
        return
    app.state.hpscape.close()
    # Several processes need an importable factory; each reads the same HPSCAPE_* settings.
    os.environ["HPSCAPE_SERVE_DISPATCH"] = "1" if dispatch else "0"
    uvicorn.run("hpscape.service.cli.server:_worker_app", factory=True, host=host, port=port, workers=workers,
                log_level=log_level.lower(), timeout_graceful_shutdown=5)


def _worker_app():  # noqa: ANN202 - the app of one `serve --workers N` process
    from hpscape.service.api import create_app

    return create_app(dispatch=os.environ.get("HPSCAPE_SERVE_DISPATCH", "1") == "1")


db_app = typer.Typer(help="The service's tables (in the database of HPSCAPE_STORAGE).", no_args_is_help=True)


def _engine(storage: str | None):  # noqa: ANN202
    from hpscape.service.db import make_engine
    from hpscape.service.settings import load_settings

    return make_engine(storage or load_settings().storage, pool_size=1)



@db_app.command("upgrade")
def db_upgrade(storage: StorageOption = None) -> None:
    """Create or migrate the service's tables (also done at server start-up)."""
    from sqlalchemy.exc import SQLAlchemyError

    from hpscape.landscapes import ensure_sqlite_dir
    from hpscape.service.db import upgrade
    from hpscape.service.settings import load_settings

    url = storage or load_settings().storage
    ensure_sqlite_dir(url)
    try:
        revision = upgrade(_engine(url))
    except SQLAlchemyError as exc:
        fail_usage(f"cannot migrate {url.split('@')[-1]}: {str(exc).splitlines()[0]}")
    console.print(f"database at revision {revision} (head)")


@db_app.command("current")
def db_current(storage: StorageOption = None) -> None:
    """Print the revision the database is at."""
    from hpscape.service.db import current_revision, head_revision

    revision = current_revision(_engine(storage))
    console.print(f"{revision or 'none (run `hpscape db upgrade`)'}; newest: {head_revision()}")


token_app = typer.Typer(help="API tokens (stored as hashes; a secret is shown once).", no_args_is_help=True)


def _sessions(storage: str | None):  # noqa: ANN202
    from hpscape.landscapes import ensure_sqlite_dir
    from hpscape.service.db import make_session_factory, upgrade
    from hpscape.service.settings import load_settings

    url = storage or load_settings().storage
    ensure_sqlite_dir(url)
    engine = _engine(url)
    upgrade(engine)
    return make_session_factory(engine)


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="Who holds it; becomes the owner of the sweeps it submits.")],
    admin: Annotated[bool, typer.Option("--admin", help="May cancel anyone's sweep.")] = False,
    storage: StorageOption = None,
) -> None:
    """Create a token and print it once (only its SHA-256 is stored)."""
    from hpscape.service.auth import TokenError, create_token

    with _sessions(storage)() as session:
        try:
            secret = create_token(session, name, admin=admin)
        except TokenError as exc:
            fail_usage(str(exc))
    err_console.print(f"token {name!r}{' (admin)' if admin else ''} created; store it now, it is not shown again:")
    print(secret)


@token_app.command("list")
def token_list(storage: StorageOption = None) -> None:
    """List token names (never the secrets)."""
    from hpscape.service.auth import list_tokens

    with _sessions(storage)() as session:
        rows = list_tokens(session)
    table = Table()
    for column in ("name", "admin", "created (UTC)"):
        table.add_column(column)
    for row in rows:
        table.add_row(row.name, "yes" if row.is_admin else "", f"{row.created_at:%Y-%m-%d %H:%M:%S}")
    console.print(table)


@token_app.command("revoke")
def token_revoke(name: Annotated[str, typer.Argument(help="The token's name.")], storage: StorageOption = None) -> None:
    """Revoke a token at once; its sweeps keep running and keep its name as owner."""
    from hpscape.service.auth import TokenError, revoke_token

    with _sessions(storage)() as session:
        try:
            revoke_token(session, name)
        except TokenError as exc:
            fail_usage(str(exc))
    console.print(f"token {name!r} revoked")

"""Dependencies shared by every router: settings, database session, Optuna storage, the caller, the sweep."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from optuna.storages import BaseStorage
from sqlalchemy.orm import Session

from hpscape.service.api.state import ServiceState
from hpscape.service.auth import ANONYMOUS, Caller, authenticate
from hpscape.service.db.models import SweepRow
from hpscape.service.settings import Settings

__all__ = [
    "CallerDep",
    "OptunaDep",
    "ReaderDep",
    "SessionDep",
    "SettingsDep",
    "StateDep",
    "SweepDep",
    "WriterDep",
    "get_caller",
    "get_optuna_storage",
    "get_reader",
    "get_readable_sweep",
    "get_session",
    "get_settings",
    "get_state",
    "get_writer",
]

_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_bearer = HTTPBearer(
    auto_error=False,
    description="A token from `hpscape token create NAME` (or HPSCAPE_ADMIN_TOKEN), sent as "
    "`Authorization: Bearer TOKEN`.",
)


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.hpscape
    state.ensure_ready()
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


def get_settings(state: StateDep) -> Settings:
    return state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_session(state: StateDep) -> Iterator[Session]:
    with state.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def get_optuna_storage(state: StateDep) -> BaseStorage:
    """The app's one Optuna storage (a shared connection pool; never build one per request)."""
    return state.optuna()


OptunaDep = Annotated[BaseStorage, Depends(get_optuna_storage)]


def _unauthorized(message: str, *, invalid: bool) -> HTTPException:
    challenge = 'Bearer error="invalid_token"' if invalid else "Bearer"
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=message, headers={"WWW-Authenticate": challenge})


def get_caller(
    session: SessionDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Caller | None:
    """The token's holder; None without a token; 401 for a token that is not (or no longer) valid."""
    if credentials is None:
        return None
    caller = authenticate(session, credentials.credentials)
    if caller is None:
        raise _unauthorized("invalid or revoked token: check HPSCAPE_TOKEN (or --token), or ask an admin for a "
                            "new one (`hpscape token create NAME`)", invalid=True)
    return caller


CallerDep = Annotated[Caller | None, Depends(get_caller)]


def get_reader(caller: CallerDep, settings: SettingsDep) -> Caller:
    """Anyone with a token; anyone at all when HPSCAPE_PUBLIC_READ is true."""
    if caller is not None:
        return caller
    if settings.public_read:
        return ANONYMOUS
    raise _unauthorized("this endpoint needs a token: send `Authorization: Bearer TOKEN` (the CLI reads "
                        "HPSCAPE_TOKEN or --token)", invalid=False)


ReaderDep = Annotated[Caller, Depends(get_reader)]


def get_writer(caller: CallerDep) -> Caller:
    """Every change needs a token, whatever HPSCAPE_PUBLIC_READ says."""
    if caller is None:
        raise _unauthorized("changing anything needs a token: send `Authorization: Bearer TOKEN` (the CLI reads "
                            "HPSCAPE_TOKEN or --token)", invalid=False)
    return caller


WriterDep = Annotated[Caller, Depends(get_writer)]


def get_readable_sweep(
    sweep_id: Annotated[str, Path(max_length=64, description="the sweep's id, as returned on submission")],
    reader: ReaderDep,
    session: SessionDep,
) -> SweepRow:
    """The sweep row for `sweep_id` (404 if there is none) once the caller may read (401 first)."""
    # Ids are short hex strings; anything else cannot exist (and PostgreSQL rejects some characters, like NUL).
    row = session.get(SweepRow, sweep_id) if _ID_PATTERN.fullmatch(sweep_id) else None
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no sweep with id {sweep_id!r}; "
                            "`hpscape list` (GET /api/v1/sweeps) shows the ids")
    return row


SweepDep = Annotated[SweepRow, Depends(get_readable_sweep)]

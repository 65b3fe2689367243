"""Dependencies shared by every router: settings, database session, Optuna storage, the caller, the sweep.

Authentication needs no database for a remembered token; otherwise it takes a database slot (see
`ServiceState.db_slot`) for a short session of its own and gives it back. A request that uses the database then
takes a slot (`DbSlotDep`, with its session) and keeps it until the handler returns, before the response is sent;
the sweep is read and that transaction ended before the handler runs, so a handler that does not use the session
again holds no connection. A handler uses the request's session (or none), never a second one of its own: a slot is
one connection. Only the dependencies that touch the database or block run in worker threads.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import Depends, HTTPException, Path, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from optuna.storages import BaseStorage
from sqlalchemy.orm import Session

from hpscape.service.api.state import ServiceState
from hpscape.service.auth import ANONYMOUS, Caller, authenticate, cached_caller
from hpscape.service.db.models import SweepRow
from hpscape.service.settings import Settings

__all__ = [
    "CallerDep",
    "CredentialsDep",
    "DbSlotDep",
    "OptunaDep",
    "ReaderDep",
    "SessionDep",
    "SettingsDep",
    "StateDep",
    "SweepDep",
    "WriterDep",
    "db_slot",
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


async def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.hpscape
    if not state.ready:
        await run_in_threadpool(state.ensure_ready)  # migrations: once, at start-up or on the first request
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


async def get_settings(state: StateDep) -> Settings:
    return state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def db_slot(state: StateDep) -> AsyncIterator[None]:
    async with state.db_slot():
        yield


DbSlotDep = Annotated[None, Depends(db_slot, scope="function")]


async def get_session(state: StateDep, _caller: CallerDep, _slot: DbSlotDep) -> AsyncIterator[Session]:
    """The request's session (it connects on first use); closed when the handler returns.

    After the caller, whatever order a handler names them in: authenticating may take a slot for a moment, and a
    request that held its own meanwhile would hold two (all the slots held so could wait for each other).
    """
    session = state.sessions()
    try:
        yield session
    finally:
        if session.in_transaction():
            # Holds a connection: the rollback is I/O, so in a thread, but not one of the request threads (which
            # may all be busy): a limiter of its own, as FastAPI does for the exit of a sync dependency.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(session.close, limiter=anyio.CapacityLimiter(1))
        else:
            session.close()  # nothing to give back: no I/O


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def get_optuna_storage(state: StateDep) -> BaseStorage:
    """The app's one Optuna storage (a shared connection pool; never build one per request)."""
    if state.ready:
        return state.optuna()
    return await run_in_threadpool(state.optuna)


OptunaDep = Annotated[BaseStorage, Depends(get_optuna_storage)]


CredentialsDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _unauthorized(message: str, *, invalid: bool) -> HTTPException:
    challenge = 'Bearer error="invalid_token"' if invalid else "Bearer"
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=message, headers={"WWW-Authenticate": challenge})


def _verify(state: ServiceState, token: str) -> Caller | None:
    # A session of its own, closed before the handler's opens: authentication never holds a connection.
    with state.sessions() as session:
        return authenticate(session, token, cache_s=state.settings.auth_cache_s)


async def get_caller(state: StateDep, credentials: CredentialsDep) -> Caller | None:
    """The token's holder; None without a token; 401 for a token that is not (or no longer) valid."""
    if credentials is None:
        return None
    caller = None
    if state.settings.auth_cache_s > 0:
        caller = cached_caller(state.database_key, credentials.credentials)
    if caller is None:
        # A slot for the lookup only, given back before the request's own (if it has one) is taken: a request
        # never holds two, and one answered from caches (a remembered token, a cached status) takes none.
        async with state.db_slot():
            caller = await run_in_threadpool(_verify, state, credentials.credentials)
    if caller is None:
        raise _unauthorized("invalid or revoked token: check HPSCAPE_TOKEN (or --token), or ask an admin for a "
                            "new one (`hpscape token create NAME`)", invalid=True)
    return caller


CallerDep = Annotated[Caller | None, Depends(get_caller)]


async def get_reader(caller: CallerDep, settings: SettingsDep) -> Caller:
    """Anyone with a token; anyone at all when HPSCAPE_PUBLIC_READ is true."""
    if caller is not None:
        return caller
    if settings.public_read:
        return ANONYMOUS
    raise _unauthorized("this endpoint needs a token: send `Authorization: Bearer TOKEN` (the CLI reads "
                        "HPSCAPE_TOKEN or --token)", invalid=False)


ReaderDep = Annotated[Caller, Depends(get_reader)]


async def get_writer(caller: CallerDep) -> Caller:
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
    # End the read: the row stays loaded (expire_on_commit=False) and the connection goes back to the pool while
    # the handler reads Optuna; a handler that writes starts its own transaction.
    session.commit()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no sweep with id {sweep_id!r}; "
                            "`hpscape list` (GET /api/v1/sweeps) shows the ids")
    return row


SweepDep = Annotated[SweepRow, Depends(get_readable_sweep)]

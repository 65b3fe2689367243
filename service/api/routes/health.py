"""Liveness for load balancers and people: is the database reachable and migrated, is the Ray cluster reachable.

Without a token the answer says only ok or not and a generic reason; the details (the database's error, which
names its host and database, the Ray address) are for callers with a valid token. /healthz never waits for the
request threads or the request connection pool: it probes on an engine and in threads of its own, one probe at a
time (requests arriving meanwhile share its result), and answers within a few seconds even when the database hangs.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit
from weakref import WeakKeyDictionary

import anyio
from anyio.lowlevel import RunVar
from fastapi import APIRouter, Depends, Request, Response, status
from sqlalchemy import text
from sqlalchemy.orm import Session

from hpscape.service.api.schemas import HealthCheck, HealthOut
from hpscape.service.api.state import ServiceState
from hpscape.service.auth import authenticate, cached_caller, matches_secret
from hpscape.service.db.migrate import schema_problem

router = APIRouter(tags=["health"])
T = TypeVar("T")

_RAY_TIMEOUT_S = 1.0
_PROBE_TIMEOUT_S = 6.0  # the health engine's connect (3 s) and statement (3 s) timeouts fit in it
_DEFAULT_PORTS = {"ray": 10001, "http": 8265, "https": 8265}


@dataclass(frozen=True)
class _Check:
    ok: bool
    summary: str  # for anyone: no host names, addresses or error text
    detail: str  # for token holders

    def out(self, detailed: bool) -> HealthCheck:
        return HealthCheck(ok=self.ok, detail=self.detail if detailed else self.summary)


async def _raw_state(request: Request) -> ServiceState:
    # Not deps.get_state: that migrates the database first, and health must answer even when it is down.
    return request.app.state.hpscape


def _first_line(exc: BaseException) -> str:
    text_ = str(exc).strip()
    return f"{type(exc).__name__}: {text_.splitlines()[0][:300] if text_ else ''}".rstrip(": ")


def _database(state: ServiceState) -> _Check:
    try:
        with state.health_engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            problem = schema_problem(connection)
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"; say which to token holders
        return _Check(False, "unreachable", _first_line(exc))
    if problem is not None:
        return _Check(False, "the database schema is missing or not migrated", problem)
    return _Check(True, "reachable", f"{state.health_engine.dialect.name} reachable, schema up to date")


def _known_token(state: ServiceState, token: str) -> bool:
    try:
        with Session(state.health_engine) as session:
            return authenticate(session, token, cache_s=state.settings.auth_cache_s) is not None
    except Exception:  # noqa: BLE001 - the database check passed; a failed lookup only hides the details
        return False


def ray_endpoint(address: str) -> tuple[str, int] | None:
    """(host, port) to probe for a Ray address (ray://HOST:PORT, http://HOST:PORT or HOST:PORT); None if unknown."""
    try:
        if "://" in address:
            parts = urlsplit(address)
            port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
            return (parts.hostname, port) if parts.hostname and port else None
        parts = urlsplit(f"//{address}")
        return (parts.hostname, parts.port) if parts.hostname and parts.port else None
    except ValueError:
        return None


def _ray(address: str | None) -> _Check:
    if not address:
        local = "local: each sweep's driver starts its own Ray on this machine"
        return _Check(True, local, local)
    if address == "auto":
        auto = "auto: the drivers join the Ray cluster running on this machine (not probed)"
        return _Check(True, auto, auto)
    endpoint = ray_endpoint(address)
    if endpoint is None:
        return _Check(False, "misconfigured", f"cannot read a host and port from the Ray address {address!r}")
    host, port = endpoint
    try:
        with socket.create_connection((host, port), timeout=_RAY_TIMEOUT_S):
            pass
    except OSError as exc:
        return _Check(False, "unreachable", f"Ray at {host}:{port} is not reachable: {exc}")
    return _Check(True, "reachable", f"Ray at {host}:{port} accepts connections")


class _Probe:
    """One run of the checks; requests that arrive while it runs share its result instead of queueing their own."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.result: tuple[_Check, _Check] | None = None


_RUNNING: RunVar[WeakKeyDictionary[ServiceState, _Probe]] = RunVar("hpscape_health_probe")


def _checks(state: ServiceState) -> tuple[_Check, _Check]:
    return _database(state), _ray(state.settings.ray_address)


async def _in_health_thread(state: ServiceState, func: Callable[..., T], *args: Any) -> T | None:
    """`func(*args)` in a health thread; None if it takes longer than _PROBE_TIMEOUT_S (left to finish alone)."""
    with anyio.move_on_after(_PROBE_TIMEOUT_S):
        return await anyio.to_thread.run_sync(func, *args, limiter=state.health_limiter(), abandon_on_cancel=True)
    return None


async def _shared_checks(state: ServiceState) -> tuple[_Check, _Check]:
    running = _RUNNING.get(None)
    if running is None:
        running = WeakKeyDictionary()
        _RUNNING.set(running)
    probe = running.get(state)
    if probe is None:
        probe = running[state] = _Probe()
        try:
            # Shielded: others wait for this result, so a client that goes away must not cut the probe short.
            with anyio.CancelScope(shield=True):
                probe.result = await _in_health_thread(state, _checks, state)
        finally:
            del running[state]
            probe.done.set()
    else:
        await probe.done.wait()
    if probe.result is None:
        slow = f"no answer within {_PROBE_TIMEOUT_S:g} s"
        return _Check(False, "timed out", slow), _Check(False, "not checked", "not checked: " + slow)
    return probe.result


def _trusted_without_database(state: ServiceState, token: str) -> bool:
    # The seeded admin token, or a token verified moments ago: known even while the database is down.
    return matches_secret(token, state.settings.admin_token) or (
        state.settings.auth_cache_s > 0 and cached_caller(state.database_key, token) is not None)


@router.get(
    "/healthz",
    response_model=HealthOut,
    responses={503: {"model": HealthOut, "description": "the database or Ray is not reachable, or the database "
                                                          "is not migrated"}},
)
async def healthz(
    state: Annotated[ServiceState, Depends(_raw_state)], request: Request, response: Response
) -> HealthOut:
    """Whether the database (reachable, tables migrated) and the Ray cluster are fine: 200, or 503 with what is
    not. Needs no token; with a valid one (`Authorization: Bearer TOKEN`) the details say why (the database's
    error, the Ray address)."""
    database, ray = await _shared_checks(state)
    # Read by hand, not declared as security: health is open, a token (right or wrong) only adds details.
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    detailed = False
    if scheme.lower() == "bearer" and token.strip():
        detailed = _trusted_without_database(state, token.strip())
        if not detailed and database.ok:
            detailed = bool(await _in_health_thread(state, _known_token, state, token.strip()))
    ok = database.ok and ray.ok
    response.headers["Cache-Control"] = "no-store"
    if not ok:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return HealthOut(status="ok" if ok else "unavailable", database=database.out(detailed), ray=ray.out(detailed))

"""Liveness for load balancers and people: is the database reachable, is the Ray cluster reachable."""

from __future__ import annotations

import socket
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request, Response, status
from sqlalchemy import text

from hpscape.service.api.schemas import HealthCheck, HealthOut
from hpscape.service.api.state import ServiceState

router = APIRouter(tags=["health"])

_RAY_TIMEOUT_S = 1.0
_DEFAULT_PORTS = {"ray": 10001, "http": 8265, "https": 8265}


def _raw_state(request: Request) -> ServiceState:
    # Not deps.get_state: that migrates the database first, and health must answer even when it is down.
    return request.app.state.hpscape


def _database(state: ServiceState) -> HealthCheck:
    try:
        with state.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"; say which
        return HealthCheck(ok=False, detail=f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
    return HealthCheck(ok=True, detail=f"{state.engine.dialect.name} reachable")


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


def _ray(address: str | None) -> HealthCheck:
    if not address:
        return HealthCheck(ok=True, detail="local: each sweep's driver starts its own Ray on this machine")
    if address == "auto":
        return HealthCheck(ok=True,
                           detail="auto: the drivers join the Ray cluster running on this machine (not probed)")
    endpoint = ray_endpoint(address)
    if endpoint is None:
        return HealthCheck(ok=False, detail=f"cannot read a host and port from the Ray address {address!r}")
    host, port = endpoint
    try:
        with socket.create_connection((host, port), timeout=_RAY_TIMEOUT_S):
            pass
    except OSError as exc:
        return HealthCheck(ok=False, detail=f"Ray at {host}:{port} is not reachable: {exc}")
    return HealthCheck(ok=True, detail=f"Ray at {host}:{port} accepts connections")


@router.get(
    "/healthz",
    response_model=HealthOut,
    responses={503: {"model": HealthOut, "description": "the database or Ray is not reachable"}},
)
def healthz(state: Annotated[ServiceState, Depends(_raw_state)], response: Response) -> HealthOut:
    """Whether the database and the Ray cluster are reachable: 200, or 503 with what is down."""
    database, ray = _database(state), _ray(state.settings.ray_address)
    ok = database.ok and ray.ok
    if not ok:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return HealthOut(status="ok" if ok else "unavailable", database=database, ray=ray)

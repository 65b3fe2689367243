"""The FastAPI controller: REST API, sweep queue dispatcher, authentication."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from hpscape.landscapes import SweepSpec
from hpscape.service.api.errors import MAX_BODY_BYTES, BodyLimitMiddleware, RequestIdMiddleware, install_error_handlers
from hpscape.service.api.routes import health, landscape, pages, sweeps, trials, views
from hpscape.service.api.schemas import PresetSubmission
from hpscape.service.api.state import ServiceState
from hpscape.service.queue import Launcher
from hpscape.service.settings import Settings, load_settings

__all__ = ["create_app"]

log = logging.getLogger("hpscape.api")

_DESCRIPTION = """Hyperparameter-landscape sweeps (learning rate x weight decay), L2 vs decoupled weight decay.

Submit a sweep (`POST /api/v1/sweeps`), follow it (`GET /api/v1/sweeps/{id}`), read its trials or landscape, cancel it.
Send `Authorization: Bearer TOKEN` (`hpscape token create NAME`); reads are open when HPSCAPE_PUBLIC_READ=true.
"""


def _routers() -> list[Any]:
    return [health.router, sweeps.router, trials.router, landscape.router, views.router, pages.router]


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the SweepSpec and PresetSubmission bodies the submit endpoint parses itself."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        _, defs = models_json_schema(
            [(SweepSpec, "validation"), (PresetSubmission, "validation")],
            ref_template="#/components/schemas/{model}",
        )
        schema.setdefault("components", {}).setdefault("schemas", {}).update(defs.get("$defs", {}))
        app.openapi_schema = schema
    return app.openapi_schema


def create_app(
    settings: Settings | None = None, *, dispatch: bool = True, launcher: Launcher | None = None
) -> FastAPI:
    """The controller app. `dispatch=False` serves the API without launching sweeps (tests, read replicas);
    `launcher` replaces the detached-subprocess launcher (tests)."""
    settings = settings or load_settings()
    state = ServiceState(settings, dispatch=dispatch, launcher=launcher)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        state.start()  # migrations, admin token, then the dispatcher (which reconciles running sweeps first)
        try:
            yield
        finally:
            state.stop()

    app = FastAPI(title="hpscape", version="0.1.0", description=_DESCRIPTION, lifespan=lifespan)
    app.state.hpscape = state
    app.add_middleware(BodyLimitMiddleware, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(RequestIdMiddleware)  # outermost: every response has an id, every unhandled error a JSON 500
    install_error_handlers(app)
    for router in _routers():
        app.include_router(router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app

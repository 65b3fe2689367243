"""Uniform JSON errors: a body-size limit (413), domain errors (409, 422), an unreachable database (503)."""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, OperationalError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hpscape.service.sweeps import InputError, StateConflict

__all__ = ["MAX_BODY_BYTES", "BodyLimitMiddleware", "install_error_handlers"]

log = logging.getLogger("hpscape.api")

MAX_BODY_BYTES = 1 << 20  # 1 MiB: fig2's spec is about 2 KiB


def _json_error(status_code: int, loc: list[str | int], msg: str, kind: str) -> bytes:
    return json.dumps({"detail": [{"loc": loc, "msg": msg, "type": kind}]}).encode()


class BodyLimitMiddleware:
    """Answers 413 for request bodies over `max_bytes`, before any of it is parsed.

    The body is read here in full (it is at most `max_bytes`) and replayed to the app, so chunked uploads without
    a Content-Length are limited as well.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self._reply(send, 400, ["header", "Content-Length"], "not an integer", "value_error")
                    return
        if declared is not None and declared > self.max_bytes:
            await self._too_large(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                # The client went away before sending the body; let the app see that.
                await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], receive), send)

    async def _too_large(self, send: Send) -> None:
        await self._reply(send, 413, ["body"], f"the request body is larger than {self.max_bytes} bytes "
                          f"({self.max_bytes // 1024} KiB); a sweep spec is a few KiB", "too_large")

    @staticmethod
    async def _reply(send: Send, code: int, loc: list[str | int], msg: str, kind: str) -> None:
        payload = _json_error(code, loc, msg, kind)
        await send({"type": "http.response.start", "status": code,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InputError)
    async def _input_error(_request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": [p.to_dict() for p in exc.problems]},
                            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)

    @app.exception_handler(StateConflict)
    async def _conflict(_request: Request, exc: StateConflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_409_CONFLICT)

    @app.exception_handler(DataError)
    async def _bad_value(_request: Request, exc: DataError) -> JSONResponse:
        # A safety net: inputs are validated first, but a value the database cannot store is the client's.
        log.warning("database rejected a request value: %s", str(exc).splitlines()[0])
        return JSONResponse({"detail": [{"loc": ["request"], "msg": "a value in the request cannot be stored or "
                                         "searched for (e.g. a NUL character)", "type": "value_error"}]},
                            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)

    @app.exception_handler(OperationalError)
    async def _database_down(_request: Request, exc: OperationalError) -> JSONResponse:
        log.error("database error: %s", exc)
        return JSONResponse({"detail": "the database is unreachable or overloaded; retry shortly "
                             "(GET /healthz shows what is down)"},
                            status_code=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "5"})

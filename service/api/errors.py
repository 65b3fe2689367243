"""Uniform JSON errors: a body-size limit (413), domain errors (409, 422), an unreachable database (503), and
anything unexpected (500 with a request id, logged with its traceback)."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterator

import psycopg
from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hpscape.service.sweeps import InputError, StateConflict

__all__ = [
    "MAX_BODY_BYTES",
    "REQUEST_ID_HEADER",
    "BodyLimitMiddleware",
    "RequestIdMiddleware",
    "install_error_handlers",
    "is_database_unavailable",
    "is_unstorable_value",
]

log = logging.getLogger("hpscape.api")

MAX_BODY_BYTES = 1 << 20  # 1 MiB: fig2's spec is about 2 KiB
REQUEST_ID_HEADER = "X-Request-ID"
RETRY_AFTER_S = 5
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# Raised when the database cannot be reached or the pool has no connection to give: the client may retry.
_UNAVAILABLE = (OperationalError, psycopg.OperationalError, PoolTimeout)


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


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, what it was raised from or during, and the members of exception groups (each once)."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)


def is_database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` comes from a database that is down or overloaded (e.g. Optuna's StorageInternalError from an
    OperationalError), rather than from a bug."""
    return any(isinstance(e, _UNAVAILABLE) for e in _causes(exc))


def is_unstorable_value(exc: BaseException) -> bool:
    """Whether the database refused a value of the request (e.g. Optuna's StorageInternalError from a DataError)."""
    return any(isinstance(e, DataError) for e in _causes(exc))


def _unstorable_response() -> JSONResponse:
    return JSONResponse({"detail": [{"loc": ["request"], "msg": "a value in the request cannot be stored or "
                                     "searched for (e.g. a NUL character, or a number out of range)",
                                     "type": "value_error"}]},
                        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


def _unavailable_response() -> JSONResponse:
    return JSONResponse({"detail": "the database is unreachable or overloaded; retry shortly "
                         "(GET /healthz shows what is down)"},
                        status_code=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": str(RETRY_AFTER_S)})


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


class RequestIdMiddleware:
    """Gives every request an id (the client's X-Request-ID if it is sane, or a new one), sends it back in the
    X-Request-ID header, and turns an exception no handler took into a JSON 500 naming that id, logged with its
    traceback (or a 503 with Retry-After when the database is what failed)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                request_id = candidate if _CLIENT_REQUEST_ID.fullmatch(candidate) else None
                break
        request_id = request_id or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = False
        header = (REQUEST_ID_HEADER.lower().encode(), request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            method, path = scope.get("method", "?"), scope.get("path", "?")
            if is_database_unavailable(exc):
                log.error("request %s %s %s: database unavailable: %s", request_id, method, path, _first_line(exc))
                response = _unavailable_response()
            elif is_unstorable_value(exc):
                # A safety net: inputs are validated first, but a value the database cannot take is the client's.
                log.warning("request %s %s %s: database rejected a request value: %s", request_id, method, path,
                            _first_line(exc))
                response = _unstorable_response()
            else:
                log.error("request %s %s %s failed", request_id, method, path, exc_info=exc)
                response = JSONResponse(
                    {"detail": f"internal server error (request id {request_id}: the server log has the details)",
                     "request_id": request_id},
                    status_code=status.HTTP_500_INTERNAL_SERVER_ERROR)
            if started:
                return  # the response was under way: nothing more can be sent; it is logged
            await response(scope, receive, send_with_id)


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
        log.warning("database rejected a request value: %s", _first_line(exc))
        return _unstorable_response()

    async def _database_down(request: Request, exc: Exception) -> JSONResponse:
        log.error("request %s %s %s: database unavailable: %s", getattr(request.state, "request_id", "-"),
                  request.method, request.url.path, _first_line(exc))
        return _unavailable_response()

    for kind in _UNAVAILABLE:
        app.add_exception_handler(kind, _database_down)

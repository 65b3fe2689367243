"""A small REST client of the hpscape server (httpx), used by `hpscape submit/list/status/cancel/export`."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

__all__ = ["ApiError", "Client", "ServerUnreachable", "describe_detail"]

_RETRIES = 2  # for submissions that may or may not have arrived: the idempotency key makes a retry safe


class ServerUnreachable(ConnectionError):
    """Nothing answers at the server URL (or not in time: `timed_out`)."""

    def __init__(self, url: str, reason: str, *, timed_out: bool = False) -> None:
        super().__init__(
            f"cannot reach the hpscape server at {url} ({reason}): start one with `hpscape serve`, or point "
            "HPSCAPE_URL (or --url) at a running server"
        )
        self.timed_out = timed_out


class ApiError(RuntimeError):
    """The server answered with an error status; `message` is its explanation, one problem per line."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code
        self.message = message


def describe_detail(payload: Any) -> str:
    """The server's ``detail`` as text: a string, or one ``field: message`` line per problem."""
    detail = payload.get("detail", payload) if isinstance(payload, dict) else payload
    if isinstance(detail, list):
        lines = []
        for item in detail:
            if not isinstance(item, dict):
                lines.append(str(item))
                continue
            loc = [str(p) for p in item.get("loc", []) if p not in ("body",)]
            where = ".".join(loc)
            lines.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
        return "\n".join(lines)
    return str(detail)


class Client:
    """Calls the REST API at `url` with an optional bearer `token`."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise ServerUnreachable(self.url, str(exc) or "connection refused") from None
        except (httpx.TimeoutException, httpx.RemoteProtocolError) as exc:
            raise ServerUnreachable(self.url, f"timed out: {exc}", timed_out=True) from None
        if response.status_code >= 400:
            try:
                message = describe_detail(response.json())
            except ValueError:
                message = response.text[:500] or response.reason_phrase
            raise ApiError(response.status_code, message)
        return response

    def submit(self, body: dict[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Queue a sweep (a spec or {"preset": ...}); retried safely on a lost response."""
        key = idempotency_key or str(uuid.uuid4())
        for attempt in range(_RETRIES + 1):
            try:
                return self._request("POST", "/api/v1/sweeps", json=body, headers={"Idempotency-Key": key}).json()
            except ServerUnreachable as exc:
                # A timeout may hide a sweep that was created: the same key makes the retry return that one.
                if not exc.timed_out or attempt == _RETRIES:
                    raise
        raise AssertionError("unreachable")

    def list(self, *, status: str | None = None, owner: str | None = None, limit: int = 50,
             offset: int = 0) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status:
            params["status"] = status
        if owner:
            params["owner"] = owner
        return self._request("GET", "/api/v1/sweeps", params=params).json()

    def get(self, sweep_id: str) -> dict[str, Any]:
        return self._request("GET", f"/api/v1/sweeps/{sweep_id}").json()

    def cancel(self, sweep_id: str) -> dict[str, Any]:
        return self._request("POST", f"/api/v1/sweeps/{sweep_id}/cancel").json()

    def trials(self, sweep_id: str, **params: Any) -> dict[str, Any]:
        return self._request("GET", f"/api/v1/sweeps/{sweep_id}/trials", params=params).json()

    def export_csv(self, sweep_id: str) -> str:
        return self._request("GET", f"/api/v1/sweeps/{sweep_id}/export.csv").text

    def export_json(self, sweep_id: str) -> dict[str, Any]:
        return self._request("GET", f"/api/v1/sweeps/{sweep_id}/export.json").json()

    def export_figure(self, sweep_id: str, fmt: str, *, view: str = "landscape", **params: Any) -> bytes:
        """The landscape (or another view: facets, curves, budget) as html, png, svg or pdf bytes."""
        path = ("landscape/export" if view == "landscape" else f"views/{view}/export")
        # Drawing an image starts a browser: give it longer than a plain read.
        return self._request("GET", f"/api/v1/sweeps/{sweep_id}/{path}", params={"format": fmt, **params},
                             timeout=120).content

    def health(self) -> dict[str, Any]:
        """The /healthz body (also when it says 503)."""
        try:
            return self._http.get("/healthz").json()
        except httpx.TransportError as exc:
            raise ServerUnreachable(self.url, str(exc) or type(exc).__name__) from None

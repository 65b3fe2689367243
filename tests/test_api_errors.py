"""Errors no handler expected: a JSON 500 with a request id (logged with its traceback), and a database that goes
away while the controller serves: 503 with Retry-After, never a 500, and back to normal once it returns."""

from __future__ import annotations

import logging
import socket

import psycopg
import pytest
from fastapi import Request

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"  # the server of conftest's postgres_url
SWEEPS = "/api/v1/sweeps"
TINY = {"name": "tiny", "dataset": "synthetic", "model": "shake_shake_8_2x16d", "variants": ["sgd"], "epochs": 1,
        "batch_size": 32, "grid": {"lr": [0.1], "weight_decay": [0.0]}}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unexpected_error_is_a_json_500_with_a_request_id_and_a_logged_traceback(api, caplog):
    def broken() -> None:
        raise RuntimeError("internal detail the client must not see")

    api.app.add_api_route("/api/v1/broken", broken, methods=["GET"])
    with caplog.at_level(logging.ERROR, logger="hpscape.api"):
        # The app's own TestClient re-raises what reaches the server: an answer means the error was handled.
        response = api.client.get("/api/v1/broken")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    request_id = response.json()["request_id"]
    assert response.headers["X-Request-ID"] == request_id and request_id in response.json()["detail"]
    assert "internal detail" not in response.text
    logged = [r for r in caplog.records if request_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None and logged[0].exc_info[0] is RuntimeError


def test_every_response_has_a_request_id_and_a_sane_client_one_is_kept(api):
    assert len(api.client.get("/healthz").headers["X-Request-ID"]) == 32
    assert api.client.get("/healthz", headers={"X-Request-ID": "lb-1234.5"}).headers["X-Request-ID"] == "lb-1234.5"
    replaced = api.client.get("/healthz", headers={"X-Request-ID": "no spaces <or> markup"}).headers["X-Request-ID"]
    assert replaced != "no spaces <or> markup" and len(replaced) == 32


def test_an_operational_error_straight_from_the_driver_is_503_with_retry_after(api):
    port = closed_port()

    def unreachable() -> None:
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/x", connect_timeout=2).close()

    api.app.add_api_route("/api/v1/unreachable", unreachable, methods=["GET"])
    response = api.client.get("/api/v1/unreachable")
    assert response.status_code == 503 and response.headers["Retry-After"] == "5", response.text
    assert str(port) not in response.text


def _allow_connections(database: str, allow: bool) -> None:
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(allow).lower()}')
        if not allow:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [database])


@pytest.mark.postgres
def test_a_database_that_goes_away_while_serving_is_503_with_retry_after_then_recovers(make_api, postgres_url,
                                                                                      fake_progress):
    api = make_api(postgres_url)
    sweep = api.client.post(SWEEPS, json=TINY, headers=api.auth("alice")).json()
    fake_progress(postgres_url, sweep["record_name"], TINY, complete=1)

    def optuna_studies(request: Request) -> int:
        return len(request.app.state.hpscape.optuna().get_all_studies())

    api.app.add_api_route("/api/v1/studies", optuna_studies, methods=["GET"])
    for path in (SWEEPS, f"{SWEEPS}/{sweep['id']}", "/api/v1/studies"):
        assert api.client.get(path, headers=api.auth("bob")).status_code == 200, path
    database = postgres_url.rsplit("/", 1)[-1]
    _allow_connections(database, False)
    try:
        # Each fails in another place: the sweep row (the service's engine), Optuna's storage (which wraps the
        # OperationalError in its StorageInternalError), a write, the token lookup (a token not verified yet).
        for method, path, who in (("GET", SWEEPS, "bob"), ("GET", f"{SWEEPS}/{sweep['id']}", "bob"),
                                  ("GET", "/api/v1/studies", "bob"), ("POST", f"{SWEEPS}/{sweep['id']}/cancel",
                                                                      "alice"), ("GET", SWEEPS, "root")):
            response = api.client.request(method, path, headers=api.auth(who))
            assert response.status_code == 503, f"{method} {path}: {response.status_code} {response.text}"
            assert response.headers["Retry-After"] == "5" and database not in response.text
        assert api.client.get("/healthz").status_code == 503
    finally:
        _allow_connections(database, True)
    assert api.client.get(f"{SWEEPS}/{sweep['id']}", headers=api.auth("bob")).status_code == 200
    assert api.client.get("/healthz").status_code == 200


@pytest.mark.postgres
def test_a_number_the_database_cannot_store_is_a_422_not_a_500(make_api, postgres_url, fake_progress):
    api = make_api(postgres_url)
    sweep = api.client.post(SWEEPS, json=TINY, headers=api.auth("alice")).json()
    fake_progress(postgres_url, sweep["record_name"], TINY, complete=1)
    # Past PostgreSQL's integer: Optuna's StorageInternalError wraps the DataError; still the client's value.
    response = api.client.get(f"{SWEEPS}/{sweep['id']}/landscape/trials", headers=api.auth("bob"),
                              params={"variant": "sgd", "numbers": str(2**31)})
    assert response.status_code == 422, response.text

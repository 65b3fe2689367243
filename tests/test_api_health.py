"""GET /healthz: the database (reachable, migrated) and the Ray cluster; what it tells anonymous callers and token
holders; that it answers while requests hold every connection; and the API when the database is down."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from hpscape.landscapes.record import make_storage
from hpscape.service.api import create_app
from hpscape.service.api.routes.health import ray_endpoint
from hpscape.service.api.state import RESERVED_CONNECTIONS
from hpscape.service.db import VERSION_TABLE, make_engine, upgrade
from hpscape.service.settings import Settings

ADMIN_TOKEN = "health-test-admin-token-0123456789"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def unstarted_app(storage: str, tmp_path, **overrides):
    """The app without its lifespan: nothing migrates the database or seeds a token."""
    values = dict(storage=storage, runs_dir=tmp_path / "runs", ray_address=None, public_read=False,
                  admin_token=ADMIN_TOKEN)
    values.update(overrides)
    app = create_app(Settings(**values), dispatch=False)
    return app, TestClient(app, raise_server_exceptions=False)


def database_name(storage: str) -> str:
    return urlsplit(storage).path.rsplit("/", 1)[-1]


def test_healthy_with_a_local_ray(api):
    response = api.client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["database"]["ok"] and body["ray"]["ok"]
    assert body["ray"]["detail"].startswith("local")
    assert response.headers["Cache-Control"] == "no-store"


def test_anonymous_callers_get_no_database_details_and_token_holders_do(api, storage_url):
    anonymous = api.client.get("/healthz").json()
    assert anonymous["database"] == {"ok": True, "detail": "reachable"}
    detailed = api.client.get("/healthz", headers=api.auth("bob")).json()
    assert detailed["database"]["ok"] and detailed["database"]["detail"].startswith(("sqlite", "postgresql"))
    # A wrong token is no error here (load balancers send none), but it sees no more than anonymous callers.
    assert api.client.get("/healthz", headers=api.auth("mallory")).json() == anonymous


def test_an_unreachable_ray_cluster_is_503_and_says_where_to_token_holders_only(make_api, tmp_path):
    port = closed_port()
    api = make_api(f"sqlite:///{tmp_path / 'h.db'}", ray_address=f"ray://127.0.0.1:{port}")
    response = api.client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable" and body["database"]["ok"] and not body["ray"]["ok"]
    assert str(port) not in response.text and "127.0.0.1" not in response.text
    detailed = api.client.get("/healthz", headers=api.auth("alice"))
    assert detailed.status_code == 503 and f"127.0.0.1:{port}" in detailed.json()["ray"]["detail"]


def test_a_listening_ray_address_is_healthy(make_api, tmp_path):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        api = make_api(f"sqlite:///{tmp_path / 'h.db'}", ray_address=f"127.0.0.1:{port}")
        response = api.client.get("/healthz", headers=api.auth("alice"))
    assert response.status_code == 200 and "accepts connections" in response.json()["ray"]["detail"]


@pytest.mark.parametrize("address,endpoint", [
    ("ray://head:10001", ("head", 10001)), ("ray://head", ("head", 10001)), ("head:6379", ("head", 6379)),
    ("http://head:8265", ("head", 8265)), ("[::1]:6379", ("::1", 6379)), ("head", None), ("ray://:x", None),
])
def test_ray_addresses_are_read_as_host_and_port(address, endpoint):
    assert ray_endpoint(address) == endpoint


def test_a_database_that_is_down_is_503_everywhere_not_500_and_health_names_no_host(tmp_path):
    port = closed_port()
    app, client = unstarted_app(f"postgresql+psycopg://postgres@127.0.0.1:{port}/secretdb", tmp_path)
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.json()["database"] == {"ok": False, "detail": "unreachable"}
    assert "secretdb" not in health.text and str(port) not in health.text and "127.0.0.1" not in health.text
    # The seeded admin token is known without the database: it gets the error, which names the server.
    detailed = client.get("/healthz", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert detailed.status_code == 503 and "OperationalError" in detailed.json()["database"]["detail"]
    assert str(port) in detailed.json()["database"]["detail"]
    response = client.get("/api/v1/sweeps", headers={"Authorization": "Bearer whatever"})
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert "database" in response.json()["detail"]
    app.state.hpscape.close()


def test_a_database_that_never_answers_does_not_hang_health(tmp_path):
    # A server that accepts TCP connections and never speaks: connecting waits for the health engine's timeout.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        app, client = unstarted_app(f"postgresql+psycopg://postgres@127.0.0.1:{silent.getsockname()[1]}/x", tmp_path)
        started = time.monotonic()
        health = client.get("/healthz")
        elapsed = time.monotonic() - started
    assert health.status_code == 503 and not health.json()["database"]["ok"]
    assert elapsed < 30, f"/healthz took {elapsed:.0f} s"
    app.state.hpscape.close()


def test_a_database_that_was_never_migrated_is_unhealthy(storage_url, tmp_path):
    app, client = unstarted_app(storage_url, tmp_path)
    make_engine(storage_url).dispose()  # the database exists (created by the fixture), with no table in it
    health = client.get("/healthz")
    assert health.status_code == 503, health.text
    assert health.json()["database"] == {"ok": False, "detail": "the database schema is missing or not migrated"}
    if storage_url.startswith("postgresql"):
        assert database_name(storage_url) not in health.text
    detailed = client.get("/healthz", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
    assert "hpscape_sweeps" in detailed["database"]["detail"] and "studies" in detailed["database"]["detail"]
    app.state.hpscape.close()


def test_missing_optuna_tables_or_an_old_revision_are_unhealthy_until_migrated(storage_url, tmp_path):
    app, client = unstarted_app(storage_url, tmp_path)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    engine = make_engine(storage_url)
    upgrade(engine)  # the service's tables only: Optuna's are missing
    health = client.get("/healthz", headers=admin)
    assert health.status_code == 503 and "studies" in health.json()["database"]["detail"], health.text
    make_storage(storage_url).engine.dispose()  # Optuna creates its tables
    assert client.get("/healthz").status_code == 200
    with engine.begin() as connection:
        connection.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '0001'"))
    health = client.get("/healthz", headers=admin)
    assert health.status_code == 503 and "revision 0001" in health.json()["database"]["detail"], health.text
    with engine.begin() as connection:
        connection.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = 'ffffffffffff'"))
    # A revision this controller does not know was written by a newer one: still healthy.
    assert client.get("/healthz").status_code == 200
    engine.dispose()
    app.state.hpscape.close()


def test_health_answers_while_requests_hold_every_pooled_connection(make_api, storage_url):
    api = make_api(storage_url, db_pool_size=2)
    engine = api.state.engine
    held = [engine.connect() for _ in range(api.settings.db_pool_size + RESERVED_CONNECTIONS)]
    try:
        started = time.monotonic()
        response = api.client.get("/healthz")
        elapsed = time.monotonic() - started
    finally:
        for connection in held:
            connection.close()
    assert response.status_code == 200, response.text
    assert elapsed < 10, f"/healthz waited {elapsed:.0f} s for the request pool"

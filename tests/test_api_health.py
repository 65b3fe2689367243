"""GET /healthz: the database and the Ray cluster, each reachable or not; and the API when the database is down."""

from __future__ import annotations

import socket

import pytest
from fastapi.testclient import TestClient

from hpscape.service.api import create_app
from hpscape.service.api.routes.health import ray_endpoint
from hpscape.service.settings import Settings


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_healthy_with_a_local_ray(api):
    response = api.client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["database"]["ok"] and body["ray"]["ok"]
    assert body["ray"]["detail"].startswith("local")


def test_an_unreachable_ray_cluster_is_503_and_says_where(make_api, tmp_path):
    port = closed_port()
    api = make_api(f"sqlite:///{tmp_path / 'h.db'}", ray_address=f"ray://127.0.0.1:{port}")
    response = api.client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable" and body["database"]["ok"] and not body["ray"]["ok"]
    assert f"127.0.0.1:{port}" in body["ray"]["detail"]


def test_a_listening_ray_address_is_healthy(make_api, tmp_path):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        api = make_api(f"sqlite:///{tmp_path / 'h.db'}", ray_address=f"127.0.0.1:{port}")
        response = api.client.get("/healthz")
    assert response.status_code == 200 and "accepts connections" in response.json()["ray"]["detail"]


@pytest.mark.parametrize("address,endpoint", [
    ("ray://head:10001", ("head", 10001)), ("ray://head", ("head", 10001)), ("head:6379", ("head", 6379)),
    ("http://head:8265", ("head", 8265)), ("[::1]:6379", ("::1", 6379)), ("head", None), ("ray://:x", None),
])
def test_ray_addresses_are_read_as_host_and_port(address, endpoint):
    assert ray_endpoint(address) == endpoint


def test_a_database_that_is_down_is_503_everywhere_not_500(tmp_path):
    settings = Settings(storage=f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/none",
                        runs_dir=tmp_path / "runs", ray_address=None, public_read=False, admin_token=None)
    app = create_app(settings, dispatch=False)
    client = TestClient(app, raise_server_exceptions=False)  # no lifespan: the app starts without its database
    health = client.get("/healthz")
    assert health.status_code == 503 and not health.json()["database"]["ok"]
    assert "OperationalError" in health.json()["database"]["detail"]
    response = client.get("/api/v1/sweeps", headers={"Authorization": "Bearer whatever"})
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert "database" in response.json()["detail"]
    app.state.hpscape.close()

"""Shared fixtures. Keep one section per resource; helpers are underscored."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# ---------------------------------------------------------------------------------------------
# Databases: a fresh Optuna storage URL per test, on SQLite and on PostgreSQL.

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
_POSTGRES_HELP = (
    "PostgreSQL on 127.0.0.1:5432 is required for the postgres-marked tests (user postgres, "
    "trust auth). Start it with: pg_ctlcluster --skip-systemctl-redirect 15 main start"
)


@contextmanager
def _fresh_postgres_database() -> Iterator[str]:
    """Create a uniquely named database, yield its SQLAlchemy URL, drop it afterwards."""
    import psycopg

    name = f"hpscape_test_{uuid.uuid4().hex[:16]}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"{_POSTGRES_HELP}\n(connection failed: {exc})", pytrace=False)
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        finally:
            # FORCE ends connections a test's storage pool still holds.
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL: a SQLite file under tmp_path, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'optuna.db'}"
    else:
        with _fresh_postgres_database() as url:
            yield url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database URL (for tests that only make sense on a server database)."""
    with _fresh_postgres_database() as url:
        yield url


# ---------------------------------------------------------------------------------------------
# The REST controller (service/): an app on a fresh database, dispatch off, with three tokens.

ADMIN, ALICE, BOB = "root", "alice", "bob"


class ApiHarness:
    """A started app (TestClient inside its lifespan) and the secrets of tokens root (admin), alice and bob."""

    def __init__(self, client, app, settings, tokens: dict[str, str]) -> None:
        self.client, self.app, self.settings, self.tokens = client, app, settings, tokens

    def auth(self, who: str | None) -> dict[str, str]:
        """Headers for token `who` (None: no header; any unknown name: a well-formed but wrong token)."""
        if who is None:
            return {}
        return {"Authorization": f"Bearer {self.tokens.get(who, 'x' * 43)}"}

    @property
    def state(self):
        return self.app.state.hpscape


def service_settings(storage_url: str, tmp_path: Path, **overrides):
    """Settings for a test controller; every field a test could inherit from HPSCAPE_* is set explicitly."""
    from hpscape.service.settings import Settings

    values = dict(
        storage=storage_url, runs_dir=tmp_path / "runs", data_dir=tmp_path / "data", ray_address=None,
        public_read=False, admin_token=None, max_running_sweeps=1, status_cache_s=0.0, dispatch_interval_s=0.2,
        cancel_grace_s=5.0,
    )
    values.update(overrides)
    return Settings(**values)


@contextmanager
def _api_factory(tmp_path: Path):
    from fastapi.testclient import TestClient

    from hpscape.service.api import create_app
    from hpscape.service.auth import create_token

    opened = []

    def factory(storage_url: str, *, dispatch: bool = False, launcher=None, **overrides) -> ApiHarness:
        settings = service_settings(storage_url, tmp_path, **overrides)
        app = create_app(settings, dispatch=dispatch, launcher=launcher)
        client = TestClient(app)
        client.__enter__()
        opened.append((client, app))
        tokens = {}
        with app.state.hpscape.sessions() as session:
            for name in (ADMIN, ALICE, BOB):
                tokens[name] = create_token(session, name, admin=name == ADMIN)
        return ApiHarness(client, app, settings, tokens)

    try:
        yield factory
    finally:
        for client, app in reversed(opened):
            client.__exit__(None, None, None)
            app.state.hpscape.close()


@pytest.fixture
def make_api(tmp_path: Path):
    """make_api(storage_url, dispatch=False, launcher=None, **settings) -> ApiHarness, closed at teardown."""
    with _api_factory(tmp_path) as factory:
        yield factory


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def shared_api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiHarness]:
    """One controller per test module and backend (dispatch off), for tests that leave no state behind or only
    add sweeps of their own; much faster than a fresh database per parametrized case."""
    tmp_path = tmp_path_factory.mktemp("shared_api")
    if request.param == "sqlite":
        with _api_factory(tmp_path) as factory:
            yield factory(f"sqlite:///{tmp_path / 'optuna.db'}")
    else:
        with _fresh_postgres_database() as url, _api_factory(tmp_path) as factory:
            yield factory(url)


@pytest.fixture
def api(storage_url: str, make_api) -> ApiHarness:
    """The controller on SQLite and on PostgreSQL, dispatch off."""
    return make_api(storage_url)


def write_fake_progress(storage_url: str, record_name: str, spec_json: dict, *, complete: int, running: int = 0,
                        fail: int = 0, diverged: int = 0) -> None:
    """Record trials of a sweep's studies the way workers would, without training: per variant, `complete`
    finished trials (value 0.5 - number / 100, so the highest-numbered healthy one is best), then `diverged`
    diverged ones, `running` claimed and left RUNNING, `fail` failed ones."""
    from hpscape.landscapes import SweepSpec
    from hpscape.landscapes.record import claim_next, enqueue_cells, fail_trial, finish_trial, make_storage, open_study

    spec = SweepSpec.model_validate(spec_json).replace(name=record_name)
    storage = make_storage(storage_url)
    for variant in spec.variants:
        study = open_study(storage, record_name, variant)
        enqueue_cells(study, spec.cells(variant), values_of=lambda c, v=variant: spec.trial_values(v, c.params))
        for _ in range(complete):
            number = claim_next(study)
            finish_trial(study, number, {"test_error": 0.5 - number / 100, "test_loss": 1.0}, objective="test_error")
        for _ in range(diverged):
            number = claim_next(study)
            finish_trial(study, number, {"test_error": float("nan"), "test_loss": float("nan")},
                         objective="test_error")
        for _ in range(running):
            claim_next(study)
        for _ in range(fail):
            fail_trial(study, claim_next(study), "boom")
    storage.engine.dispose()


@pytest.fixture
def fake_progress():
    """write_fake_progress, as a fixture (tests do not import conftest)."""
    return write_fake_progress

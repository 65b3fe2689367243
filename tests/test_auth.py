"""Authentication and authorization: the matrix of callers x endpoints, token storage, the seeded admin token."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select, text

from hpscape.service.auth import TokenError, authenticate, create_token, revoke_token, seed_admin_token
from hpscape.service.db.models import TokenRow

SWEEPS = "/api/v1/sweeps"
TINY = {"name": "tiny", "dataset": "synthetic", "model": "shake_shake_8_2x16d", "variants": ["sgd"], "epochs": 1,
        "batch_size": 32, "grid": {"lr": [0.1], "weight_decay": [0.0]}}

# Callers: no token, a well-formed token nobody holds, the sweep's owner (alice), someone else (bob), an admin.
NONE, WRONG, OWNER, OTHER, ADMIN = None, "mallory", "alice", "bob", "root"
READS = ["", "/trials", "/export.csv", "/export.json"]

# (endpoint, caller, expected status) with HPSCAPE_PUBLIC_READ off.
MATRIX = [
    *[(f"GET sweep{path}", caller, code) for path in READS
      for caller, code in ((NONE, 401), (WRONG, 401), (OWNER, 200), (OTHER, 200), (ADMIN, 200))],
    *[("GET list", caller, code) for caller, code in ((NONE, 401), (WRONG, 401), (OTHER, 200), (ADMIN, 200))],
    *[("POST submit", caller, code) for caller, code in ((NONE, 401), (WRONG, 401), (OTHER, 202), (ADMIN, 202))],
    *[("POST cancel", caller, code)
      for caller, code in ((NONE, 401), (WRONG, 401), (OTHER, 403), (OWNER, 202), (ADMIN, 202))],
]
# The same with HPSCAPE_PUBLIC_READ=true: anonymous reads pass, a bad token is still refused, writes need a token.
PUBLIC_MATRIX = [
    *[(f"GET sweep{path}", caller, code) for path in READS for caller, code in ((NONE, 200), (WRONG, 401))],
    ("GET list", NONE, 200), ("GET list", WRONG, 401),
    ("POST submit", NONE, 401), ("POST cancel", NONE, 401), ("POST cancel", OTHER, 403), ("POST cancel", OWNER, 202),
]


def call(api, endpoint: str, caller: str | None, sweep_id: str):
    headers = api.auth(caller)
    method, what = endpoint.split(" ")
    if what.startswith("sweep"):
        return api.client.get(f"{SWEEPS}/{sweep_id}{what[len('sweep'):]}", headers=headers)
    if what == "list":
        return api.client.get(SWEEPS, headers=headers)
    if what == "submit":
        return api.client.post(SWEEPS, json=TINY, headers=headers)
    assert what == "cancel"
    return api.client.post(f"{SWEEPS}/{sweep_id}/cancel", headers=headers)


def alices_sweep(api) -> str:
    response = api.client.post(SWEEPS, json=TINY, headers=api.auth(OWNER))
    assert response.status_code == 202, response.text
    return response.json()["id"]


def check(response, expected: int) -> None:
    assert response.status_code == expected, response.text
    if expected == 401:
        challenge = response.headers.get("WWW-Authenticate", "")
        assert challenge.startswith("Bearer"), response.headers
        assert "token" in response.json()["detail"]
    if expected == 403:
        assert "owner or an admin" in response.json()["detail"]


@pytest.mark.parametrize("endpoint,caller,expected", MATRIX, ids=[f"{e}-{c}-{x}" for e, c, x in MATRIX])
def test_auth_matrix(shared_api, endpoint, caller, expected):
    sweep_id = alices_sweep(shared_api)
    check(call(shared_api, endpoint, caller, sweep_id), expected)


@pytest.mark.parametrize("endpoint,caller,expected", PUBLIC_MATRIX, ids=[f"{e}-{c}-{x}" for e, c, x in PUBLIC_MATRIX])
def test_auth_matrix_with_public_read(shared_api, endpoint, caller, expected, monkeypatch):
    monkeypatch.setattr(shared_api.state.settings, "public_read", True)
    sweep_id = alices_sweep(shared_api)
    check(call(shared_api, endpoint, caller, sweep_id), expected)


def test_refused_requests_change_nothing(shared_api):
    sweep_id = alices_sweep(shared_api)
    before = shared_api.client.get(SWEEPS, headers=shared_api.auth(ADMIN)).json()["total"]
    for caller in (NONE, WRONG):
        assert call(shared_api, "POST submit", caller, sweep_id).status_code == 401
    assert call(shared_api, "POST cancel", OTHER, sweep_id).status_code == 403
    after = shared_api.client.get(f"{SWEEPS}/{sweep_id}", headers=shared_api.auth(ADMIN)).json()
    assert after["status"] == "queued" and not after["cancel_requested"]
    assert shared_api.client.get(SWEEPS, headers=shared_api.auth(ADMIN)).json()["total"] == before


def test_sweeps_belong_to_the_token_that_submitted_them(shared_api):
    response = shared_api.client.post(SWEEPS, json=TINY, headers=shared_api.auth(OTHER))
    assert response.json()["owner"] == OTHER


def test_malformed_authorization_headers_are_401(shared_api):
    sweep_id = alices_sweep(shared_api)
    for header in ("Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc", shared_api.tokens[OWNER],
                   f"Bearer {shared_api.tokens[OWNER]}x"):
        response = shared_api.client.get(f"{SWEEPS}/{sweep_id}", headers={"Authorization": header})
        assert response.status_code == 401, header


# --- tokens -----------------------------------------------------------------------------------------------------------
def test_only_the_sha256_of_a_token_is_stored(api):
    with api.state.sessions() as session:
        secret = create_token(session, "carol")
        stored = session.execute(text("SELECT * FROM hpscape_tokens WHERE name = 'carol'")).mappings().one()
    assert len(secret) >= 43  # token_urlsafe(32)
    assert secret not in {str(v) for v in stored.values()}
    assert stored["token_sha256"] == hashlib.sha256(secret.encode()).hexdigest()
    assert api.client.get(SWEEPS, headers={"Authorization": f"Bearer {secret}"}).status_code == 200


def test_token_names_are_unique_and_checked_and_revocation_is_immediate(api):
    with api.state.sessions() as session:
        with pytest.raises(TokenError, match="already exists"):
            create_token(session, "alice")
        for bad in ("", "a b", "x" * 65, "-lead", "name/slash"):
            with pytest.raises(TokenError, match="bad token name"):
                create_token(session, bad)
        revoke_token(session, "alice")
        with pytest.raises(TokenError, match="no token named"):
            revoke_token(session, "alice")
    response = api.client.get(SWEEPS, headers=api.auth("alice"))
    assert response.status_code == 401 and "invalid_token" in response.headers["WWW-Authenticate"]


def test_the_admin_token_from_settings_is_seeded_and_rotated(make_api, storage_url):
    first = "first-admin-token-0123456789"
    api = make_api(storage_url, admin_token=first)
    headers = {"Authorization": f"Bearer {first}"}
    sweep = api.client.post(SWEEPS, json=TINY, headers=api.auth(OWNER)).json()
    # The seeded token is an admin: it may cancel alice's sweep.
    assert api.client.post(f"{SWEEPS}/{sweep['id']}/cancel", headers=headers).status_code == 202
    with api.state.sessions() as session:
        seed_admin_token(session, first)  # again: nothing changes
        assert len(session.scalars(select(TokenRow).where(TokenRow.name == "admin")).all()) == 1
        seed_admin_token(session, "second-admin-token-0123456789")
        assert authenticate(session, first) is None
        caller = authenticate(session, "second-admin-token-0123456789")
        assert caller is not None and caller.is_admin and caller.name == "admin"
        with pytest.raises(TokenError, match="too short"):
            seed_admin_token(session, "short")

"""Authentication and authorization: the matrix of callers x endpoints, token storage, the seeded admin token."""

from __future__ import annotations

import hashlib
import time

import pytest
from sqlalchemy import select, text

from hpscape.service.auth import TokenError, authenticate, create_token, revoke_token, seed_admin_token
from hpscape.service.db.models import SweepRow, TokenRow

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


# --- owners: an immutable owner id per token, not the name ------------------------------------------------------------
def owner_id_of(api, name: str) -> str:
    with api.state.sessions() as session:
        return session.scalar(select(TokenRow.owner_id).where(TokenRow.name == name))


def sweep_row(api, sweep_id: str) -> SweepRow:
    with api.state.sessions() as session:
        return session.get(SweepRow, sweep_id)


def recreate(api, name: str) -> None:
    """Revoke token `name` and give a new token the same name; api.tokens[name] becomes the new secret."""
    with api.state.sessions() as session:
        revoke_token(session, name)
        api.tokens[name] = create_token(session, name)


def test_each_token_gets_its_own_owner_id_and_sweeps_record_it(api):
    ids = {name: owner_id_of(api, name) for name in (ADMIN, OWNER, OTHER)}
    assert all(ids.values()) and len(set(ids.values())) == 3
    sweep_id = alices_sweep(api)
    row = sweep_row(api, sweep_id)
    assert row.owner == OWNER and row.owner_id == ids[OWNER]
    assert api.client.get(f"{SWEEPS}/{sweep_id}", headers=api.auth(OTHER)).json()["owner"] == OWNER


def test_a_new_token_reusing_a_revoked_name_does_not_own_the_old_sweeps(api):
    old_sweep = alices_sweep(api)
    old_id = owner_id_of(api, OWNER)
    recreate(api, OWNER)
    assert owner_id_of(api, OWNER) != old_id
    with api.state.sessions() as session:
        new_alice = authenticate(session, api.tokens[OWNER])
        admin = authenticate(session, api.tokens[ADMIN])
    row = sweep_row(api, old_sweep)
    assert row.owner == OWNER and row.owner_id == old_id  # the display name stays, the owner does not change
    assert new_alice is not None and not new_alice.may_modify(row)
    assert admin is not None and admin.may_modify(row)
    # The new alice owns what it submits itself.
    new_sweep = alices_sweep(api)
    assert new_alice.may_modify(sweep_row(api, new_sweep))


def test_a_new_token_reusing_a_revoked_name_cannot_cancel_the_old_sweeps_but_an_admin_can(api):
    old_sweep = alices_sweep(api)
    recreate(api, OWNER)
    response = api.client.post(f"{SWEEPS}/{old_sweep}/cancel", headers=api.auth(OWNER))
    assert response.status_code == 403, response.text
    assert api.client.get(f"{SWEEPS}/{old_sweep}", headers=api.auth(OWNER)).json()["status"] == "queued"
    assert api.client.post(f"{SWEEPS}/{old_sweep}/cancel", headers=api.auth(ADMIN)).status_code == 202
    new_sweep = alices_sweep(api)
    assert api.client.post(f"{SWEEPS}/{new_sweep}/cancel", headers=api.auth(OWNER)).status_code == 202


def test_a_new_token_reusing_a_revoked_name_does_not_replay_the_old_idempotency_keys(api):
    key = {"Idempotency-Key": "nightly-1"}
    first = api.client.post(SWEEPS, json=TINY, headers={**api.auth(OWNER), **key})
    assert first.status_code == 202
    recreate(api, OWNER)
    second = api.client.post(SWEEPS, json=TINY, headers={**api.auth(OWNER), **key})
    assert second.status_code == 202 and "Idempotent-Replayed" not in second.headers
    assert second.json()["id"] != first.json()["id"]


def test_rotating_the_admin_token_keeps_its_owner_id(make_api, storage_url):
    api = make_api(storage_url, admin_token="first-admin-token-0123456789")
    before = owner_id_of(api, "admin")
    with api.state.sessions() as session:
        seed_admin_token(session, "second-admin-token-0123456789")
    assert owner_id_of(api, "admin") == before


def test_a_bare_owner_name_still_works_for_callers_not_yet_updated(api):
    with api.state.sessions() as session:
        alice = authenticate(session, api.tokens[OWNER])
    assert alice is not None and alice.may_modify(OWNER) and not alice.may_modify(OTHER)


# --- the verified-token cache -----------------------------------------------------------------------------------------
def delete_token_behind_the_controllers_back(api, name: str) -> None:
    """What `hpscape token revoke` in another process does: this process's cache does not hear of it."""
    with api.state.engine.begin() as connection:
        connection.execute(text("DELETE FROM hpscape_tokens WHERE name = :name"), {"name": name})


def test_a_token_revoked_elsewhere_is_refused_once_the_cache_expires(make_api, storage_url):
    api = make_api(storage_url, auth_cache_s=1.0)
    assert api.client.get(SWEEPS, headers=api.auth(OTHER)).status_code == 200
    delete_token_behind_the_controllers_back(api, OTHER)
    time.sleep(1.5)
    response = api.client.get(SWEEPS, headers=api.auth(OTHER))
    assert response.status_code == 401 and "invalid_token" in response.headers["WWW-Authenticate"]


def test_a_verified_token_is_remembered_for_the_ttl_and_a_revocation_here_forgets_it(make_api, storage_url):
    api = make_api(storage_url, auth_cache_s=300.0)
    assert api.client.get(SWEEPS, headers=api.auth(OTHER)).status_code == 200
    delete_token_behind_the_controllers_back(api, OTHER)
    # Within the TTL the token is trusted without a database read...
    assert api.client.get(SWEEPS, headers=api.auth(OTHER)).status_code == 200
    # ...and a revocation in this process forgets every remembered token at once.
    assert api.client.get(SWEEPS, headers=api.auth(OWNER)).status_code == 200
    with api.state.sessions() as session:
        revoke_token(session, OWNER)
    assert api.client.get(SWEEPS, headers=api.auth(OWNER)).status_code == 401
    assert api.client.get(SWEEPS, headers=api.auth(OTHER)).status_code == 401


def test_without_the_cache_a_token_deleted_elsewhere_is_refused_at_once(make_api, storage_url):
    api = make_api(storage_url, auth_cache_s=0.0)
    assert api.client.get(SWEEPS, headers=api.auth(OTHER)).status_code == 200
    delete_token_behind_the_controllers_back(api, OTHER)
    assert api.client.get(SWEEPS, headers=api.auth(OTHER)).status_code == 401

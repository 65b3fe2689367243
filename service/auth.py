"""API tokens: created once and shown once, stored as SHA-256 hashes, looked up per request.

A verified token is remembered in this process for a few seconds (`authenticate(..., cache_s=...)`), so that
requests do not each hold a database connection to check it; revoking or rotating a token here forgets them all.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hpscape.service.db.engine import begin_write
from hpscape.service.db.models import IdempotencyRow, TokenRow, new_owner_id, utcnow

__all__ = [
    "ADMIN_TOKEN_NAME",
    "ANONYMOUS",
    "TOKEN_NAME_PATTERN",
    "Caller",
    "Owned",
    "TokenError",
    "authenticate",
    "cached_caller",
    "create_token",
    "forget_verified_tokens",
    "hash_token",
    "list_tokens",
    "matches_secret",
    "revoke_token",
    "seed_admin_token",
]

ADMIN_TOKEN_NAME = "admin"  # the token HPSCAPE_ADMIN_TOKEN seeds
TOKEN_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class TokenError(ValueError):
    """A token could not be created or revoked; the message says why and what to do."""


class Owned(Protocol):
    """What may_modify needs of a sweep (a SweepRow)."""

    @property
    def owner(self) -> str: ...

    @property
    def owner_id(self) -> str | None: ...


@dataclass(frozen=True)
class Caller:
    """Who is calling: a token (its display name and its immutable owner id), or anonymous (public reads only)."""

    name: str | None
    is_admin: bool = False
    owner_id: str | None = None

    @property
    def anonymous(self) -> bool:
        return self.name is None

    def may_modify(self, sweep: Owned | str) -> bool:
        """An admin may change any sweep, a token the sweeps it submitted (by owner id, not by name).

        Give the sweep (its row). A bare owner name is the old check, kept for callers not yet updated: it cannot
        tell a revoked token from a new one of the same name.
        """
        if self.is_admin:
            return True
        if self.name is None:
            return False
        if isinstance(sweep, str):
            return self.name == sweep
        return sweep.owner_id is not None and sweep.owner_id == self.owner_id


ANONYMOUS = Caller(name=None)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class _VerifiedTokens:
    """Token hashes verified recently, per database: (database, sha256) -> (expiry, Caller)."""

    def __init__(self, max_entries: int = 4096) -> None:
        self._entries: dict[tuple[str, str], tuple[float, Caller]] = {}
        self._lock = threading.Lock()
        self._max = max_entries

    def get(self, database: str, digest: str) -> Caller | None:
        with self._lock:
            hit = self._entries.get((database, digest))
            if hit is None:
                return None
            if hit[0] <= time.monotonic():
                del self._entries[(database, digest)]
                return None
            return hit[1]

    def put(self, database: str, digest: str, caller: Caller, ttl_s: float) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._entries) >= self._max:
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
                if len(self._entries) >= self._max:
                    self._entries.clear()
            self._entries[(database, digest)] = (now + ttl_s, caller)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_VERIFIED = _VerifiedTokens()


def forget_verified_tokens() -> None:
    """Drop every remembered token (after a revocation or rotation): the next request checks the database."""
    _VERIFIED.clear()


def _database_key(session: Session) -> str:
    return session.get_bind().url.render_as_string(hide_password=True)


def cached_caller(database: str, token: str) -> Caller | None:
    """The caller for `token` if it was verified against `database` (an engine URL, password hidden) lately."""
    return _VERIFIED.get(database, hash_token(token))


def matches_secret(token: str, secret: str | None) -> bool:
    """Constant-time: is `token` the configured `secret` (e.g. HPSCAPE_ADMIN_TOKEN)?"""
    return secret is not None and hmac.compare_digest(hash_token(token), hash_token(secret))


def _check_name(name: str) -> None:
    if not TOKEN_NAME_PATTERN.match(name):
        raise TokenError(
            f"bad token name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"
        )


def create_token(session: Session, name: str, *, admin: bool = False) -> str:
    """Create token `name` and return its secret (shown once; only its hash is stored)."""
    _check_name(name)
    secret = secrets.token_urlsafe(32)
    begin_write(session)
    session.add(TokenRow(name=name, owner_id=new_owner_id(), token_sha256=hash_token(secret), is_admin=admin,
                         created_at=utcnow()))
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise TokenError(
            f"a token named {name!r} already exists: pick another name, or `hpscape token revoke {name}` first"
        ) from None
    return secret


def revoke_token(session: Session, name: str) -> None:
    """Revoke token `name` at once in this process (other controllers stop trusting it within their auth cache)."""
    begin_write(session)
    row = session.scalar(select(TokenRow).where(TokenRow.name == name))
    if row is None:
        raise TokenError(f"no token named {name!r}; `hpscape token list` shows the names")
    # Deleted rather than flagged, so the name can be reused: a new token of that name gets a new owner id, and
    # the sweeps keep the old one (and the name, for display). Its idempotency keys go too: no one can send them
    # with this token again, and a new token of the same name must not replay its sweeps.
    session.execute(delete(IdempotencyRow).where(IdempotencyRow.owner == name))
    session.delete(row)
    session.commit()
    forget_verified_tokens()


def list_tokens(session: Session) -> list[TokenRow]:
    return list(session.scalars(select(TokenRow).order_by(TokenRow.name)))


def authenticate(session: Session, token: str, *, cache_s: float = 0.0) -> Caller | None:
    """The caller holding `token`, or None if no live token has that secret.

    With `cache_s` > 0 a verified token is remembered for that long (see `cached_caller`). A transaction this
    starts is ended here, so a session that held no connection before holds none afterwards.
    """
    digest = hash_token(token)
    database = _database_key(session)
    if cache_s > 0:
        hit = _VERIFIED.get(database, digest)
        if hit is not None:
            return hit
    owns_transaction = not session.in_transaction()
    try:
        row = session.execute(
            select(TokenRow.name, TokenRow.is_admin, TokenRow.owner_id)
            .where(TokenRow.token_sha256 == digest, TokenRow.revoked_at.is_(None))
        ).first()
    finally:
        if owns_transaction:
            session.commit()  # gives the connection back to the pool
    if row is None:
        return None
    caller = Caller(name=row.name, is_admin=row.is_admin, owner_id=row.owner_id)
    if cache_s > 0:
        _VERIFIED.put(database, digest, caller, cache_s)
    return caller


def seed_admin_token(session: Session, token: str) -> None:
    """Make `token` the secret of the admin token named 'admin' (created, or rotated if it changed)."""
    if len(token) < 16:
        raise TokenError("HPSCAPE_ADMIN_TOKEN is too short: use at least 16 characters, e.g. "
                         "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
    digest = hash_token(token)
    begin_write(session)
    row = session.scalar(select(TokenRow).where(TokenRow.name == ADMIN_TOKEN_NAME))
    if row is None:
        session.add(TokenRow(name=ADMIN_TOKEN_NAME, owner_id=new_owner_id(), token_sha256=digest, is_admin=True,
                             created_at=utcnow()))
    elif row.token_sha256 != digest or not row.is_admin or row.revoked_at is not None:
        # Rotated: the same owner (its owner id stays), a new secret.
        row.token_sha256, row.is_admin, row.revoked_at = digest, True, None
    else:
        session.commit()
        return
    try:
        session.commit()
    except IntegrityError:
        # Another controller seeded it at the same moment; what it wrote is the same token.
        session.rollback()
    forget_verified_tokens()

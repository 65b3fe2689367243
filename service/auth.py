"""API tokens: created once and shown once, stored as SHA-256 hashes, looked up per request."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hpscape.service.db.engine import begin_write
from hpscape.service.db.models import TokenRow, utcnow

__all__ = [
    "ADMIN_TOKEN_NAME",
    "ANONYMOUS",
    "TOKEN_NAME_PATTERN",
    "Caller",
    "TokenError",
    "authenticate",
    "create_token",
    "hash_token",
    "list_tokens",
    "revoke_token",
    "seed_admin_token",
]

ADMIN_TOKEN_NAME = "admin"  # the token HPSCAPE_ADMIN_TOKEN seeds
TOKEN_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class TokenError(ValueError):
    """A token could not be created or revoked; the message says why and what to do."""


@dataclass(frozen=True)
class Caller:
    """Who is calling: a token's name (the owner of the sweeps it submits), or anonymous (public reads only)."""

    name: str | None
    is_admin: bool = False

    @property
    def anonymous(self) -> bool:
        return self.name is None

    def may_modify(self, owner: str) -> bool:
        return self.is_admin or (self.name is not None and self.name == owner)


ANONYMOUS = Caller(name=None)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


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
    session.add(TokenRow(name=name, token_sha256=hash_token(secret), is_admin=admin, created_at=utcnow()))
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise TokenError(
            f"a token named {name!r} already exists: pick another name, or `hpscape token revoke {name}` first"
        ) from None
    return secret


def revoke_token(session: Session, name: str) -> None:
    begin_write(session)
    row = session.scalar(select(TokenRow).where(TokenRow.name == name))
    if row is None:
        raise TokenError(f"no token named {name!r}; `hpscape token list` shows the names")
    # Deleted rather than flagged, so the name can be reused; the sweeps it owns keep the name as owner.
    session.delete(row)
    session.commit()


def list_tokens(session: Session) -> list[TokenRow]:
    return list(session.scalars(select(TokenRow).order_by(TokenRow.name)))


def authenticate(session: Session, token: str) -> Caller | None:
    """The caller holding `token`, or None if no live token has that secret."""
    row = session.scalar(
        select(TokenRow).where(TokenRow.token_sha256 == hash_token(token), TokenRow.revoked_at.is_(None))
    )
    return None if row is None else Caller(name=row.name, is_admin=row.is_admin)


def seed_admin_token(session: Session, token: str) -> None:
    """Make `token` the secret of the admin token named 'admin' (created, or rotated if it changed)."""
    if len(token) < 16:
        raise TokenError("HPSCAPE_ADMIN_TOKEN is too short: use at least 16 characters, e.g. "
                         "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
    digest = hash_token(token)
    begin_write(session)
    row = session.scalar(select(TokenRow).where(TokenRow.name == ADMIN_TOKEN_NAME))
    if row is None:
        session.add(TokenRow(name=ADMIN_TOKEN_NAME, token_sha256=digest, is_admin=True, created_at=utcnow()))
    elif row.token_sha256 != digest or not row.is_admin or row.revoked_at is not None:
        row.token_sha256, row.is_admin, row.revoked_at = digest, True, None
    else:
        session.commit()
        return
    try:
        session.commit()
    except IntegrityError:
        # Another controller seeded it at the same moment; what it wrote is the same token.
        session.rollback()

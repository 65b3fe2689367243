"""The service's own tables (prefix ``hpscape_``), next to Optuna's in the same database."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, String, Text, TypeDecorator, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "RECORDED", "SWEEP_STATES", "TERMINAL_STATES", "Base", "IdempotencyRow", "SweepRow", "TokenRow", "new_owner_id",
    "utcnow",
]

# "recorded": a sweep run outside the server (`hpscape run`), listed read-only; it is never queued, so the
# dispatcher never launches or takes it over.
RECORDED = "recorded"
SWEEP_STATES = ("queued", "running", "succeeded", "failed", "cancelled", RECORDED)
TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_owner_id() -> str:
    """A token's owner id: 16 random hex characters."""
    return secrets.token_hex(8)


def _owner_id_of_name(context: Any) -> str | None:
    """The default of SweepRow.owner_id: the owner id of the live token named like the sweep's owner.

    At submission that token is the one that just authenticated; a sweep with no such token (e.g. written by a
    script under a made-up owner name) gets None and can be changed by an admin only.
    """
    name = context.get_current_parameters().get("owner")
    if name is None:
        return None
    return context.connection.scalar(
        select(TokenRow.owner_id).where(TokenRow.name == name, TokenRow.revoked_at.is_(None))
    )


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values and would drop the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use datetime.now(timezone.utc)")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    pass


class SweepRow(Base):
    """One submitted sweep and its place in the queue; its results live in the Optuna studies ``<record_name>/*``."""

    __tablename__ = "hpscape_sweeps"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    record_name: Mapped[str] = mapped_column(String(220), unique=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    total_trials: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), index=True)
    # The submitting token's name, as shown and filtered on; `owner_id` is who may change the sweep.
    owner: Mapped[str] = mapped_column(String(64), index=True)
    # The immutable id of the token that submitted it (TokenRow.owner_id): a later token that reuses the name of a
    # revoked one gets a new id, so it does not inherit the sweeps. Filled in from the live token named `owner`
    # when an insert does not give it.
    owner_id: Mapped[str | None] = mapped_column(String(32), index=True, default=_owner_id_of_name)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Where the detached driver process runs; the pid is NULL between the claim and the launch.
    host: Mapped[str | None] = mapped_column(String(255))
    pid: Mapped[int | None] = mapped_column(Integer)
    launches: Mapped[int] = mapped_column(Integer, default=0)
    launched_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancelled_by: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    log_path: Mapped[str | None] = mapped_column(Text)


class TokenRow(Base):
    """An API token: only the SHA-256 of the secret is stored.

    `owner_id` is random and never changes (rotating the admin token keeps it); sweeps record it. Revoking deletes
    the row, so the name can be given to a new token, which gets a new owner id.
    """

    __tablename__ = "hpscape_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    owner_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_owner_id)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class IdempotencyRow(Base):
    """An ``Idempotency-Key`` a caller used, the hash of the body it came with, and the sweep it created."""

    __tablename__ = "hpscape_idempotency"

    owner: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    body_sha256: Mapped[str] = mapped_column(String(64))
    sweep_id: Mapped[str] = mapped_column(String(16), ForeignKey("hpscape_sweeps.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

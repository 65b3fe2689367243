"""The service's database: tables, engine, and migrations."""

from hpscape.service.db.engine import begin_write, make_engine, make_session_factory, normalize_url
from hpscape.service.db.migrate import VERSION_TABLE, current_revision, head_revision, upgrade
from hpscape.service.db.models import (
    RECORDED,
    SWEEP_STATES,
    TERMINAL_STATES,
    Base,
    IdempotencyRow,
    SweepRow,
    TokenRow,
    utcnow,
)

__all__ = [
    "RECORDED",
    "SWEEP_STATES",
    "TERMINAL_STATES",
    "VERSION_TABLE",
    "Base",
    "begin_write",
    "IdempotencyRow",
    "SweepRow",
    "TokenRow",
    "current_revision",
    "head_revision",
    "make_engine",
    "make_session_factory",
    "normalize_url",
    "upgrade",
    "utcnow",
]

"""Sweeps as rows: parsing a submission, creating it once per idempotency key, listing, and cancel requests."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer

from hpscape.landscapes import SpecError, SweepSpec, format_validation_error, get_preset
from hpscape.service.auth import Caller
from hpscape.service.db.engine import begin_write
from hpscape.service.db.models import TERMINAL_STATES, IdempotencyRow, SweepRow, utcnow

__all__ = [
    "MAX_IDEMPOTENCY_KEY",
    "CancelOutcome",
    "InputError",
    "Problem",
    "StateConflict",
    "body_digest",
    "get_sweep",
    "list_sweeps",
    "new_sweep_id",
    "parse_submission",
    "record_name_for",
    "request_cancel",
    "submit_sweep",
]

MAX_IDEMPOTENCY_KEY = 255
_ID_BYTES = 5  # 10 hex characters: short to type, and a collision is retried anyway
# Optuna study names are "<record name>/<variant>" and landscapes caps a sweep name at 200 characters.
_MAX_RECORD_NAME = 200


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a request, at `loc` (e.g. ("body", "grid", "lr", 3)); `msg` says how to fix it."""

    loc: tuple[str | int, ...]
    msg: str
    type: str = "value_error"

    def to_dict(self) -> dict[str, Any]:
        return {"loc": list(self.loc), "msg": self.msg, "type": self.type}


class InputError(ValueError):
    """The client's input is invalid (HTTP 422); `problems` names every field at fault."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{_dotted(p.loc)}: {p.msg}" for p in problems))
        self.problems = problems


class StateConflict(RuntimeError):
    """The request does not fit the sweep's current state (HTTP 409)."""


def _dotted(loc: tuple[str | int, ...] | list[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _problems_from(exc: ValidationError, prefix: tuple[str | int, ...]) -> list[Problem]:
    # format_validation_error writes one "path: message" line per error, in errors() order, with messages that
    # say what is accepted (better than pydantic's raw ones); keep those messages and the structured locations.
    lines = format_validation_error(exc).splitlines()
    errors = exc.errors()
    problems = []
    for index, error in enumerate(errors):
        loc = tuple(error["loc"])
        message = lines[index] if len(lines) == len(errors) else str(error["msg"])
        path = _dotted(loc)
        if path and message.startswith(path + ": "):
            message = message[len(path) + 2:]
        problems.append(Problem((*prefix, *loc), message, str(error.get("type", "value_error"))))
    return problems


def parse_submission(body: Any) -> SweepSpec:
    """A full SweepSpec, or ``{"preset": NAME, **overrides}``; raises InputError naming each bad field."""
    if not isinstance(body, dict):
        raise InputError([Problem(("body",), "expected a JSON object: a full sweep spec, or "
                                  '{"preset": "quick", ...overrides}', "type_error")])
    if "preset" not in body:
        try:
            return SweepSpec.model_validate(body)
        except ValidationError as exc:
            raise InputError(_problems_from(exc, ("body",))) from None
    overrides = dict(body)
    preset = overrides.pop("preset")
    if not isinstance(preset, str):
        raise InputError([Problem(("body", "preset"), f"must be a preset name (a string), got {preset!r}",
                                  "type_error")])
    try:
        return get_preset(preset, **overrides)
    except SpecError as exc:
        raise InputError([Problem(("body", "preset"), str(exc))]) from None
    except ValidationError as exc:
        raise InputError(_problems_from(exc, ("body",))) from None


def body_digest(body: Any) -> str:
    """A hash of the parsed JSON body, insensitive to key order and whitespace."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def new_sweep_id() -> str:
    return secrets.token_hex(_ID_BYTES)


def record_name_for(spec_name: str, sweep_id: str) -> str:
    """The name the sweep's Optuna studies carry: two submissions of one spec never share studies."""
    return f"{spec_name[: _MAX_RECORD_NAME - len(sweep_id) - 1]}-{sweep_id}"


def submit_sweep(
    session: Session,
    spec: SweepSpec,
    *,
    owner: str,
    idempotency_key: str | None = None,
    body_sha256: str | None = None,
) -> tuple[SweepRow, bool]:
    """Queue `spec`; returns (row, created). With an idempotency key a repeated request returns the first sweep.

    Raises InputError if the key was used before with a different body.
    """
    if idempotency_key is not None and body_sha256 is None:
        raise ValueError("an idempotency key needs the body's digest")
    for _ in range(5):
        # Look up the key and insert in one write transaction (on SQLite it holds the lock throughout).
        begin_write(session)
        if idempotency_key is not None:
            existing = _replay(session, owner, idempotency_key, body_sha256)
            if existing is not None:
                session.commit()
                return existing, False
        sweep_id = new_sweep_id()
        row = SweepRow(
            id=sweep_id,
            name=spec.name,
            record_name=record_name_for(spec.name, sweep_id),
            spec=spec.model_dump(mode="json", exclude_none=True),
            total_trials=spec.total_trials(),
            status="queued",
            owner=owner,
            created_at=utcnow(),
            launches=0,
        )
        try:
            session.add(row)
            if idempotency_key is not None:
                session.flush()  # the key's row refers to the sweep's: insert that one first
                session.add(IdempotencyRow(owner=owner, key=idempotency_key, body_sha256=body_sha256,
                                           sweep_id=sweep_id, created_at=row.created_at))
            session.commit()
            return row, True
        except IntegrityError:
            # A concurrent request with the same key won the insert (the next round answers with its sweep),
            # or the random id collided (the next round draws another).
            session.rollback()
    raise RuntimeError("could not allocate a unique sweep id after 5 attempts")


def _replay(session: Session, owner: str, key: str, body_sha256: str | None) -> SweepRow | None:
    used = session.get(IdempotencyRow, (owner, key))
    if used is None:
        return None
    if used.body_sha256 != body_sha256:
        raise InputError([Problem(
            ("header", "Idempotency-Key"),
            f"this key was already used with a different request body (for sweep {used.sweep_id}); "
            "use a new key for a new sweep, or resend the original body",
        )])
    row = session.get(SweepRow, used.sweep_id)
    assert row is not None, "idempotency keys are deleted with their sweep"
    return row


def get_sweep(session: Session, sweep_id: str) -> SweepRow | None:
    return session.get(SweepRow, sweep_id)


def list_sweeps(
    session: Session, *, status: str | None = None, owner: str | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[SweepRow], int]:
    """Sweeps newest first, and how many match the filters in all."""
    query = select(SweepRow)
    if status is not None:
        query = query.where(SweepRow.status == status)
    if owner is not None:
        query = query.where(SweepRow.owner == owner)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    # The spec (a few KiB of JSON per row) is not part of a listing.
    rows = session.scalars(query.options(defer(SweepRow.spec)).order_by(SweepRow.created_at.desc(), SweepRow.id)
                           .limit(limit).offset(offset))
    return list(rows), total


@dataclass(frozen=True)
class CancelOutcome:
    row: SweepRow
    immediate: bool  # True: it was queued and is cancelled now; False: a running driver will be stopped


def request_cancel(session: Session, row: SweepRow, caller: Caller) -> CancelOutcome:
    """Cancel a queued sweep at once, or ask the dispatcher to stop a running one. StateConflict if it ended."""
    now = utcnow()
    who = caller.name or "anonymous"
    begin_write(session)
    result = session.execute(
        update(SweepRow)
        .where(SweepRow.id == row.id, SweepRow.status == "queued")
        .values(status="cancelled", finished_at=now, cancel_requested_at=now, cancelled_by=who)
    )
    if result.rowcount == 1:
        session.commit()
        session.refresh(row)
        session.commit()
        return CancelOutcome(row, immediate=True)
    session.execute(
        update(SweepRow)
        .where(SweepRow.id == row.id, SweepRow.status == "running", SweepRow.cancel_requested_at.is_(None))
        .values(cancel_requested_at=now, cancelled_by=who)
    )
    session.commit()
    session.refresh(row)
    session.commit()
    if row.status in TERMINAL_STATES:
        if row.status == "cancelled":
            return CancelOutcome(row, immediate=True)  # cancelling twice is not an error
        raise StateConflict(f"sweep {row.id} already {row.status} at {row.finished_at:%Y-%m-%d %H:%M:%S} UTC; "
                            "there is nothing to cancel")
    return CancelOutcome(row, immediate=False)

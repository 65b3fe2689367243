"""Sweeps as rows: parsing a submission, creating it once per idempotency key, listing, and cancel requests."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Row, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hpscape.landscapes import SpecError, SweepSpec, format_validation_error, get_preset
from hpscape.service.auth import Caller
from hpscape.service.db.engine import begin_write
from hpscape.service.db.models import RECORDED, TERMINAL_STATES, IdempotencyRow, SweepRow, utcnow
from hpscape.service.settings import load_settings

__all__ = [
    "parse_spec",
    "MAX_IDEMPOTENCY_KEY",
    "CancelOutcome",
    "check_resources",
    "InputError",
    "Problem",
    "StateConflict",
    "body_digest",
    "get_sweep",
    "list_sweeps",
    "new_sweep_id",
    "parse_submission",
    "record_name_for",
    "refuse_recorded",
    "request_cancel",
    "submit_sweep",
]

MAX_IDEMPOTENCY_KEY = 255
_ID_BYTES = 5  # 10 hex characters: short to type, and a collision is retried anyway
# Optuna study names are "<record name>/<variant>" and landscapes caps a sweep name at 200 characters.
_MAX_RECORD_NAME = 200
_FROM_SETTINGS: Any = object()  # the Ray address of HPSCAPE_RAY_ADDRESS (the controller's settings)


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


def parse_submission(body: Any, *, ray_address: str | None = _FROM_SETTINGS) -> SweepSpec:
    """A full SweepSpec, or ``{"preset": NAME, **overrides}``; raises InputError naming each bad field.

    A spec whose trials no node of the controller's Ray can hold is refused too (`check_resources`); `ray_address`
    is the controller's (HPSCAPE_RAY_ADDRESS unless given; None: a local Ray on this machine).
    """
    spec = _parse(body)
    check_resources(spec, ray_address=load_settings().ray_address if ray_address is _FROM_SETTINGS else ray_address)
    return spec


def check_resources(spec: SweepSpec, *, ray_address: str | None) -> None:
    """InputError at ``body.resources.cpu`` / ``.gpu`` if no node can hold one trial: the machine's CPUs and GPUs
    for a local Ray, the alive nodes of the cluster at `ray_address` otherwise (asked by a short-lived Ray driver,
    cached; a cluster that cannot be asked refuses nothing, and /healthz says it is down)."""
    from hpscape.workers.sweep.placement import cluster_nodes, unplaceable

    cpu, gpu = spec.resources.cpu, spec.resources.gpu
    nodes = cluster_nodes(ray_address, fits=lambda cluster: not unplaceable(cpu, gpu, cluster))
    if nodes is None:
        return
    problems = unplaceable(cpu, gpu, nodes)
    if problems:
        raise InputError([Problem(("body", "resources", field), message, "resources_unavailable")
                          for field, message in problems])


def parse_spec(body: Any) -> SweepSpec:
    """`parse_submission` without the placement check: for planning a sweep meant for another cluster."""
    return _parse(body)


def _parse(body: Any) -> SweepSpec:
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


# What a listing shows of a sweep (`SweepOut`): not the spec, a few KiB of JSON per row.
_LISTED = (SweepRow.id, SweepRow.name, SweepRow.record_name, SweepRow.status, SweepRow.owner, SweepRow.total_trials,
           SweepRow.created_at, SweepRow.started_at, SweepRow.finished_at, SweepRow.cancel_requested_at,
           SweepRow.error)


def list_sweeps(
    session: Session, *, status: str | None = None, owner: str | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[Row[Any]], int]:
    """Sweeps newest first (rows of the listed columns, named like SweepRow's attributes), and how many match the
    filters in all. Plain rows, not ORM objects: building those cost more than the two queries."""
    conditions = []
    if status is not None:
        conditions.append(SweepRow.status == status)
    if owner is not None:
        conditions.append(SweepRow.owner == owner)
    total = session.scalar(select(func.count()).select_from(SweepRow).where(*conditions)) or 0
    rows = session.execute(select(*_LISTED).where(*conditions).order_by(SweepRow.created_at.desc(), SweepRow.id)
                           .limit(limit).offset(offset))
    return list(rows), total


@dataclass(frozen=True)
class CancelOutcome:
    row: SweepRow
    immediate: bool  # True: it was queued and is cancelled now; False: a running driver will be stopped


def refuse_recorded(row: SweepRow) -> None:
    """StateConflict for a sweep recorded outside the server: nothing here started it, nothing here can stop it."""
    if row.status == RECORDED:
        raise StateConflict(f"sweep {row.id} ({row.record_name}) ran outside the server (`hpscape run`): the server "
                            "did not start it and cannot cancel it; stop the `hpscape run` process that records it")


def request_cancel(session: Session, row: SweepRow, caller: Caller) -> CancelOutcome:
    """Cancel a queued sweep at once, or ask the dispatcher to stop a running one. StateConflict if it ended or
    was recorded outside the server."""
    refuse_recorded(row)
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

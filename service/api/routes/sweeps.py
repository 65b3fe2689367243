"""Submitting, listing, inspecting and cancelling sweeps."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response, status

from hpscape.landscapes import VARIANT_NAMES, landscape_pairs
from hpscape.service.api.deps import OptunaDep, ReaderDep, SessionDep, StateDep, SweepDep, WriterDep
from hpscape.service.api.schemas import ErrorOut, SweepDetail, SweepList, SweepOut, SweepStatus
from hpscape.service.api.views import sweep_detail, sweep_out, sweep_summary_of
from hpscape.service.auth import TOKEN_NAME_PATTERN
from hpscape.service.sweeps import (
    MAX_IDEMPOTENCY_KEY,
    InputError,
    Problem,
    body_digest,
    list_sweeps,
    parse_submission,
    request_cancel,
    submit_sweep,
)

router = APIRouter(prefix="/api/v1/sweeps", tags=["sweeps"])

_AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "no token, or a token that is not valid"},
}
_SUBMIT_BODY = {
    "requestBody": {
        "required": True,
        "description": "A full sweep spec, or a preset with top-level overrides.",
        "content": {
            "application/json": {
                "schema": {"oneOf": [{"$ref": "#/components/schemas/SweepSpec"},
                                     {"$ref": "#/components/schemas/PresetSubmission"}]},
                "examples": {
                    "preset": {"summary": "the quick preset, 5 epochs", "value": {"preset": "quick", "epochs": 5}},
                    "spec": {"summary": "a full spec", "value": {
                        "name": "my-sweep", "dataset": "digits", "model": "shake_shake_8_2x16d",
                        "variants": list(landscape_pairs(VARIANT_NAMES)[0]), "epochs": 15, "batch_size": 64,
                        "grid": {"lr": [0.0625, 0.125], "weight_decay": [0, 0.001]}}},
                    "betas": {"summary": "Adam against AdamW over beta1 x beta2", "value": {
                        "preset": "adam-betas", "name": "my-betas", "epochs": 10}},
                },
            }
        },
    }
}


async def _json_body(request: Request) -> Any:
    """The request body parsed as JSON (NaN and Infinity parse, and are then rejected by the spec's checks)."""
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if content_type not in ("application/json", "") and not content_type.endswith("+json"):
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                            detail=f"send the sweep as JSON (Content-Type: application/json), not {content_type}")
    raw = await request.body()
    if not raw.strip():
        raise InputError([Problem(("body",), "the request body is empty: send a sweep spec or "
                                  '{"preset": "quick"} as JSON', "missing")])
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputError([Problem(("body",), f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
                                  "json_invalid")]) from None
    except RecursionError:
        raise InputError([Problem(("body",), "invalid JSON: nested too deeply", "json_invalid")]) from None
    except ValueError as exc:  # e.g. bytes that are not UTF-8
        raise InputError([Problem(("body",), f"invalid JSON: {str(exc)[:200]}", "json_invalid")]) from None


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SweepOut,
    openapi_extra=_SUBMIT_BODY,
    responses={**_AUTH_ERRORS, 413: {"model": ErrorOut, "description": "body over 1 MiB"},
               415: {"model": ErrorOut}, 422: {"model": ErrorOut, "description": "the fields at fault"}},
)
def create_sweep(
    writer: WriterDep,
    session: SessionDep,
    state: StateDep,
    response: Response,
    body: Annotated[Any, Depends(_json_body)],
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", min_length=1, max_length=MAX_IDEMPOTENCY_KEY, pattern=r"^[\x21-\x7e]+$",
               description="Repeat a request safely: the same key and body return the same sweep (printable "
               "ASCII, no spaces, at most 255 characters)."),
    ] = None,
) -> SweepOut:
    """Queue a sweep: a full spec, or {"preset": "quick", ...overrides}; 202 with its id."""
    spec = parse_submission(body)
    assert writer.name is not None
    row, created = submit_sweep(
        session, spec, owner=writer.name, idempotency_key=idempotency_key,
        body_sha256=body_digest(body) if idempotency_key is not None else None,
    )
    response.headers["Location"] = f"/api/v1/sweeps/{row.id}"
    if created:
        if state.dispatcher is not None:
            state.dispatcher.wake()
    else:
        response.headers["Idempotent-Replayed"] = "true"
    return sweep_out(row)


@router.get("", response_model=SweepList, responses=_AUTH_ERRORS)
def get_sweeps(
    _reader: ReaderDep,
    session: SessionDep,
    status_: Annotated[SweepStatus | None, Query(alias="status", description="only sweeps in this state")] = None,
    owner: Annotated[str | None, Query(max_length=64, pattern=TOKEN_NAME_PATTERN.pattern,
                                       description="only sweeps this token name submitted")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> SweepList:
    """List sweeps, newest first (filter by status and owner; paginate with limit and offset)."""
    rows, total = list_sweeps(session, status=status_, owner=owner, limit=limit, offset=offset)
    return SweepList(items=[sweep_out(r) for r in rows], total=total, limit=limit, offset=offset)


@router.get("/{sweep_id}", response_model=SweepDetail, responses={**_AUTH_ERRORS, 404: {"model": ErrorOut}})
def get_sweep(row: SweepDep, storage: OptunaDep, state: StateDep) -> SweepDetail:
    """A sweep's status, trial counts by state per variant, best cell per variant, timings and ETA."""
    summary = state.cache.get_or_compute(
        ("summary", row.id), state.settings.status_cache_s, lambda: sweep_summary_of(storage, row)
    )
    return sweep_detail(row, summary)


@router.post(
    "/{sweep_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SweepOut,
    responses={**_AUTH_ERRORS, 403: {"model": ErrorOut, "description": "someone else's sweep"},
               404: {"model": ErrorOut}, 409: {"model": ErrorOut, "description": "the sweep already ended"}},
)
def cancel_sweep(writer: WriterDep, row: SweepDep, session: SessionDep, state: StateDep) -> SweepOut:
    """Cancel a sweep (its owner or an admin): queued ones at once, running ones stop their trials; results stay."""
    if not writer.may_modify(row.owner):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            detail=f"sweep {row.id} belongs to {row.owner!r}; only its owner or an admin may cancel it")
    outcome = request_cancel(session, row, writer)
    if not outcome.immediate and state.dispatcher is not None:
        state.dispatcher.wake()
    return sweep_out(outcome.row)

"""Submitting, listing, inspecting and cancelling sweeps."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request, Response, status

from hpscape.landscapes import VARIANT_NAMES, Throughput, landscape_pairs, measured_throughput, plan_sweep
from hpscape.service.api.deps import (
    OptunaDep,
    ReaderDep,
    SessionDep,
    SettingsDep,
    StateDep,
    SweepDep,
    WriterDep,
    get_readable_sweep,
)
from hpscape.service.api.schemas import ErrorOut, SweepDetail, SweepList, SweepOut, SweepStatus
from hpscape.service.api.views import StatusReads, sweep_detail, sweep_out, sweep_summary_of
from hpscape.service.auth import TOKEN_NAME_PATTERN
from hpscape.service.sweeps import (
    MAX_IDEMPOTENCY_KEY,
    InputError,
    Problem,
    body_digest,
    check_resources,
    list_sweeps,
    parse_spec,
    parse_submission,
    refuse_recorded,
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


@router.post(
    "/plan",
    openapi_extra=_SUBMIT_BODY,
    responses={**_AUTH_ERRORS, 413: {"model": ErrorOut, "description": "body over 1 MiB"},
               415: {"model": ErrorOut}, 422: {"model": ErrorOut, "description": "the fields at fault"}},
)
def plan(
    _reader: ReaderDep,
    storage: OptunaDep,
    settings: SettingsDep,
    body: Annotated[Any, Depends(_json_body)],
    throughput: Annotated[float | None, Query(gt=0, le=1e9, description="images/s per trial to estimate the time "
                                               "with; default: measured on this server's finished trials")] = None,
) -> dict[str, Any]:
    """What a sweep (a spec or a preset, as for submitting) would train, without queueing it: trials and epochs per
    study and in all, training images, and the hours when a throughput is known."""
    spec = parse_spec(body)
    measured = (Throughput(throughput, "given with ?throughput") if throughput is not None
                else measured_throughput(storage, spec))
    planned = plan_sweep(spec, measured).to_dict()
    try:
        check_resources(spec, ray_address=settings.ray_address)
    except InputError as exc:  # a plan for another cluster is still a plan: say it would not run here
        planned["notes"].append("this server would refuse it: " + "; ".join(p.msg for p in exc.problems))
    return planned


@router.get("", response_model=SweepList, responses=_AUTH_ERRORS)
def get_sweeps(
    _reader: ReaderDep,
    session: SessionDep,
    state: StateDep,
    status_: Annotated[SweepStatus | None, Query(alias="status", description="only sweeps in this state")] = None,
    owner: Annotated[str | None, Query(max_length=64, pattern=TOKEN_NAME_PATTERN.pattern,
                                       description="only sweeps this token name submitted")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> Response:
    """List sweeps, newest first (filter by status and owner; paginate with limit and offset). Sweeps recorded
    outside the server (`hpscape run`) are listed too, with status "recorded"."""
    state.scan_recorded(session)
    rows, total = list_sweeps(session, status=status_, owner=owner, limit=limit, offset=offset)
    listing = SweepList(items=[sweep_out(r) for r in rows], total=total, limit=limit, offset=offset)
    return Response(listing.model_dump_json(), media_type="application/json")  # built once, not re-validated


@router.get("/{sweep_id}", response_model=SweepDetail, responses={**_AUTH_ERRORS, 404: {"model": ErrorOut}})
async def get_sweep(
    sweep_id: Annotated[str, Path(max_length=64, description="the sweep's id, as returned on submission")],
    reader: ReaderDep,
    state: StateDep,
) -> Response:
    """A sweep's status, trial counts by state per variant, best cell per variant, timings and ETA."""
    # Read (the row, the record's summary, the body) in a thread, once per HPSCAPE_STATUS_CACHE_S for all the
    # clients polling this sweep (StatusReads): a request answered from it takes no database slot, no session.
    def read() -> bytes:
        with state.sessions() as session:
            row = get_readable_sweep(sweep_id, reader, session)
        return sweep_detail(row, sweep_summary_of(state.optuna(), row)).model_dump_json().encode()

    body = await StatusReads.of(state).get(sweep_id, state.settings.status_cache_s, read, state.db_slot)
    return Response(body, media_type="application/json")


@router.post(
    "/{sweep_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SweepOut,
    responses={**_AUTH_ERRORS, 403: {"model": ErrorOut, "description": "someone else's sweep"},
               404: {"model": ErrorOut},
               409: {"model": ErrorOut, "description": "the sweep already ended, or ran outside the server"}},
)
def cancel_sweep(writer: WriterDep, row: SweepDep, session: SessionDep, state: StateDep) -> SweepOut:
    """Cancel a sweep (its owner or an admin): queued ones at once, running ones stop their trials; results stay.
    A sweep recorded outside the server is 409: the server did not start it and cannot stop it."""
    refuse_recorded(row)
    if not writer.may_modify(row):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            detail=f"sweep {row.id} belongs to {row.owner!r}; only its owner or an admin may cancel it")
    outcome = request_cancel(session, row, writer)
    if not outcome.immediate and state.dispatcher is not None:
        state.dispatcher.wake()
    return sweep_out(outcome.row)

"""A sweep's trials: paginated JSON, and the whole record streamed as CSV or JSON.

A page is read with LIMIT/OFFSET in the database (filters on variant, facet and state in SQL); an export is a
stream of pages (keyset over trial numbers), so neither ever holds the whole record. Exports are big readers: at
most `EXPORT_STREAMS` stream at once, reading in threads of their own (one database connection each, between
pages none), and the others wait for a turn without holding a thread or a connection, so exports cannot starve the
status reads of threads, connections or the request slots (which a stream gives back before its first byte), nor,
pausing between pages while the server is busy (`_bounded`), of the interpreter.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Annotated

import anyio
from anyio.lowlevel import RunVar
from fastapi import APIRouter, Path, Query
from fastapi.responses import Response, StreamingResponse

from hpscape.landscapes.record import FINISHED_STATES
from hpscape.service.api.deps import OptunaDep, ReaderDep, StateDep, SweepDep, get_readable_sweep
from hpscape.service.api.schemas import ErrorOut, SweepExport, TrialList, TrialStateName
from hpscape.service.api.views import StatusReads, json_export_chunks, row_spec, trial_list_json
from hpscape.service.progress import csv_chunks, trial_page

router = APIRouter(prefix="/api/v1/sweeps", tags=["trials"])

_ERRORS = {401: {"model": ErrorOut}, 404: {"model": ErrorOut}}
# Exports streaming at once (per event loop, i.e. per server process); each reads in a thread of its own.
EXPORT_STREAMS = 2
# A yield to the event loop that takes longer than this means it is serving other requests (an idle one: ~0.05 ms).
BUSY_LOOP_LAG_S = 0.002
_EXPORT_BUDGET: RunVar[tuple[anyio.Semaphore, anyio.CapacityLimiter]] = RunVar("hpscape_export_budget")


@router.get("/{sweep_id}/trials", response_model=TrialList, responses=_ERRORS)
async def get_trials(
    sweep_id: Annotated[str, Path(max_length=64, description="the sweep's id, as returned on submission")],
    reader: ReaderDep,
    service: StateDep,
    variant: Annotated[str | None, Query(max_length=32, description="only this variant, e.g. sgdw")] = None,
    facet: Annotated[str | None, Query(max_length=200, description="only this facet value of a faceted sweep, "
                                                                   "AXIS=VALUE (e.g. schedule=step)")] = None,
    state: Annotated[TrialStateName | None, Query(description="only trials in this state")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    history: Annotated[bool, Query(description="true: include each trial's per-epoch history (about 0.5 kB per "
                                   "epoch, so most of a page: 50 trials of 100 epochs are 2.8 MB); false (the "
                                   "default): history is null")] = False,
) -> Response:
    """A sweep's trials (variant order, then trial number): parameters, state, metrics, epochs, errors, and with
    `history=true` the per-epoch history. Finished trials (Optuna never changes them) are kept in memory without
    their history, as records and as JSON; and like a status, a page without histories is read once per
    HPSCAPE_STATUS_CACHE_S for every client asking for it (so it may be up to about twice that old)."""

    def read() -> bytes:
        with service.sessions() as session:
            row = get_readable_sweep(sweep_id, reader, session)
        items, total = trial_page(service.optuna(), row.record_name, row_spec(row), offset=offset, limit=limit,
                                  variant=variant, facet=facet, state=state, history=history)
        kept = None if history else (
            lambda key, trial: (row.record_name, key, trial.number, trial.datetime_complete)
            if trial.state in FINISHED_STATES else None)
        return trial_list_json(items, total=total, limit=limit, offset=offset, kept=kept, cache=service.trial_json)

    if history:  # megabytes a page: written for each request, never kept
        async with service.db_slot():
            body = await anyio.to_thread.run_sync(read)
    else:
        query = "\x00".join(str(part) for part in ("trials", sweep_id, variant, facet, state, offset, limit))
        body = await StatusReads.of(service).get(query, service.settings.status_cache_s, read, service.db_slot)
    return Response(body, media_type="application/json")


def _export_budget() -> tuple[anyio.Semaphore, anyio.CapacityLimiter]:
    budget = _EXPORT_BUDGET.get(None)
    if budget is None:
        budget = (anyio.Semaphore(EXPORT_STREAMS), anyio.CapacityLimiter(EXPORT_STREAMS))
        _EXPORT_BUDGET.set(budget)
    return budget


def _next(chunks: Iterator[bytes | str]) -> tuple[bytes | None, float]:
    """The next chunk and the CPU seconds this thread spent on it."""
    started = time.thread_time()
    chunk = next(chunks, None)
    data = chunk.encode() if isinstance(chunk, str) else chunk
    return data, time.thread_time() - started


async def _loop_lag() -> float:
    """Seconds the event loop took to come back to this task: how much other work (requests) it has."""
    started = time.perf_counter()
    await anyio.sleep(0)
    return time.perf_counter() - started


async def _bounded(chunks: Iterator[bytes | str]) -> AsyncIterator[bytes]:
    """`chunks` read a page at a time in an export thread, once this stream has its turn.

    A page's thread holds the GIL while it works, which the event loop (every other request) needs too: when the
    loop has other work, the stream waits as long as its page took before the next one, so streams use at most
    about half the interpreter while a server is busy and all of it while it is idle.
    """
    turns, threads = _export_budget()
    try:
        async with turns:
            while True:
                chunk, used = await anyio.to_thread.run_sync(_next, chunks, limiter=threads)
                if chunk is None:
                    break
                yield chunk
                if await _loop_lag() > BUSY_LOOP_LAG_S:
                    await anyio.sleep(used)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


@router.get(
    "/{sweep_id}/export.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "one row per trial"},
               **_ERRORS},
)
def export_csv(row: SweepDep, storage: OptunaDep) -> StreamingResponse:
    """Every trial of the sweep as CSV, one row per trial (sweep id and variant first), streamed."""
    chunks = csv_chunks(storage, row.record_name, row_spec(row), extra={"sweep_id": row.id})
    return StreamingResponse(_bounded(chunks), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{row.record_name}.csv"'})


@router.get("/{sweep_id}/export.json", response_model=SweepExport, responses=_ERRORS)
def export_json(row: SweepDep, storage: OptunaDep) -> StreamingResponse:
    """The sweep, its spec and every trial in one JSON document, streamed."""
    return StreamingResponse(_bounded(json_export_chunks(storage, row)), media_type="application/json")

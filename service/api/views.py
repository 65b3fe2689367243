"""Rows and Optuna records turned into response bodies.

A sweep's status (`StatusReads`) is its row and its record's summary turned into the response body, read and
written once per `status_cache_s` for every client polling it: the requests in between cost no thread, no database
slot, no connection, no query and no serialization.

Trial lists and exports are written as JSON text a trial at a time (`trial_json`, validated by `TrialOut`), the
per-epoch ``history`` spliced in as the text Optuna stored where that is already what the response would hold
(`raw_history`): a 100-epoch history is about 20 kB, and decoding and encoding it again was most of their cost.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any
from weakref import WeakKeyDictionary

import anyio
from anyio.lowlevel import RunVar
from optuna.storages import BaseStorage
from pydantic import TypeAdapter
from sqlalchemy import Row

from hpscape.landscapes import SweepSpec
from hpscape.landscapes.lru import LRU
from hpscape.landscapes.record import Attr
from hpscape.landscapes.record.pages import TrialRecord
from hpscape.service.api.schemas import SweepDetail, SweepOut, SweepProgress, SweepTimings, TrialOut
from hpscape.service.api.state import ServiceState, loop_local
from hpscape.service.db.models import SweepRow, utcnow
from hpscape.service.progress import EXPORT_PAGE, iter_sweep_trials, raw_history, summarize, trial_row

__all__ = [
    "StatusReads",
    "json_export_chunks",
    "row_spec",
    "sweep_detail",
    "sweep_out",
    "sweep_summary_of",
    "trial_json",
    "trial_list_json",
]

_FINISHED_TRIAL_STATES = ("COMPLETE", "PRUNED", "FAIL")


def sweep_out(row: SweepRow | Row[Any]) -> SweepOut:
    """A sweep row (or a row of `list_sweeps`' columns) as the API shows it."""
    return SweepOut(
        id=row.id, name=row.name, record_name=row.record_name, status=row.status, owner=row.owner,
        total_trials=row.total_trials, created_at=row.created_at, started_at=row.started_at,
        finished_at=row.finished_at, cancel_requested=row.cancel_requested_at is not None and row.status == "running",
        error=row.error,
    )


def row_spec(row: SweepRow) -> SweepSpec:
    """The row's spec, validated (it was when submitted; a row is never re-parsed by hand)."""
    return SweepSpec.model_validate(row.spec)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def sweep_detail(row: SweepRow, summary: dict[str, dict[str, Any]]) -> SweepDetail:
    """`summary` is `summarize` of the sweep's record (possibly a second old, from the cache)."""
    counts: dict[str, int] = {}
    for info in summary.values():
        for state, n in info["counts"].items():
            counts[state] = counts.get(state, 0) + n
    done = sum(counts.get(state, 0) for state in _FINISHED_TRIAL_STATES)
    now = utcnow()
    end = row.finished_at or (now if row.status == "running" else None)
    elapsed = _seconds(row.started_at, end)
    eta = None
    if row.status == "running" and elapsed is not None and done > 0:
        eta = elapsed / done * max(0, row.total_trials - done)
    return SweepDetail(
        **sweep_out(row).model_dump(),
        spec=row.spec,
        metric=str(row.spec.get("metric", "test_error")),
        progress=SweepProgress(done=done, total=row.total_trials, counts=counts),
        variants=summary,
        timings=SweepTimings(queued_s=_seconds(row.created_at, row.started_at), elapsed_s=elapsed, eta_s=eta),
        host=row.host,
        launches=row.launches,
    )


def sweep_summary_of(storage: BaseStorage, row: SweepRow) -> dict[str, dict[str, Any]]:
    return summarize(storage, row.record_name, row_spec(row))


Status = bytes  # the SweepDetail JSON


class _Reading:
    """A status read in progress: the requests that want the same sweep meanwhile wait for its answer."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.answer: Status | None = None
        self.error: BaseException | None = None


class StatusReads:
    """Per app and event loop: each sweep's status body (and each page of its trials without histories, under a
    key of its query), reused for `ttl` seconds, one read per key at once.

    Fifty clients polling a sweep cost one read (a database slot, a thread, the row, the record's summary, the
    JSON) per `ttl`; a request that finds a fresh answer (or a just stale one, being renewed) awaits nothing. The
    timings in it (elapsed, ETA) are of the read, like its counts. A read that fails (404, an unreachable
    database) fails the requests that waited for it too, and is not kept.
    """

    _MAX_ENTRIES = 1024
    _BY_STATE: RunVar[WeakKeyDictionary[ServiceState, StatusReads]] = RunVar("hpscape_status_reads")

    def __init__(self) -> None:
        self._fresh: dict[str, tuple[float, Status]] = {}
        self._reading: dict[str, _Reading] = {}
        self._renewing: set[asyncio.Task[None]] = set()

    @classmethod
    def of(cls, state: ServiceState) -> StatusReads:
        """The app's (in the running event loop: anyio's events belong to one)."""
        return loop_local(cls._BY_STATE, state, cls)

    async def get(self, key: str, ttl: float, read: Callable[[], Status],
                  slot: Callable[[], AbstractAsyncContextManager[Any]]) -> Status:
        """`read()` (run in a worker thread while holding a `slot()`), or its answer of less than `ttl` s ago.

        An answer between `ttl` and 2 `ttl` old is still given at once, while one read in the background renews it:
        the clients of a popular key never wait for its reads, and what they get is at most about 2 `ttl` old.
        """
        if ttl <= 0:
            async with slot():
                return await anyio.to_thread.run_sync(read)
        while True:
            hit = self._fresh.get(key)
            now = time.monotonic()
            if hit is not None and hit[0] > now:
                return hit[1]
            pending = self._reading.get(key)
            if hit is not None and hit[0] + ttl > now:
                if pending is None:
                    self._renew(key, ttl, read, slot)
                return hit[1]
            if pending is None:
                break
            await pending.done.wait()
            if pending.error is not None:
                raise pending.error
            if pending.answer is not None:
                return pending.answer
            # The reader was cancelled: read again.
        pending = self._reading[key] = _Reading()
        return await self._read(key, ttl, read, slot, pending)

    async def _read(self, key: str, ttl: float, read: Callable[[], Status],
                    slot: Callable[[], AbstractAsyncContextManager[Any]], pending: _Reading) -> Status:
        try:
            async with slot():
                pending.answer = await anyio.to_thread.run_sync(read)
        except Exception as exc:
            pending.error = exc
            raise
        finally:
            del self._reading[key]
            pending.done.set()
        now = time.monotonic()
        if len(self._fresh) >= self._MAX_ENTRIES:
            self._fresh = {k: value for k, value in self._fresh.items() if value[0] + ttl > now}
        self._fresh[key] = (now + ttl, pending.answer)
        return pending.answer

    def _renew(self, key: str, ttl: float, read: Callable[[], Status],
               slot: Callable[[], AbstractAsyncContextManager[Any]]) -> None:
        pending = self._reading[key] = _Reading()  # now, so that no other request starts a second read

        async def renew() -> None:
            try:
                await self._read(key, ttl, read, slot, pending)
            except Exception:  # noqa: BLE001 - the next request reads in its own time, and gets the error
                self._fresh.pop(key, None)

        task = asyncio.get_running_loop().create_task(renew())
        self._renewing.add(task)  # a reference, or the loop may drop the task half-way
        task.add_done_callback(self._renewing.discard)


_TRIAL_JSON = TypeAdapter(TrialOut)
# The key a trial's JSON is kept under in a cache of them, or None: written every time.
KeptAs = Callable[[str, TrialRecord], Hashable | None]
_NULL_HISTORY = b'"history":null}'


def trial_json(key: str, trial: TrialRecord) -> bytes:
    """The trial as `TrialOut` JSON (validated by it), with the stored history text spliced in where it can be."""
    raw = raw_history(trial.raw_attrs.get(Attr.HISTORY))
    if raw is None:
        return _TRIAL_JSON.dump_json(TrialOut(**trial_row(key, trial)))
    text = _TRIAL_JSON.dump_json(TrialOut(**trial_row(key, trial, history=False)))
    assert text.endswith(_NULL_HISTORY), "history is TrialOut's last field"
    return b"".join((memoryview(text)[: -len(_NULL_HISTORY)], b'"history":', raw.encode(), b"}"))


def _trials_json(items: Iterable[tuple[str, TrialRecord]], kept: KeptAs | None = None,
                 cache: LRU[Hashable, bytes] | None = None) -> bytes:
    parts = []
    for key, trial in items:
        cache_key = None if kept is None or cache is None else kept(key, trial)
        if cache_key is None:
            parts.append(trial_json(key, trial))
        else:
            text = cache.get(cache_key)
            if text is None:
                text = trial_json(key, trial)
                cache.put(cache_key, text)
            parts.append(text)
    return b",".join(parts)


def trial_list_json(items: Iterable[tuple[str, TrialRecord]], *, total: int, limit: int, offset: int,
                    kept: KeptAs | None = None, cache: LRU[Hashable, bytes] | None = None) -> bytes:
    """A `TrialList` document; a trial `kept` gives a key for is written once into `cache` and reused."""
    tail = f'],"total":{int(total)},"limit":{int(limit)},"offset":{int(offset)}}}'.encode()
    return b"".join((b'{"items":[', _trials_json(items, kept, cache), tail))


def json_export_chunks(storage: BaseStorage, row: SweepRow, *, page_size: int = EXPORT_PAGE) -> Iterator[bytes]:
    """The `SweepExport` document of the sweep in pieces: its "sweep" and "spec", then a page of trials at a time
    (studies in spec order, trials by number)."""
    head = {"sweep": json.loads(sweep_out(row).model_dump_json()), "spec": row.spec}
    opening = json.dumps(head, separators=(",", ":"), allow_nan=False)
    yield (opening[:-1] + ',"trials":[').encode()
    first = True
    for page in iter_sweep_trials(storage, row.record_name, row_spec(row).studies(), page_size=page_size):
        text = _trials_json(page)
        yield text if first else b"," + text
        first = False
    yield b"]}"

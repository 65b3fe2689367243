"""The JSON of finished trials, kept for the trial lists.

Optuna never changes a finished trial, so its `TrialOut` text (without the history) is the same in every page
that lists it; validating and writing it was most of a page's cost. Kept under (record, study key, number, when it
finished), bounded in bytes, least recently used out first; a page with histories (opt-in, megabytes) is written
every time.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

__all__ = ["FinishedTrialJson"]


class FinishedTrialJson:
    """key -> JSON bytes, at most `max_bytes` of them."""

    def __init__(self, max_bytes: int = 32 * 2**20) -> None:
        self._entries: OrderedDict[Hashable, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._max_bytes = max_bytes

    def get_or_write(self, key: Hashable, write: Callable[[], bytes]) -> bytes:
        with self._lock:
            text = self._entries.get(key)
            if text is not None:
                self._entries.move_to_end(key)
                return text
        text = write()
        with self._lock:
            if key not in self._entries:
                self._entries[key] = text
                self._bytes += len(text)
            while self._bytes > self._max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= len(dropped)
        return text

    @property
    def size_bytes(self) -> int:
        return self._bytes

"""A small thread-safe least-recently-used map: the in-process memory of things Optuna never changes (finished
trials' summaries, records and JSON) and of answers computed from them (coupling metrics)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["LRU"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    """At most `max_entries` values, and with `weight` at most `max_weight` of their weights in all (a value
    heavier than a quarter of that is not kept: it would push out everything else); the least recently used goes
    first."""

    def __init__(self, max_entries: int, *, max_weight: int | None = None,
                 weight: Callable[[V], int] | None = None) -> None:
        if (max_weight is None) != (weight is None):
            raise ValueError("max_weight and weight go together")
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_entries
        self._max_weight = max_weight
        self._weight = weight
        self._total = 0

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        size = 0 if self._weight is None else self._weight(value)
        if self._max_weight is not None and size > self._max_weight // 4:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None and self._weight is not None:
                self._total -= self._weight(old)
            self._entries[key] = value
            self._total += size
            while len(self._entries) > self._max or (self._max_weight is not None and self._total > self._max_weight):
                _, dropped = self._entries.popitem(last=False)
                if self._weight is not None:
                    self._total -= self._weight(dropped)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._total = 0

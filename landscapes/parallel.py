"""A few threads over a sweep's studies, for the work that leaves the GIL: SQLite and PostgreSQL queries."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["map_keyed"]

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")
# A sweep has up to a dozen studies; more threads than cores only queue for the database file.
_MAX_THREADS = 4


def map_keyed(function: Callable[[V], T], items: Mapping[K, V]) -> dict[K, T]:
    """`function` of every value, keyed alike, in up to four threads when there are several (the first error
    is raised, as a loop would)."""
    if len(items) < 2:
        return {key: function(value) for key, value in items.items()}
    workers = min(len(items), max(os.cpu_count() or 1, 2), _MAX_THREADS)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hpscape-study") as pool:
        results = list(pool.map(function, items.values()))
    return dict(zip(items, results))

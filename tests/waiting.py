"""The one polling helper the tests share: wait until a probe returns something truthy, or fail saying what for."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(what: str, probe: Callable[[], T], timeout: float, *, interval: float = 0.05,
               context: Callable[[], str] = lambda: "") -> T:
    """Call `probe` every `interval` s until it returns a truthy value (returned); AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    detail = context()
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}" + (f"\n{detail}" if detail else ""))

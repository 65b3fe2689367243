"""Process helpers for detached sweep drivers: is one alive, and stopping a driver with everything it started."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["descendants", "is_alive", "session_members", "stop_descendants", "stop_session"]

_PROC = Path("/proc")


def _state(pid: int) -> str | None:
    """The one-letter state from /proc/PID/stat ('Z' for a zombie), or None if there is no such process."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return "?"
    # "pid (comm) S ...": comm may contain spaces and parentheses, so split after the last ')'.
    return stat.rsplit(")", 1)[-1].split()[0]


def is_alive(pid: int, marker: str | None = None) -> bool:
    """True if process `pid` runs (a zombie does not) and, where /proc shows it, its command line has `marker`.

    The marker guards against a recycled pid: after a reboot the number may belong to anything.
    """
    if pid <= 0:
        return False
    if _PROC.is_dir():
        state = _state(pid)
        if state is None or state in ("Z", "X"):
            return False
        if marker is not None:
            try:
                cmdline = (_PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                return False
            return marker in cmdline
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def session_members(sid: int, *, exclude: frozenset[int] = frozenset()) -> list[int]:
    """Live processes of session `sid` (a driver started with start_new_session=True leads its own)."""
    if not _PROC.is_dir():
        return [sid] if sid not in exclude and is_alive(sid) else []
    members = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid in exclude:
            continue
        try:
            if os.getsid(pid) == sid and _state(pid) not in (None, "Z", "X"):
                members.append(pid)
        except (ProcessLookupError, PermissionError):
            continue
    return members


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def descendants(pid: int) -> list[int]:
    """Live children, grandchildren, ... of `pid` (from /proc; empty where there is none)."""
    if not _PROC.is_dir():
        return []
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if fields[0] in ("Z", "X"):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, frontier = [], [pid]
    while frontier:
        for child in children.get(frontier.pop(), []):
            found.append(child)
            frontier.append(child)
    return found


def _stop(members: Callable[[], list[int]], grace_s: float, poll_s: float) -> bool:
    current = members()
    if not current:
        return True
    _signal_all(current, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not members():
            return True
        time.sleep(poll_s)
    for _ in range(50):
        current = members()
        if not current:
            return True
        _signal_all(current, signal.SIGKILL)
        time.sleep(poll_s)
    return not members()


def stop_session(sid: int, *, grace_s: float, exclude: frozenset[int] = frozenset(), poll_s: float = 0.1) -> bool:
    """SIGTERM every process of session `sid`, SIGKILL what is left after `grace_s`; True once all are gone.

    Ray's raylet, GCS and workers started by the driver live in its session but in other process groups, so
    signalling the driver's process group alone would leave them running.
    """
    return _stop(lambda: session_members(sid, exclude=exclude), grace_s, poll_s)


def stop_descendants(pid: int, *, grace_s: float, poll_s: float = 0.1) -> bool:
    """Like `stop_session`, for the processes `pid` started (when it does not lead a session of its own)."""
    return _stop(lambda: descendants(pid), grace_s, poll_s)

"""Process helpers for detached sweep drivers: is one alive, and stopping a driver with everything it started."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

__all__ = ["is_alive", "session_members", "stop_session"]

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


def stop_session(sid: int, *, grace_s: float, exclude: frozenset[int] = frozenset(), poll_s: float = 0.1) -> bool:
    """SIGTERM every process of session `sid`, SIGKILL what is left after `grace_s`; True once all are gone.

    Ray's raylet, GCS and workers started by the driver live in its session but in other process groups, so
    signalling the driver's process group alone would leave them running.
    """
    members = session_members(sid, exclude=exclude)
    if not members:
        return True
    _signal_all(members, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        members = session_members(sid, exclude=exclude)
        if not members:
            return True
        time.sleep(poll_s)
    for _ in range(50):
        members = session_members(sid, exclude=exclude)
        if not members:
            return True
        _signal_all(members, signal.SIGKILL)
        time.sleep(poll_s)
    return not session_members(sid, exclude=exclude)

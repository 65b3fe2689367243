"""What the fault tests share about processes: the members of a session, killing it, the end of a log."""

from __future__ import annotations

import os
import signal
from pathlib import Path


def session_members(sid: int) -> list[int]:
    """The pids whose session is `sid` (a server, Ray node or driver started with start_new_session)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid:
                    members.append(int(entry.name))
            except (ProcessLookupError, PermissionError):
                continue
    return members


def kill_session(sid: int, sig: int = signal.SIGKILL) -> None:
    """`sig` to every process of session `sid` at once."""
    for pid in session_members(sid):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def log_tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a log, headed by its name, for a failure message."""
    try:
        return f"--- {path.name} ---\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"--- {path.name}: not written ---"

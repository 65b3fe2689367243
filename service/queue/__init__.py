"""The durable sweep queue: claims, state changes, the dispatcher thread and the detached driver processes."""

from hpscape.service.queue.dispatcher import Dispatcher, TickReport
from hpscape.service.queue.launcher import Launched, Launcher, SubprocessLauncher
from hpscape.service.queue.processes import descendants, is_alive, session_members, stop_descendants, stop_session
from hpscape.service.queue.states import (
    Claim,
    claim_next,
    fail_running_trials,
    finalize_cancel,
    finish,
    heartbeat,
    mark_launched,
    take_over,
)

__all__ = [
    "Claim",
    "Dispatcher",
    "Launched",
    "Launcher",
    "SubprocessLauncher",
    "TickReport",
    "claim_next",
    "descendants",
    "fail_running_trials",
    "finalize_cancel",
    "finish",
    "heartbeat",
    "is_alive",
    "mark_launched",
    "session_members",
    "stop_descendants",
    "stop_session",
    "take_over",
]

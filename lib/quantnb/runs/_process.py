"""Whether a recorded process is still alive (heartbeats, run records and temp-file cleanup ask)."""

from __future__ import annotations

import psutil


def pid_alive(pid: int, create_time: float | None = None) -> bool:
    """Return whether process ``pid`` is alive (and, if given, started at ``create_time``)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(proc.create_time() - create_time) < 1.0
    except psutil.Error:
        return False

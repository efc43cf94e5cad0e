"""An exclusive ``flock`` on a file that names its holder: one writer per folder or account."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from pathlib import Path
from typing import Any


class PidLock:
    """An exclusive, non-blocking ``flock`` on ``path``, released when the holder exits or is killed.

    The holder writes ``{"pid", "started_at", **info}`` into the file so that a refused second
    process can name it. The recorder's folder lock and the trader's session lock are built on it.
    """

    def __init__(self, path: Path, file_mode: int = 0o644) -> None:
        self.path = Path(path)
        self.file_mode = file_mode
        self._fd: int | None = None

    def holder(self) -> dict[str, Any]:
        """Return what the holder wrote into the lock file (``{}`` when unreadable)."""
        try:
            raw = json.loads(self.path.read_bytes() or b"{}")
        except (OSError, ValueError):
            return {}
        return raw if isinstance(raw, dict) else {}

    def _open_locked(self) -> int | None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, self.file_mode)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def try_acquire(self, **info: Any) -> bool:
        """Take the lock and write this process into it; return False when another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = self._open_locked()
        if fd is None:
            return False
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), **info,
                                 "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}).encode())
        self._fd = fd
        return True

    def free(self) -> bool:
        """Return True when no other process holds the lock (probed without keeping it)."""
        if self._fd is not None or not self.path.parent.exists():
            return True
        fd = self._open_locked()
        if fd is None:
            return False
        os.close(fd)  # closing the descriptor releases a lock taken through it
        return True

    def release(self) -> None:
        """Release the lock (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

"""Heartbeat TSV, batch TSV and heartbeat JSON: what a post-mortem reads after a crash."""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from quantnb._secrets import SecretMasker
from quantnb.runs._atomic import atomic_write_json, read_json_tolerant
from quantnb.runs._process import pid_alive

HEARTBEAT_COLUMNS = (
    "timestamp", "item", "batch_num", "total_batches", "events_count", "mem_gb", "run_id",
)
BATCH_COLUMNS = (
    "timestamp", "batch_num", "items_count", "total_events", "shard_file", "mem_gb", "run_id",
)
STATUSES = ("running", "completed", "completed_with_errors", "failed", "interrupted")
_PROCESS = psutil.Process()


def utc_now() -> dt.datetime:
    """Return the current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


def iso(ts: dt.datetime) -> str:
    """Format a datetime as UTC ISO 8601 with milliseconds and ``Z``: ``2026-01-05T12:00:00.123Z``.

    Parameters
    ----------
    ts : datetime.datetime
        Timezone-aware (a naive one is taken as local time).
    """
    return ts.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


_CHILDREN_REFRESH_S = 5.0
_children_cache: tuple[float, int] = (-_CHILDREN_REFRESH_S, 0)


def memory_gb() -> float:
    """Return the resident memory of this process and its children, GB (1e9 bytes)."""
    # the children's share is refreshed at most every 5 s: listing them walks /proc (about 2 ms)
    global _children_cache
    now = time.monotonic()
    stamp, children_rss = _children_cache
    if now - stamp >= _CHILDREN_REFRESH_S:
        children_rss = 0
        try:
            for child in _PROCESS.children(recursive=True):
                try:
                    children_rss += child.memory_info().rss
                except psutil.Error:
                    continue
        except psutil.Error:
            pass
        _children_cache = (now, children_rss)
    return (_PROCESS.memory_info().rss + children_rss) / 1e9


class TsvLog:
    """An append-only, line-buffered TSV file with a header written on creation."""

    def __init__(self, path: Path, columns: tuple[str, ...]):
        self.path = path
        self.columns = columns
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists() or path.stat().st_size == 0
        self._fh = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        self._mask = SecretMasker()  # an item named after an input (a path) could quote a secret
        if new:
            self._fh.write("\t".join(columns) + "\n")

    def append(self, *values: Any) -> None:
        """Append one row; secrets masked, tabs and newlines inside values replaced by spaces."""
        if len(values) != len(self.columns):
            raise ValueError(f"{self.path.name}: {len(values)} values for {len(self.columns)} columns")
        cells = (self._mask(str(v)).replace("\t", " ").replace("\n", " ") for v in values)
        self._fh.write("\t".join(cells) + "\n")

    def close(self) -> None:
        """Close the file."""
        self._fh.close()


class HeartbeatJson:
    """A run's current status, replaced atomically at most once per ``min_interval_s`` (thread-safe)."""

    # a throttled update stays pending; flush() (the beat thread's, and the end) writes it later

    def __init__(self, path: Path, base: dict[str, Any], min_interval_s: float = 1.0):
        self.path = path
        self.base = dict(base)
        self.min_interval_s = min_interval_s
        self._last_write = 0.0
        self._pending = False
        self._lock = threading.RLock()
        self.state: dict[str, Any] = {}

    def due(self) -> bool:
        """Return whether a ``running`` update would be written now (the throttle has elapsed)."""
        return time.monotonic() - self._last_write >= self.min_interval_s

    @property
    def pending(self) -> bool:
        """Whether the state holds changes not yet written."""
        return self._pending

    def update(self, force: bool = False, **fields: Any) -> bool:
        """Merge ``fields`` into the state and write it if due; return whether it was written."""
        with self._lock:
            self.state.update(fields)
            self._pending = True
            if not force and not self.due():
                return False
            return self._write()

    def flush(self, force: bool = False) -> bool:
        """Write the pending state if the throttle allows (or ``force``); return whether written."""
        with self._lock:
            if not self._pending or (not force and not self.due()):
                return False
            return self._write()

    def _write(self) -> bool:
        self._last_write = time.monotonic()
        self._pending = False
        atomic_write_json(self.path, {**self.base, **self.state})
        return True


def read_heartbeat(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Read a heartbeat JSON, reporting ``interrupted`` for a ``running`` run whose pid is dead.

    Parameters
    ----------
    path : str or os.PathLike
        Heartbeat JSON file.

    Returns
    -------
    dict or None
        The heartbeat fields, with ``status`` corrected and ``pid_alive`` added; ``None``
        when the file is missing or unreadable.
    """
    hb = read_json_tolerant(path)
    if not isinstance(hb, dict):
        return None
    alive = pid_alive(int(hb.get("pid", -1)), hb.get("pid_create_time"))
    hb["pid_alive"] = alive
    if hb.get("status") == "running" and not alive:
        hb["status"] = "interrupted"
    return hb

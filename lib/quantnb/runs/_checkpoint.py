"""Checkpoint JSON: which items a run has finished, replaced atomically after each commit."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from loguru import logger

from quantnb.runs._atomic import atomic_write_json, json_unreadable_reason, read_json_tolerant
from quantnb.runs._heartbeat import iso, utc_now


class Checkpoint:
    """The finished and failed items of a run (``logs/checkpoints/<run_id>_completed.json``); resume skips them."""

    # every change: temp file, fsync, os.replace, so the file is always a whole earlier-or-current state

    def __init__(self, path: Path, run_id: str, config_hash: str, resume: bool):
        self.path = path
        self.run_id = run_id
        self.config_hash = config_hash
        self.completed: list[str] = []
        self.failed: dict[str, str] = {}
        self.status = "running"
        self.extra: dict[str, Any] = {}
        if resume:
            data = read_json_tolerant(path)
            reason = json_unreadable_reason(path) or (
                "not a JSON object" if data is not None and not isinstance(data, dict) else None)
            if reason is not None:
                kept = path.with_name(path.name + ".corrupt")
                os.replace(path, kept)  # save() below would overwrite the only evidence
                logger.warning("Checkpoint {} is unreadable ({}): resuming as if no item were finished, so "
                               "every item is done again; the file is kept as {}", path, reason, kept.name)
            if isinstance(data, dict):
                self.completed = list(data.get("completed", []))
                self.failed = dict(data.get("failed", {}))
                self.extra = dict(data.get("extra", {}))
        self._done = set(self.completed)
        self.save()

    def is_completed(self, item: str) -> bool:
        """Return whether ``item`` finished in this run or an earlier attempt of it."""
        return item in self._done

    def mark_completed(self, *items: str, **extra: Any) -> None:
        """Record ``items`` as finished (clearing their failures); call only once their output is on disk."""
        for item in items:
            if item not in self._done:
                self._done.add(item)
                self.completed.append(item)
            self.failed.pop(item, None)
        self.extra.update(extra)
        self.save()

    def mark_failed(self, item: str, reason: str) -> None:
        """Record ``item`` as failed with ``reason`` (its fix, shown by the run summary); save atomically."""
        self.failed[item] = reason
        self.save()

    def save(self, status: str | None = None) -> None:
        """Write the checkpoint atomically, with a new run ``status`` unless None."""
        if status is not None:
            self.status = status
        atomic_write_json(
            self.path,
            {
                "run_id": self.run_id,
                "config_hash": self.config_hash,
                "status": self.status,
                "completed": self.completed,
                "failed": self.failed,
                "total_completed": len(self.completed),
                "last_updated": iso(utc_now()),
                "extra": self.extra,
            },
        )

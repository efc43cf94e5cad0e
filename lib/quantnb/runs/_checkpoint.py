"""Checkpoint JSON: which items a run has finished, replaced atomically after each commit."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from loguru import logger

from quantnb.runs._atomic import atomic_write_json, json_unreadable_reason, read_json_tolerant
from quantnb.runs._heartbeat import iso, utc_now


class Checkpoint:
    """The finished and failed items of a run; what ``resume=True`` skips.

    The file is ``logs/checkpoints/<run_name>_completed.json`` with fields ``run_id``,
    ``completed`` (list of item names, in completion order), ``failed`` (item name to
    reason), ``total_completed``, ``last_updated`` (UTC ISO 8601), ``config_hash`` and
    ``status``. Every change is written with temp file, fsync and ``os.replace``, so the
    file on disk is always a whole, earlier-or-current state.

    Parameters
    ----------
    path : pathlib.Path
        Checkpoint file.
    run_id : str
        Run the checkpoint belongs to.
    config_hash : str
        Hash of the canonical parameters; a resume with other parameters is refused.
    resume : bool
        Load the existing file (True) or start empty, replacing any old file (False).
    """

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
        """Return whether ``item`` finished in this run or an earlier attempt of it.

        Parameters
        ----------
        item : str
            Item key (e.g. an input file's path relative to the project).
        """
        return item in self._done

    def mark_completed(self, *items: str, **extra: Any) -> None:
        """Record ``items`` as finished (and clear earlier failures of them); save atomically.

        Call this only after the item's output is durably on disk (its shard written
        atomically), so a kill between the two never marks unsaved work as done.

        Parameters
        ----------
        *items : str
            Item keys.
        **extra : Any
            JSON-serialisable values merged into the checkpoint's ``extra`` mapping (e.g. a counter).
        """
        for item in items:
            if item not in self._done:
                self._done.add(item)
                self.completed.append(item)
            self.failed.pop(item, None)
        self.extra.update(extra)
        self.save()

    def mark_failed(self, item: str, reason: str) -> None:
        """Record ``item`` as failed with ``reason`` (e.g. quarantined); save atomically.

        Parameters
        ----------
        item : str
            Item key.
        reason : str
            Why it failed, with its fix (shown by the run summary).
        """
        self.failed[item] = reason
        self.save()

    def save(self, status: str | None = None) -> None:
        """Write the checkpoint atomically, optionally with a new run status.

        Parameters
        ----------
        status : str or None
            New run status (``completed``, ``interrupted``...); None keeps the current one.
        """
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

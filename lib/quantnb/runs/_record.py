"""runs/<run_id>/run.json: the durable record of one run, shared by the kernel and the runner."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from loguru import logger

from quantnb.errors import ConfigError
from quantnb.runs._atomic import atomic_write_json, json_unreadable_reason, read_json_tolerant
from quantnb.runs._heartbeat import iso, utc_now
from quantnb.runs._layout import record_file, record_files
from quantnb.runs._process import pid_alive

_PACKAGES = (
    "quantnb", "torch", "numpy", "polars", "pyarrow", "msgspec", "loguru", "papermill", "optuna",
    "stable-baselines3", "gymnasium", "ccxt", "pydantic",
)


def package_versions() -> dict[str, str]:
    """Return Python's and the key libraries' versions (``"missing"`` when not installed).

    The one list of versions recorded everywhere: run.json, model bundles and agent bundles.
    """
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def git_commit(root: Path) -> str | None:
    """Return ``HEAD``'s commit in ``root`` (``-dirty`` with changes), or None outside git.

    Parameters
    ----------
    root : pathlib.Path
        Any folder of the repository; untracked files do not make it dirty.
    """
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty else "")


def update_run_record(run_dir: Path, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into ``run_dir/run.json`` (created if missing), written atomically.

    Parameters
    ----------
    run_dir : pathlib.Path
        ``runs/<run_id>/``.
    **fields
        Top-level fields to set; dict values are merged one level deep.

    Returns
    -------
    dict
        The record as written.
    """
    path = record_file(run_dir)
    record = read_json_tolerant(path)
    if not isinstance(record, dict):
        _keep_unreadable(path)
        record = {}
    for key, value in fields.items():
        if isinstance(value, dict) and isinstance(record.get(key), dict):
            record[key] = {**record[key], **value}
        else:
            record[key] = value
    atomic_write_json(path, record)
    return record


def _keep_unreadable(path: Path) -> None:
    """Move an unreadable run.json aside (``run.json.unreadable-<UTC>``) so writing a new record loses nothing."""
    why = json_unreadable_reason(path) if path.exists() else None
    if why is None and not (path.exists() and path.stat().st_size):
        return
    kept = path.with_name(f"run.json.unreadable-{utc_now():%Y%m%dT%H%M%S%fZ}")
    try:
        os.replace(path, kept)
    except OSError as exc:
        logger.warning("{} is unreadable ({}) and could not be kept aside: {}", path, why, exc)
        return
    logger.warning("{} was unreadable ({}); kept as {} and a new record started", path, why or "not an object",
                   kept.name)


def read_run_record(run_dir: Path, *, detect_dead: bool = True) -> dict[str, Any] | None:
    """Return ``run_dir/run.json`` as a dict, or None if missing or unreadable.

    With ``detect_dead`` (the default), a ``running`` or ``pending`` record whose
    processes are all dead is first marked ``interrupted`` in the file itself (see
    :func:`mark_dead_run_interrupted`), so every command that reads runs repairs the
    record of a killed run.

    Parameters
    ----------
    run_dir : Path
        ``runs/<run_id>/``.
    detect_dead : bool, default True
        Mark a dead ``running``/``pending`` run ``interrupted`` before returning it.
    """
    record = read_json_tolerant(record_file(run_dir))
    if not isinstance(record, dict):
        return None
    if detect_dead:
        record = mark_dead_run_interrupted(run_dir, record)
    return record


def run_processes_alive(record: dict[str, Any]) -> bool | None:
    """Return whether any process recorded in a run.json still runs (None if none is recorded)."""
    pids = _recorded_pids(record)
    return any(pid_alive(pid, ct) for pid, ct in pids) if pids else None


def _recorded_pids(record: dict[str, Any], exclude: tuple[int, ...] = ()) -> list[tuple[int, float | None]]:
    """(pid, create time) of the kernel and the runner as recorded, kernel first."""
    keys = (("pid", "pid_create_time"), ("runner_pid", "runner_pid_create_time"))
    return [(record[p], record.get(c)) for p, c in keys
            if isinstance(record.get(p), int) and record[p] > 0 and record[p] not in exclude]


def live_run_pid(record: dict[str, Any], *, exclude: tuple[int, ...] = ()) -> int | None:
    """Return a live process of a ``running``/``pending`` run (kernel first, then runner), or None."""
    if record.get("status") not in ("running", "pending"):
        return None
    return next((pid for pid, ct in _recorded_pids(record, exclude) if pid_alive(pid, ct)), None)


def refuse_live_run(run_id: str, record: dict[str, Any], *, exclude: tuple[int, ...] = ()) -> None:
    """Refuse to resume a run whose process still runs (two processes would write one run).

    Parameters
    ----------
    run_id : str
        The run to resume, as the user named it.
    record : dict of str to Any
        Its run.json.
    exclude : tuple of int
        Pids that do not count (see :func:`live_run_pid`).

    Raises
    ------
    ConfigError
        Naming the live pid, if :func:`live_run_pid` finds one.
    """
    pid = live_run_pid(record, exclude=exclude)
    if pid is not None:
        raise ConfigError(f"resume {run_id}: the run is still {record.get('status')} in process {pid}; "
                          f"two processes would write one run. Wait for it to end, or stop it first "
                          f"(kill -TERM {pid}: it saves its checkpoint), then resume")


def mark_dead_run_interrupted(run_dir: Path, record: dict[str, Any] | None = None) -> dict[str, Any]:
    """Mark a running/pending run whose processes are all dead ``interrupted``; else unchanged."""
    if record is None:
        record = read_json_tolerant(record_file(run_dir))
        if not isinstance(record, dict):
            return {}
    if record.get("status") not in ("running", "pending"):
        return record
    if run_processes_alive(record) is not False or run_dir.is_symlink():  # a link out of runs/: not written
        return record
    pids = ", ".join(str(record[k]) for k in ("pid", "runner_pid") if record.get(k))
    return update_run_record(
        run_dir, status="interrupted", interrupted_detected_at=iso(utc_now()),
        interrupted_reason=f"status was {record.get('status')!r} but its process(es) ({pids}) are dead "
                           "(killed, e.g. SIGKILL or out of memory)",
    )


def mark_dead_runs(root: Path) -> list[str]:
    """Check every ``root/runs/*/run.json``; mark the dead ``running`` ones interrupted; return their ids.

    Parameters
    ----------
    root : Path
        Project directory (holding ``runs/``).

    Returns
    -------
    list of str
        Run ids marked ``interrupted`` by this call.
    """
    marked = []
    for rec_path in record_files(root):
        before = read_json_tolerant(rec_path)
        if not isinstance(before, dict) or before.get("status") not in ("running", "pending"):
            continue
        if mark_dead_run_interrupted(rec_path.parent, before).get("status") == "interrupted":
            marked.append(rec_path.parent.name)
    return marked

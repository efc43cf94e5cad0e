"""runs/<run_id>/run.json: the durable record of one run, shared by the kernel and the runner."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Any

from quantnb.runlog._atomic import atomic_write_json, read_json_tolerant

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
    """Return ``HEAD``'s commit in ``root`` with ``-dirty`` if the tree has changes, or None."""
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
    path = run_dir / "run.json"
    record = read_json_tolerant(path)
    if not isinstance(record, dict):
        record = {}
    for key, value in fields.items():
        if isinstance(value, dict) and isinstance(record.get(key), dict):
            record[key] = {**record[key], **value}
        else:
            record[key] = value
    atomic_write_json(path, record)
    return record


def read_run_record(run_dir: Path) -> dict[str, Any] | None:
    """Return ``run_dir/run.json`` as a dict, or None if missing or unreadable."""
    record = read_json_tolerant(run_dir / "run.json")
    return record if isinstance(record, dict) else None

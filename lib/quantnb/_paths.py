from __future__ import annotations

import os
from pathlib import Path

_MARKERS = ("pyproject.toml", "notebooks")


def project_root(start: str | os.PathLike[str] | None = None) -> Path:
    """Return the quantnb project directory that holds ``runs/``, ``logs/`` and ``data/``.

    Resolution order: ``start`` if given; else the ``QUANTNB_HOME`` environment variable;
    else the nearest directory at or above the current working directory holding both
    ``pyproject.toml`` and ``notebooks/`` (so a notebook opened from ``notebooks/`` in
    JupyterLab and a papermill run from the repository root agree); else the current
    working directory.
    """
    if start is not None:
        return Path(start).resolve()
    env = os.environ.get("QUANTNB_HOME")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if all((candidate / m).exists() for m in _MARKERS):
            return candidate
    return here


"""RunPaths: the one owner of a run's file layout under the project directory."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from pathlib import Path
from typing import Literal

from quantnb.errors import ConfigError

TsvKind = Literal["heartbeat", "batches"]
_RECORD = "run.json"


def runs_dir(root: str | os.PathLike[str]) -> Path:
    """``<root>/runs/``: one folder per run.

    Parameters
    ----------
    root : path-like
        Project directory.
    """
    return Path(root) / "runs"


def run_dir(root: str | os.PathLike[str], run_id: str) -> Path:
    """``<root>/runs/<run_id>/``.

    Parameters
    ----------
    root : path-like
        Project directory.
    run_id : str
        As in :class:`RunPaths`.
    """
    return runs_dir(root) / run_id


def record_file(run_folder: str | os.PathLike[str]) -> Path:
    """``<run folder>/run.json``, the run record."""
    return Path(run_folder) / _RECORD


def record_files(root: str | os.PathLike[str], pattern: str = "*") -> list[Path]:
    """Every ``runs/<pattern>/run.json`` under ``root``, sorted by path.

    Parameters
    ----------
    root : path-like
        Project directory.
    pattern : str
        Glob on the run id (``"train_*"``).
    """
    return sorted(runs_dir(root).glob(f"{pattern}/{_RECORD}"))


def model_dir(run_folder: Path) -> Path:
    """``<run folder>/model/``, the classifier bundle of a training run.

    Parameters
    ----------
    run_folder : pathlib.Path
        ``runs/<run_id>/``.
    """
    return run_folder / "model"


def checkpoints_dir(run_folder: Path) -> Path:
    """``<run folder>/checkpoints/``, what a resumed fit continues from.

    Parameters
    ----------
    run_folder : pathlib.Path
        ``runs/<run_id>/``.
    """
    return run_folder / "checkpoints"


def production_dir(run_folder: Path) -> Path:
    """``runs/<train_id>/produccion/``: the live sessions of an agent (logs, state, halt marker).

    Parameters
    ----------
    run_folder : pathlib.Path
        ``runs/<train_id>/``, the agent's training run.
    """
    return run_folder / "produccion"


def debug_plots_dir(root: Path, run_id: str) -> Path:
    """``<root>/debug_plots/<run_id>/``.

    Parameters
    ----------
    root : pathlib.Path
        Project directory.
    run_id : str
        As in :class:`RunPaths`.
    """
    return root / "debug_plots" / run_id


def optuna_dir(root: Path) -> Path:
    """``<root>/runs/optuna/``: the best parameters of a study kept in a database server.

    Parameters
    ----------
    root : pathlib.Path
        Project directory.
    """
    return runs_dir(root) / "optuna"


def check_run_dir(root: str | os.PathLike[str], run_id: str) -> Path:
    """Return ``<root>/runs/<run_id>``, refusing a symbolic link (quantnb does not write through one).

    Parameters
    ----------
    root : path-like
        Project directory.
    run_id : str
        As in :class:`RunPaths`.

    Raises
    ------
    ConfigError
        If the folder is a symbolic link.
    """
    path = run_dir(root, run_id)
    if path.is_symlink():
        raise ConfigError(f"{path} is a symbolic link (to {os.readlink(path)}); a run's files stay in the "
                          "project, so quantnb does not write through it: remove the link, or move the run "
                          "folder back into runs/")
    return path


@dataclasses.dataclass(frozen=True)
class RunPaths:
    """Where every file of one run lives.

    Every reader and writer of a run (the run context, the runner, the post-mortem, the
    run monitor) builds its paths here instead of spelling them out.

    Parameters
    ----------
    root : pathlib.Path
        Project directory (holds ``runs/`` and ``logs/``).
    run_id : str
        ``<stage>_<suffix>_<YYYYMMDD_HHMMSS>``.
    stage : str
        The run's stage (names ``logs/<stage>/`` and the notebook).

    Examples
    --------
    >>> p = RunPaths(Path("/p"), "etl_x_20260101_000000", "etl")
    >>> p.record.as_posix()
    '/p/runs/etl_x_20260101_000000/run.json'
    """

    root: Path
    run_id: str
    stage: str

    @property
    def run_dir(self) -> Path:
        """``runs/<run_id>/``: run.json, the executed notebook, models, bundles."""
        return run_dir(self.root, self.run_id)

    @property
    def record(self) -> Path:
        """``runs/<run_id>/run.json``."""
        return record_file(self.run_dir)

    @property
    def notebook(self) -> Path:
        """``runs/<run_id>/<stage>.ipynb``, the executed notebook."""
        return self.run_dir / f"{self.stage}.ipynb"

    @property
    def stage_log_dir(self) -> Path:
        """``logs/<stage>/``: session logs and the heartbeat/batch TSVs of the stage."""
        return self.root / "logs" / self.stage

    @property
    def session_log(self) -> Path:
        """``logs/<stage>/<run_id>.log``."""
        return self.stage_log_dir / f"{self.run_id}.log"

    def daily_tsv(self, kind: TsvKind, day: dt.date | dt.datetime) -> Path:
        """``logs/<stage>/<kind>_<YYYYMMDD>.log``, shared by the stage's runs of that UTC day.

        Parameters
        ----------
        kind : {"heartbeat", "batches"}
            A line per finished item, or per saved shard.
        day : datetime.date or datetime.datetime
            The UTC day.
        """
        return self.stage_log_dir / f"{kind}_{day:%Y%m%d}.log"

    def daily_tsvs(self, kind: TsvKind) -> list[Path]:
        """Every ``kind`` TSV of the stage, oldest first (a run may span days).

        Parameters
        ----------
        kind : {"heartbeat", "batches"}
            As for :meth:`daily_tsv`.
        """
        return sorted(self.stage_log_dir.glob(f"{kind}_*.log"))

    @property
    def heartbeat_json(self) -> Path:
        """``logs/heartbeats/<run_id>_heartbeat.json``, the run's current status."""
        return self.root / "logs" / "heartbeats" / f"{self.run_id}_heartbeat.json"

    @property
    def checkpoint(self) -> Path:
        """``logs/checkpoints/<run_id>_completed.json``, what resume skips."""
        return self.root / "logs" / "checkpoints" / f"{self.run_id}_completed.json"

    @property
    def debug_plots(self) -> Path:
        """``debug_plots/<run_id>/``."""
        return debug_plots_dir(self.root, self.run_id)

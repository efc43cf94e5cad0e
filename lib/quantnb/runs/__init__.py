"""Run logging, heartbeats, checkpoints and resume: the spine of every quantnb stage.

Start every run with :func:`start_run` (the one place sinks are configured), then log
with ``from loguru import logger``. Report each finished item with
:meth:`RunContext.item_done`, each saved shard with :meth:`RunContext.batch_saved`, and
commit finished items to :attr:`RunContext.checkpoint` only after their output is on disk.
Record headline metrics with :meth:`RunContext.record_metrics`; displays follow progress
with :meth:`RunContext.add_progress_listener`; :func:`list_runs` is the run monitor; :func:`analyse_run`
reads a finished or dead run back (the post-mortem; it loads polars on first use). A stage that
scores a model on a span calls :func:`record_test_spans`, which counts the earlier runs that looked at it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quantnb._lazy import attach
from quantnb.runs._atomic import (
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    read_json_tolerant,
    remove_stale_temp_files,
)
from quantnb.runs._capture import LOG_FORMAT
from quantnb.runs._heartbeat import iso, read_heartbeat, utc_now
from quantnb.runs._interrupt import on_run_interrupt, on_run_start, where_stopped
from quantnb.runs._layout import (
    RunPaths,
    check_run_dir,
    checkpoints_dir,
    debug_plots_dir,
    model_dir,
    optuna_dir,
    production_dir,
    record_files,
    run_dir,
    runs_dir,
)
from quantnb.runs._monitor import RunSummary, fit_table, format_metrics, format_runs_table, list_runs, runs_frame
from quantnb.runs._progress import ProgressEvent, singular_unit
from quantnb.runs._record import (
    git_commit,
    mark_dead_runs,
    package_versions,
    read_run_record,
    refuse_live_run,
    update_run_record,
)
from quantnb.runs._run import RunContext, is_interrupt, new_run_id, start_run, worker_initializer
from quantnb.runs._secrets import SecretMasker
from quantnb.runs._spans import earlier_span_runs, record_test_spans, span_evaluations

if TYPE_CHECKING:  # the post-mortem reader loads polars and numpy: on first use only
    from quantnb.runs._postmortem import LEAK_MIN_POINTS, PostmortemReport, analyse_run, find_latest_run

__getattr__, __dir__ = attach(__name__)

__all__ = [
    "start_run",
    "RunContext",
    "RunPaths",
    "RunSummary",
    "list_runs",
    "analyse_run",
    "find_latest_run",
    "PostmortemReport",
    "runs_frame",
    "format_runs_table",
    "mark_dead_runs",
    "remove_stale_temp_files",
    "worker_initializer",
    "is_interrupt",
    "on_run_start",
    "on_run_interrupt",
    "read_heartbeat",
    "read_run_record",
    "refuse_live_run",
    "package_versions",
    "update_run_record",
    "SecretMasker",
    "LOG_FORMAT",
    "atomic_path",
    "atomic_write_json",
    "atomic_write_text",
    "read_json_tolerant",
    "span_evaluations",
    "earlier_span_runs",
    "record_test_spans",
    "LEAK_MIN_POINTS",
    "ProgressEvent",
    "check_run_dir",
    "checkpoints_dir",
    "debug_plots_dir",
    "fit_table",
    "format_metrics",
    "git_commit",
    "iso",
    "model_dir",
    "new_run_id",
    "optuna_dir",
    "production_dir",
    "record_files",
    "run_dir",
    "runs_dir",
    "singular_unit",
    "utc_now",
    "where_stopped",
]

"""The run monitor: one summary per run (status with dead-process detection, progress, metrics)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from quantnb._paths import project_root
from quantnb.runs._atomic import json_unreadable_reason, read_json_tolerant
from quantnb.runs._heartbeat import read_heartbeat, utc_now
from quantnb.runs._layout import RunPaths, record_file, record_files, run_dir
from quantnb.runs._record import read_run_record

# The metric shown first for each stage (the rest follow in recording order).
HEADLINE_METRICS = {
    "etl": ("files", "bars", "quarantined"),
    "labelling": ("distribution",),
    "optimization": ("best_f1_macro",),
    "training": ("test_f1_macro",),
    "agent": ("return_frac", "sharpe", "max_drawdown_frac", "bh_return_frac"),
    "live": ("pnl_usd", "trades", "max_drawdown_frac"),
}
_HEADLINE_WIDTH = 60


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """One row of the run monitor (times UTC)."""

    run_id: str
    stage: str
    status: str  # run.json's; a running run with dead processes is marked interrupted (in the file too)
    pid_alive: bool | None  # None when no process was recorded
    done: int | None  # items finished (heartbeat)
    total: int | None
    progress_pct: float | None
    eta_s: float | None  # seconds left, while running
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    duration_s: float | None  # until the end, or now for a running run
    metrics: dict[str, Any]  # run.json's headline metrics
    log: Path | None  # the session log
    interrupted_detected_at: str | None = None  # when a dead process was detected (ISO)
    error: str | None = None  # why a failed or interrupted run stopped (error, failing cell, dead process)

    @property
    def headline(self) -> str:
        """The stage's headline metrics as ``name=value`` text, first ones first; else the error."""
        text = format_metrics(self.stage, self.metrics)
        if not text and self.error and self.status not in ("completed", "running", "pending"):
            text = self.error if len(self.error) <= _HEADLINE_WIDTH else self.error[: _HEADLINE_WIDTH - 1] + "…"
        return text

    def to_row(self) -> dict[str, Any]:
        """Return the summary as a flat dict (one row of :func:`runs_frame`)."""
        row = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "metrics"}
        row["log"] = str(self.log) if self.log else None
        row["headline"] = self.headline
        return row


def _parse_ts(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.UTC)
    except ValueError:
        return None


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_fmt_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def format_metrics(stage: str, metrics: dict[str, Any], width: int = _HEADLINE_WIDTH) -> str:
    """Return ``metrics`` as ``name=value`` text, the stage's headline ones first, at most ``width`` chars.

    Parameters
    ----------
    stage : str
        Picks the headline metrics (:data:`HEADLINE_METRICS`).
    metrics : dict
        Name to value; floats shown to 4 significant digits.
    width : int
        Longer text is cut and ends in ``…``.
    """
    first = [k for k in HEADLINE_METRICS.get(stage, ()) if k in metrics]
    keys = first + [k for k in metrics if k not in first]
    text = " ".join(f"{k}={_fmt_value(metrics[k])}" for k in keys)
    return text if len(text) <= width else text[: width - 1] + "…"


def summarise_run(root: Path, run_id: str) -> RunSummary | None:
    """Return the :class:`RunSummary` of ``runs/<run_id>``, or None without a run.json."""
    rec = read_run_record(run_dir(root, run_id))  # marks a dead "running" run interrupted
    if rec is None:
        return _unreadable(root, run_id)
    stage = str(rec.get("stage") or run_id.split("_")[0])
    paths = RunPaths(root, run_id, stage)
    hb = read_heartbeat(paths.heartbeat_json) or {}
    status = str(rec.get("status") or hb.get("status") or "unknown")
    started, ended = _parse_ts(rec.get("started_at")), _parse_ts(rec.get("ended_at"))
    duration = rec.get("duration_s")
    if ended is None and status == "interrupted":  # killed: it ran until its last heartbeat
        ended = _parse_ts(hb.get("last_beat_at")) or _parse_ts(hb.get("last_timestamp"))
    if status == "running" and started is not None:
        duration = (utc_now() - started).total_seconds()
    elif duration is None and started is not None and ended is not None:
        duration = (ended - started).total_seconds()
    total = hb.get("total_items", rec.get("total_items"))
    done = hb.get("items_done", rec.get("items_done"))
    ckpt = read_json_tolerant(paths.checkpoint)
    if isinstance(ckpt, dict):  # committed after every item, so never behind the throttled heartbeat
        committed = len(ckpt.get("completed") or []) + len(ckpt.get("failed") or {})
        done = max(int(done or 0), committed) if done is not None or committed else done
    pct = hb.get("progress_pct")
    if total and done is not None:
        pct = min(100.0, 100.0 * done / total)
    log = rec.get("log")
    failure = f if isinstance(f := rec.get("failure"), dict) else {}
    error = (f"{failure['ename']}: {failure.get('evalue', '')}" if failure.get("ename") else None) or rec.get("error")
    if error is None and rec.get("interrupted_detected_at"):
        error = "process died (killed?)"
    return RunSummary(
        run_id=run_id, stage=stage, status=status,
        pid_alive=hb.get("pid_alive") if hb else None,
        done=int(done) if done is not None else None, total=int(total) if total is not None else None,
        progress_pct=float(pct) if pct is not None else None,
        eta_s=hb.get("eta_s") if status == "running" else None,
        started_at=started, ended_at=ended,
        duration_s=float(duration) if duration is not None else None,
        metrics=dict(rec.get("metrics") or {}),
        log=(root / log) if log else paths.session_log,
        interrupted_detected_at=rec.get("interrupted_detected_at"),
        error=str(error).splitlines()[0] if error else None,
    )


def _unreadable(root: Path, run_id: str) -> RunSummary | None:
    """Summarise a run whose run.json exists but cannot be read (listed with why, not skipped)."""
    path = record_file(run_dir(root, run_id))
    reason = json_unreadable_reason(path) or ("not a JSON object" if path.exists() else None)
    if reason is None:
        return None
    stage = run_id.split("_")[0]
    return RunSummary(
        run_id=run_id, stage=stage, status="unreadable", pid_alive=None, done=None, total=None,
        progress_pct=None, eta_s=None, started_at=None, ended_at=None, duration_s=None, metrics={},
        log=RunPaths(root, run_id, stage).session_log,
        error=f"runs/{run_id}/run.json {reason}; see the session log, restore the file or remove the folder")


def list_runs(
    project_dir: str | os.PathLike[str] | None = None,
    *,
    stage: str | None = None,
    status: str | None = None,
) -> list[RunSummary]:
    """Return a summary of every run under ``project_dir/runs``, newest first.

    Reading the runs repairs them: a ``running`` run whose processes are dead is
    marked ``interrupted`` in its run.json (with ``interrupted_detected_at``).

    Parameters
    ----------
    project_dir : str or os.PathLike, optional
        Project directory; found from the cwd (or ``QUANTNB_HOME``) otherwise.
    stage : str, optional
        Only runs of this stage.
    status : str, optional
        Only runs with this status (after dead-process detection).
    """
    root = project_root(project_dir)
    out = []
    for rec_path in record_files(root):
        summary = summarise_run(root, rec_path.parent.name)
        if summary is None or (stage and summary.stage != stage) or (status and summary.status != status):
            continue
        out.append(summary)
    epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
    return sorted(out, key=lambda s: (s.started_at or epoch, s.run_id), reverse=True)


def runs_frame(
    project_dir: str | os.PathLike[str] | None = None,
    *,
    stage: str | None = None,
    status: str | None = None,
) -> Any:
    """Return :func:`list_runs` as a polars DataFrame (one row per run, ``headline`` as text).

    Parameters
    ----------
    project_dir : str, path-like or None
        Project directory; None finds it from the cwd.
    stage : str or None
        Only runs of this stage.
    status : str or None
        Only runs with this status.

    Returns
    -------
    polars.DataFrame
        One row per run, newest first, with :meth:`RunSummary.to_row` columns.
    """
    import polars as pl

    rows = [s.to_row() for s in list_runs(project_dir, stage=stage, status=status)]
    return pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def fit_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]], width: int | None = None) -> str:
    """Return an aligned table; columns that do not fit ``width`` go, as ``name: value``, under their row.

    Parameters
    ----------
    header : tuple of str
        Column names.
    rows : sequence of tuple of str
        One cell per column; an empty cell of a folded column is left out.
    width : int or None
        Characters per line; None: ``COLUMNS`` or the terminal's, no limit when piped.
    """
    # width None: COLUMNS, else the terminal's, else (piped) no limit
    if width is None:
        piped = "COLUMNS" not in os.environ and not sys.stdout.isatty()
        width = sys.maxsize if piped else shutil.get_terminal_size().columns
    table = [header, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    keep = len(header)
    while keep > 1 and sum(widths[:keep]) + 2 * (keep - 1) > width:
        keep -= 1
    lines = []
    for n, r in enumerate(table):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:keep], widths[:keep], strict=True)).rstrip())
        if n == 0:
            lines.append("-" * min(width, sum(widths[:keep]) + 2 * (keep - 1)))
            continue
        for i in range(keep, len(header)):
            if r[i]:
                lines += textwrap.wrap(f"{header[i]}: {r[i]}", width, initial_indent="    ",
                                       subsequent_indent="      ", break_long_words=False, break_on_hyphens=False)
    return "\n".join(lines)


def format_runs_table(summaries: list[RunSummary], root: Path | None = None, width: int | None = None) -> str:
    """Return the run monitor as plain text: id, stage, status, progress, ETA, start, duration, metric, log.

    Parameters
    ----------
    summaries : list of RunSummary
        Rows, in the order shown (see :func:`list_runs`).
    root : pathlib.Path, optional
        Project directory; log paths are shown relative to it.
    width : int or None
        Characters per line (see :func:`fit_table`); None: the terminal's width.

    Returns
    -------
    str
        A header line and one line per run, the columns that do not fit on an indented
        line under it.
    """
    header = ("run_id", "stage", "status", "progress", "eta", "started (UTC)", "duration", "headline", "log")
    rows = [header]
    for s in summaries:
        if s.total:
            progress = f"{s.done or 0}/{s.total}" + (f" {s.progress_pct:.0f}%" if s.progress_pct is not None else "")
        else:
            progress = f"{s.done}" if s.done else ""
        log = s.log
        if log is not None and root is not None and log.is_relative_to(root):
            log = log.relative_to(root)
        rows.append((
            s.run_id, s.stage, s.status, progress, _fmt_duration(s.eta_s),
            s.started_at.strftime("%Y-%m-%d %H:%M:%S") if s.started_at else "",
            _fmt_duration(s.duration_s), s.headline, str(log or ""),
        ))
    return fit_table(header, rows[1:], width)
